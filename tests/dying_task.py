"""A built-in `spread` whose process SIGKILLs itself once, for the actor-restart tests (imported by
runner async and ray actors as task `dying_task:DiesOnce`: tests/ is on their sys.path)."""

from __future__ import annotations

import os
import signal

from torch import Tensor

from accord.envs.base import Step
from accord.envs.tasks.spread import Spread


class DiesOnce(Spread):
    """At its ``at``-th step, the first env batch to get there (it creates ``marker``) kills its process."""

    def __init__(self, num_envs: int, device: str = "cpu", marker: str = "", at: int = 30, **params: int) -> None:
        super().__init__(num_envs, device=device, **params)
        self.marker, self.at, self.calls = marker, at, 0

    def step(self, actions: Tensor) -> Step:
        self.calls += 1
        if self.marker and self.calls == self.at:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().step(actions)
