"""The one error type users are meant to read: what was wrong, where (file, row, key), and what to do."""


class ConfigError(ValueError):
    """Bad configuration or input, detected before compute."""


class UnavailableError(ConfigError):
    """Something the run needs that this machine lacks but another may have (a Hub model or dataset not in
    the local cache while offline, an API key not set here, a local file of another machine). A submission
    fails on it; `bench sweep --dry-run` lists it as not checked here and validates everything else."""
