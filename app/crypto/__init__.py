"""Encryption at rest. The format is documented in docs/FORMAT.md."""
