"""Shared credit: every agent learns from the team reward (the MAPPO / IPPO default)."""

from __future__ import annotations

from torch import Tensor

from accord.credit.gae import gae
from accord.rollout import Rollout


def advantages(batch: Rollout, values: Tensor, next_values: Tensor, gamma: float, lam: float) -> Tensor:
    """GAE on the team reward ``[T, B]`` broadcast to every agent ``[T, B, N]``."""
    rewards = batch.reward.unsqueeze(-1).expand_as(values)  # [T, B, N]
    return gae(rewards, values, next_values, batch.terminated, batch.terminated | batch.truncated, gamma, lam)
