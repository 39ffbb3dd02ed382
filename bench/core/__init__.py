"""The leaf of the package: records and locks, cache keys, statistics, sampling, chat templates, KL, prompt
splits, errors and where files go. Imports nothing else from bench (an import-linter contract)."""
