"""accord: train, evaluate and ship cooperative multi-agent RL policies.

    import accord
    report = accord.train("configs/spread_mappo.yaml", ["train.total_env_steps=200000"])
    policy = accord.Policy.load(report.run.path)

The names below load on first use, so ``import accord`` (and the CLI's start) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": "accord.api", "TrainReport": "accord.api",
    "Policy": "accord.policy",
    "load_config": "accord.config", "Config": "accord.config",
    "evaluate_run": "accord.evaluate",
    "export_run": "accord.export",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'accord' has no attribute '{name}'")
