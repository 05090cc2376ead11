"""petit: a small, dependable job orchestrator for one machine."""

__version__ = "0.1.0"
