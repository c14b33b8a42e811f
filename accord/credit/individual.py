"""Individual credit: each agent learns from its own reward (as in independent learning)."""

from __future__ import annotations

from torch import Tensor

from accord.credit.gae import gae
from accord.rollout import Rollout


def advantages(batch: Rollout, values: Tensor, next_values: Tensor, gamma: float, lam: float) -> Tensor:
    """GAE on the per-agent rewards ``[T, B, N]``."""
    return gae(batch.agent_reward, values, next_values, batch.terminated,
               batch.terminated | batch.truncated, gamma, lam)
