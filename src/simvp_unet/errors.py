"""Errors that the CLI reports as one clear line (no traceback)."""


class SimvpUnetError(Exception):
    """Base class of errors caused by the user's input: files, shapes, config values."""


class DataError(SimvpUnetError, ValueError):
    """A dataset file is missing, corrupt or has the wrong shape or values. Names the file."""


class ConfigError(SimvpUnetError, ValueError):
    """A config value, preset or command-line option is unknown or out of range."""


class TrainingDiverged(SimvpUnetError, RuntimeError):
    """The training loss became NaN or infinite; says which setting to change."""
