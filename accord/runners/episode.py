"""Off-policy collection: step a VecEnv with a :class:`~accord.policy.Policy`, assemble whole episodes.

The counterpart of :class:`accord.runners.sync.SyncRunner` for learners that keep whole episodes
(:class:`accord.replay.EpisodeBuilder`) instead of a fixed ``[T, B]`` rollout; same episode statistics.
"""

from __future__ import annotations

import torch

from accord.envs.base import VecEnv
from accord.policy import Policy
from accord.replay import EpisodeBuilder, EpisodeChunk
from accord.runners.sync import EpisodeStats


class EpisodeRunner:
    """Steps ``env`` with ``policy`` (epsilon-greedy) and hands over the episodes that finished."""

    def __init__(self, env: VecEnv, policy: Policy, rollout_len: int, seed: int) -> None:
        self.env, self.policy, self.t_len = env, policy, rollout_len
        self.builder = EpisodeBuilder(env.spec, env.num_envs, env.device)
        self.current = env.reset(seed=seed)
        self.starts = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
        self.h = policy.initial_state(env.num_envs)
        self.stats = EpisodeStats(env.num_envs, env.device)

    @torch.no_grad()
    def collect(self) -> EpisodeChunk:
        """``rollout_len`` steps of every env; the episodes they finished."""
        finished = []
        for _ in range(self.t_len):
            step = self.current
            actions, _, self.h = self.policy.step(step.obs, step.avail_actions, self.h, self.starts)
            nxt = self.env.step(actions)
            done = self.builder.add(step, actions, nxt)
            if done is not None:
                finished.append(done)
            self.stats.add(nxt)
            self.starts, self.current = nxt.done, nxt
        return EpisodeChunk(finished, self.t_len * self.env.num_envs)
