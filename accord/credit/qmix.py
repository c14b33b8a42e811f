"""QMIX: a state-conditioned monotonic mixing network.

Rashid et al. 2018, "QMIX: Monotonic Value Function Factorisation for Deep Multi-Agent Reinforcement
Learning" (ICML; arXiv 1803.11485), Sec. 4; layer sizes from PyMARL's ``qmix.yaml``::

    h     = ELU(q W1(s) + b1(s)),   W1 = |hyper_1(s)|  [N, E],  b1 = Linear(s)  [E]
    Q_tot = h W2(s) + V(s),         W2 = |hyper_2(s)|  [E],     V  = Linear-ReLU-Linear(s)

Only the weights pass through ``abs``, so ``dQ_tot/dQ_a >= 0`` for every agent and every state (the
argmax of Q_tot is the agents' own argmaxes); biases and V(s) are free.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.config import Config
from accord.credit.mixer import Mixer, hypernet
from accord.envs.base import EnvSpec
from accord.errors import ConfigError


def require_state(spec: EnvSpec, method: str) -> None:
    if spec.state_dim == 0:
        raise ConfigError(f"credit '{method}' conditions its mixing on the global state, but this task has "
                          "none (state_dim 0); use credit.name=vdn or iql")


class QMIX(Mixer):
    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__()
        require_state(spec, "qmix")
        q = cfg.q
        s, e, n = spec.state_dim, q.mixing_embed, spec.n_agents
        self.n, self.embed = n, e
        self.hyper_w1 = hypernet(s, q.hypernet_embed, n * e)
        self.hyper_b1 = nn.Linear(s, e)
        self.hyper_w2 = hypernet(s, q.hypernet_embed, e)
        self.value = hypernet(s, e, 1)

    def forward(self, agent_q: Tensor, state: Tensor) -> Tensor:
        w1 = self.hyper_w1(state).abs().view(*state.shape[:-1], self.n, self.embed)  # [T, B, N, E]
        h = nn.functional.elu(torch.einsum("...n,...ne->...e", agent_q, w1) + self.hyper_b1(state))  # [T, B, E]
        w2 = self.hyper_w2(state).abs()  # [T, B, E]
        return (h * w2).sum(-1, keepdim=True) + self.value(state)  # [T, B, 1]
