"""Independent Q-learning (Tan 1993; as in PyMARL/EPyMARL): no mixing, every agent regresses its own
utility on the team reward, ``y_a = r + gamma max_u' Q_a^-(tau'^a, u')``. Needs no global state, so it
also fits ``architecture: decentralized``.
"""

from __future__ import annotations

from torch import Tensor

from accord.config import Config
from accord.credit.mixer import Mixer
from accord.envs.base import EnvSpec


class Independent(Mixer):
    independent = True

    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__()

    def forward(self, agent_q: Tensor, state: Tensor) -> Tensor:
        return agent_q  # [T, B, N]
