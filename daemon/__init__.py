"""The training-workspace archiver daemon."""
