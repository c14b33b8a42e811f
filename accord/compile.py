"""``torch.compile`` for the hot paths, with a clean fallback to eager when it cannot compile.

``train.compile``: ``false`` (default) never compiles; ``auto`` compiles and falls back to eager,
with one logged warning, when compiling fails (no C++ compiler, an op inductor does not support);
``true`` compiles and a failure is an error. Off by default because it does not always pay: on
this project's CPUs the compiled update was faster for the 64-64 tanh IPPO networks and slower for
the demo's MAPPO (LayerNorm, agent ids), see docs/benchmarks.md "Speed (issue 11)". Shapes are
static (``dynamic=False``): every minibatch has the same shape, so one compile serves the whole
run. The compile happens on the first call; its time is part of the run's wall time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch

from accord.errors import ConfigError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def compiled(fn: F, setting: bool | Literal["auto"], what: str) -> F:
    """``fn`` compiled on its first call, or ``fn`` itself, as ``train.compile`` (``setting``) asks."""
    if setting is False:
        return fn
    fast = torch.compile(fn, dynamic=False)
    current: list[Callable[..., Any]] = [fast]

    def call(*args: Any, **kwargs: Any) -> Any:
        if current[0] is fn:
            return fn(*args, **kwargs)
        try:
            return current[0](*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure means: run eager
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            if setting is True:
                raise ConfigError(f"train.compile=true: torch.compile failed on {what} ({reason}); "
                                  "set train.compile=auto or false to run eager") from None
            logger.warning("torch.compile failed on %s, running eager (%s)", what, reason)
            current[0] = fn
            return fn(*args, **kwargs)

    return call  # type: ignore[return-value]
