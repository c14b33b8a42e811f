"""Off-policy collection: step a VecEnv with an acting policy and record every transition in replay.

The counterpart of :class:`accord.runners.sync.SyncRunner` for learners that keep whole episodes
(:class:`accord.replay.EpisodeBuffer`) instead of a fixed ``[T, B]`` rollout; same episode statistics.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from accord.envs.base import Step, VecEnv
from accord.replay import EpisodeBuffer
from accord.runners.sync import EpisodeStats


class ActingPolicy(Protocol):
    def act(self, step: Step, starts: Tensor) -> Tensor:
        """Actions ``[B, N]`` for the current step; recurrent state lives in the policy (reset at starts)."""
        ...


class EpisodeRunner:
    def __init__(self, env: VecEnv, policy: ActingPolicy, buffer: EpisodeBuffer, rollout_len: int,
                 seed: int) -> None:
        self.env, self.policy, self.buffer, self.t_len = env, policy, buffer, rollout_len
        self.current = env.reset(seed=seed)
        self.starts = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
        self.stats = EpisodeStats(env.num_envs, env.device)

    @torch.no_grad()
    def collect(self) -> int:
        """``rollout_len`` steps of every env into the buffer; returns the env transitions taken."""
        for _ in range(self.t_len):
            step = self.current
            actions = self.policy.act(step, self.starts)
            nxt = self.env.step(actions)
            self.buffer.add(step, actions, nxt)
            self.stats.add(nxt)
            self.starts, self.current = nxt.done, nxt
        return self.t_len * self.env.num_envs
