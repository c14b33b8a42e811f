"""Individual and mixed credit: each agent learns from its own reward, or a blend with the team's.

Mixed: ``r_i = (1 - w) r_team + w r_i^individual`` with ``w = credit.individual_weight``; ``w = 0``
is shared credit and ``w = 1`` individual credit. Independent learning's per-agent rewards are
low-noise but can pull agents apart; the blend keeps some team alignment.
"""

from __future__ import annotations

from torch import Tensor

from accord.config import Config
from accord.credit.base import CreditContext, RewardCredit, team_reward
from accord.envs.base import EnvSpec
from accord.rollout import Rollout


class Mixed(RewardCredit):
    """GAE on ``(1 - w)`` team reward + ``w`` individual reward, per agent ``[T, B, N]``."""

    def __init__(self, cfg: Config, spec: EnvSpec, weight: float | None = None) -> None:
        super().__init__(cfg, spec)
        self.weight = cfg.credit.individual_weight if weight is None else weight

    def reward(self, batch: Rollout, ctx: CreditContext) -> Tensor:
        team = team_reward(batch, batch.agent_reward.shape[-1])
        return (1 - self.weight) * team + self.weight * batch.agent_reward


class Individual(Mixed):
    """GAE on each agent's own reward ``[T, B, N]`` (as in independent learning)."""

    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__(cfg, spec, weight=1.0)
