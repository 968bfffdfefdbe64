"""User-facing errors: each one names the problem and the fix in one line.

Entry points catch :class:`DDPMError` and print its message without a traceback; anything
else is a bug and keeps its traceback.
"""


class DDPMError(Exception):
    """Base class of errors caused by the user's input (config, data, checkpoints)."""


class ConfigError(DDPMError, ValueError):
    """An inconsistent or unsupported configuration."""


class DatasetNotFoundError(DDPMError, FileNotFoundError):
    """A dataset directory or file is missing."""


class CheckpointError(DDPMError, RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class RunDirectoryExistsError(DDPMError, FileExistsError):
    """A run would overwrite the outputs of an earlier run."""


class DivergenceError(DDPMError, FloatingPointError):
    """Training produced a non-finite loss or gradient norm; the run stopped before saving bad weights."""
