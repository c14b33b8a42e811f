"""A slow env: any ``VecEnv`` whose steps take simulated wall time, like an external simulator or API.

``task.latency_ms`` (+- ``task.jitter_ms``, uniform) is the wall time of one env's step. A process
steps its envs one after another, as it would call a simulator per env, so a step of B envs sleeps
the sum of B draws. Sleeping costs no CPU: on a few cores, many slow envs in many processes (runner
``async`` or ``ray``) step in parallel, which is what the slow-env benchmark measures
(docs/scale.md).
"""

from __future__ import annotations

import random
import time

from torch import Tensor

from accord.envs.base import Step, VecEnv


class LatencyVecEnv:
    """Wraps ``env``; every ``step`` waits ``latency_ms +- jitter_ms`` per env before returning."""

    def __init__(self, env: VecEnv, latency_ms: float, jitter_ms: float = 0.0) -> None:
        self.env, self.spec, self.num_envs, self.device = env, env.spec, env.num_envs, env.device
        self.latency_s, self.jitter_s = latency_ms / 1000, jitter_ms / 1000
        self.rng = random.Random(0)  # its own stream: the jitter never moves the training RNGs

    def reset(self, seed: int | None = None) -> Step:
        self.rng.seed(seed)
        return self.env.reset(seed=seed)

    def step(self, actions: Tensor) -> Step:
        due = time.perf_counter() + sum(self.latency_s + self.rng.uniform(-self.jitter_s, self.jitter_s)
                                        for _ in range(self.num_envs))
        out = self.env.step(actions)
        time.sleep(max(0.0, due - time.perf_counter()))  # the env's own compute counts towards the latency
        return out

    def close(self) -> None:
        self.env.close()

    def __getattr__(self, name: str) -> object:  # fault counters and the like of the wrapped env
        return getattr(self.env, name)
