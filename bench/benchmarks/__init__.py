"""Benchmarks: scripts that print figures (speed and memory targets live here, never in timed tests)."""
