"""Shared credit: every agent learns from the team reward (the MAPPO / IPPO default)."""

from __future__ import annotations

from torch import Tensor

from accord.credit.base import CreditContext, RewardCredit, team_reward
from accord.rollout import Rollout


class Shared(RewardCredit):
    """GAE on the team reward ``[T, B]`` broadcast to every agent ``[T, B, N]``."""

    def reward(self, batch: Rollout, ctx: CreditContext) -> Tensor:
        return team_reward(batch, ctx.values.shape[-1])
