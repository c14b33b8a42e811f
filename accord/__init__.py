"""accord: train, evaluate and ship cooperative multi-agent RL policies."""

__version__ = "0.1.0"
