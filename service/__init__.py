"""xent: a cross-entropy scoring service."""

__version__ = "0.1.0"
