"""VDN: ``Q_tot(tau, u) = sum_a Q_a(tau^a, u^a)``.

Sunehag et al. 2018, "Value-Decomposition Networks for Cooperative Multi-Agent Learning Based on Team
Reward" (arXiv 1706.05296). Additive, so it can only represent payoffs where each agent's best action is
independent of the others'; with uniform data it converges to the least-squares additive fit.
"""

from __future__ import annotations

from torch import Tensor

from accord.config import Config
from accord.credit.mixer import Mixer
from accord.envs.base import EnvSpec


class VDN(Mixer):
    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__()

    def forward(self, agent_q: Tensor, state: Tensor) -> Tensor:
        return agent_q.sum(-1, keepdim=True)  # [T, B, 1]
