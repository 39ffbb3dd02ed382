"""The one error type users are meant to read: what was wrong, where (file, row, key), and what to do."""


class ConfigError(ValueError):
    """Bad configuration or input, detected before compute."""
