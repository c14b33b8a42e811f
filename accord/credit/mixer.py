"""The value-decomposition interface every mixer implements (IQL, VDN, QMIX, Qatten).

``mixer(agent_q [T, B, N], state [T, B, S]) -> q_tot [T, B, K]``: ``K = 1`` for a joint team value,
``K = N`` when the agents learn independently (then the learner masks dead agents out of the loss).
Dead agents' utilities arrive as zeros. A mixer is built as ``Cls(cfg, spec)`` and raises
:class:`accord.errors.ConfigError` when the env lacks what it conditions on (e.g. a global state).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Mixer(nn.Module):
    independent = False  # True: one output per agent, no credit assignment across agents

    def regularizer(self, state: Tensor, mask: Tensor) -> Tensor:
        """Extra loss term over steps ``mask`` [T, B] (default none)."""
        return torch.zeros((), device=state.device)


def hypernet(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """State -> weights: Linear-ReLU-Linear (PyMARL's ``hypernet_layers: 2``)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))
