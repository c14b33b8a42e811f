"""A built-in task that misbehaves on purpose, to test the fault layer (docs/robustness.md).

``Faulty`` wraps any vectorized built-in task (``task``, with its own ``**params``) and, per batch
step, raises with probability ``raise_prob`` (before the inner task steps, so a retried step is the
same step), hangs for ``hang_s`` seconds with probability ``hang_prob`` (then steps normally: a caller
with a shorter ``runner.step_timeout_s`` has long given up on it), and writes a NaN team reward for
env 0 with probability ``nan_prob`` or at the batch steps listed in ``nan_steps``. Faults draw from
their own RNG (``fault_seed``; every rebuilt copy draws a new stream), never the task's. Every
probability defaults to 0: with its defaults the task is its inner task, unchanged.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import torch
from torch import Tensor

from accord.envs.base import Step
from accord.errors import ConfigError

_COPIES = itertools.count()


class InjectedFault(RuntimeError):
    """What a Faulty task raises."""


class Faulty:
    def __init__(self, num_envs: int, device: str | torch.device = "cpu", task: str = "spread",
                 raise_prob: float = 0.0, hang_prob: float = 0.0, hang_s: float = 2.0, nan_prob: float = 0.0,
                 nan_steps: list[int] | None = None, fault_seed: int = 0, **params: Any) -> None:
        from accord.envs.registry import TASKS

        entry = TASKS.get(task)
        if entry is None or entry.per_env or task == "faulty":
            raise ConfigError(f"task.params.task: '{task}' is not a vectorized built-in task")
        for name, p in (("raise_prob", raise_prob), ("hang_prob", hang_prob), ("nan_prob", nan_prob)):
            if not 0 <= p <= 1:
                raise ConfigError(f"task.params.{name}: must be in [0, 1], got {p}")
        self.inner = entry.load()(num_envs, device=device, **params)
        self.spec, self.num_envs, self.device = self.inner.spec, num_envs, self.inner.device
        self.name = f"faulty-{task}"
        self.raise_prob, self.hang_prob, self.hang_s, self.nan_prob = raise_prob, hang_prob, hang_s, nan_prob
        self.nan_steps = set(nan_steps or [])
        self._rng = random.Random(fault_seed * 1_000_003 + next(_COPIES))
        self.steps = 0

    def reset(self, seed: int | None = None) -> Step:
        return self.inner.reset(seed)

    def step(self, actions: Tensor) -> Step:
        u = self._rng.random()
        if u < self.raise_prob:
            raise InjectedFault(f"injected fault at step {self.steps + 1}")
        if u < self.raise_prob + self.hang_prob:
            time.sleep(self.hang_s)
        self.steps += 1
        step = self.inner.step(actions)
        if self.steps in self.nan_steps or (self.nan_prob and self._rng.random() < self.nan_prob):
            step.reward[0] = float("nan")
        return step

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()
