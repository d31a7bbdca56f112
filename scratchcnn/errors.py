"""Exceptions that the command-line tools turn into a one-line message and a non-zero exit."""

__all__ = ["ScratchCNNError", "DataError", "ModelFileError", "ConfigError", "OutputError", "TrainingDiverged"]


class ScratchCNNError(Exception):
    """Base class: an error whose message is meant for the user, with no traceback."""


class DataError(ScratchCNNError):
    """A data file is missing, truncated, corrupt or not the published one; the message names it."""


class ModelFileError(ScratchCNNError):
    """A model or checkpoint file cannot be loaded; the message names the file and the field."""


class ConfigError(ScratchCNNError):
    """An option or argument has an invalid value; the message names it, expected vs found."""


class OutputError(ScratchCNNError):
    """A result cannot be written (no space, read-only, a file in the way); the message names the path."""


class TrainingDiverged(ScratchCNNError):
    """The loss became NaN or infinite; the message names the epoch and batch."""
