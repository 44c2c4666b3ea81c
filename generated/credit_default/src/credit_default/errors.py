"""Typed, user-facing errors of this package (template-owned).

Every error carries one line saying what was wrong and how to fix it; the CLI prints it and exits 2.
"""


class ModelError(Exception):
    """Base of every user-facing error of this package."""


class SchemaError(ModelError):
    """features.yaml is malformed or inconsistent."""


class DataError(ModelError):
    """A data file is missing, empty, or does not match the feature schema."""


class ConfigError(ModelError):
    """A training option or override is invalid."""


class CheckpointError(ModelError):
    """A checkpoint is missing, corrupt, or was made for another schema or model."""


class TrainingError(ModelError):
    """Training cannot go on: the model diverged (non-finite loss or predictions)."""
