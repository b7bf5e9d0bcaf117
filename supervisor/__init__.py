"""lane-supervisor: finds and heals OpenClaw sessions stuck `running` with no live run."""

__version__ = "0.1.0"
