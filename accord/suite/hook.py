"""The training loop's hook: run the robustness suite on every ``suite.every``-th new checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def make_suite_hook(cfg: Any, run_path: Path) -> Callable[[Path], None] | None:
    """``hook(checkpoint_path)`` for the loop, or None when ``suite.every`` is 0. The suite leaves the
    training RNG streams as it found them, so a run with the hook on learns exactly as one without."""
    every = cfg.suite.every
    if not every:
        return None
    from accord.store import rng_state, set_rng_state
    from accord.suite.core import load_suite, run_suite

    spec = load_suite(cfg.suite.file)  # a bad suite file fails before training starts
    seen = 0

    def hook(path: Path) -> None:
        nonlocal seen
        seen += 1
        if seen % every:
            return
        saved = rng_state()
        try:
            result = run_suite(run_path, root=run_path.parent, checkpoint=path, suite=spec,
                               episodes=cfg.suite.episodes, suite_source=cfg.suite.file)
        finally:
            set_rng_state(saved)
        w: dict[str, Any] | None = result["worst"]
        if w is not None:
            logger.warning("%s: suite at %s: worst %s (severity %s), return drop %.1f%%%s", run_path.name,
                           path.name, w["perturbation"], w["severity"], 100 * w["drop"],
                           "" if result["passed"] else f"; {len(result['violations'])} threshold violations")

    return hook
