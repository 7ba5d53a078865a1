"""symbld: a local conversation-intelligence daemon."""

__version__ = "0.1.0"
