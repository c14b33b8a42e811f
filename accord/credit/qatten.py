"""Qatten: multi-head attention over the agents' utilities, queried by the state.

Yang et al. 2020, "Qatten: A General Framework for Cooperative Multiagent Reinforcement Learning"
(arXiv 2002.03939); layout as the QPLEX/WQMIX reference mixer (linear, weighted heads)::

    lambda_{a,h} = softmax_a( (W_q,h s)^T (W_k,h f_a) / sqrt(E) )       f_a: agent a's slice of the state
    Q_tot        = sum_h w_h(s) sum_a lambda_{a,h} Q_a + c(s),          w_h = |hyper_w(s)|

``f_a = state[a*D:(a+1)*D]`` with ``D = EnvSpec.agent_state_dim``: the env declares the layout, nothing
here assumes one. Q_tot is linear in the utilities with non-negative state-dependent weights (a weighted
VDN), so monotonic. The logits are kept small by ``attention_reg * sum_h mean(logits^2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from accord.config import Config
from accord.credit.mixer import Mixer, hypernet
from accord.credit.qmix import require_state
from accord.envs.base import EnvSpec
from accord.errors import ConfigError


class Qatten(Mixer):
    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__()
        require_state(spec, "qatten")
        d, n = spec.agent_state_dim, spec.n_agents
        if d == 0 or n * d > spec.state_dim:
            raise ConfigError(f"credit 'qatten' attends over each agent's features in the state, but this task "
                              f"declares no per-agent state slice (EnvSpec.agent_state_dim={d}, "
                              f"state_dim={spec.state_dim}); use credit.name=qmix or vdn")
        q = cfg.q
        s, e, heads = spec.state_dim, q.mixing_embed, q.attention_heads
        self.n, self.unit, self.heads, self.embed = n, d, heads, e
        self.reg = q.attention_reg
        self.query = hypernet(s, q.hypernet_embed, heads * e)
        self.key = nn.Linear(d, heads * e, bias=False)
        self.head_w = hypernet(s, q.hypernet_embed, heads)
        self.bias = hypernet(s, e, 1)

    def logits(self, state: Tensor) -> Tensor:
        """Attention logits ``[T, B, H, N]`` of every head over the agents."""
        lead = state.shape[:-1]
        units = state[..., : self.n * self.unit].reshape(*lead, self.n, self.unit)  # [T, B, N, D]
        k = self.key(units).view(*lead, self.n, self.heads, self.embed)  # [T, B, N, H, E]
        q = self.query(state).view(*lead, self.heads, self.embed)  # [T, B, H, E]
        return torch.einsum("...he,...nhe->...hn", q, k) / math.sqrt(self.embed)  # [T, B, H, N]

    def forward(self, agent_q: Tensor, state: Tensor) -> Tensor:
        attn = self.logits(state).softmax(-1)  # [T, B, H, N]
        per_head = torch.einsum("...hn,...n->...h", attn, agent_q)  # [T, B, H]
        w = self.head_w(state).abs()  # [T, B, H]
        return (w * per_head).sum(-1, keepdim=True) + self.bias(state)  # [T, B, 1]

    def regularizer(self, state: Tensor, mask: Tensor) -> Tensor:
        sq = self.logits(state).pow(2).mean(-1).sum(-1)  # [T, B]: sum over heads of mean over agents
        return self.reg * (sq * mask).sum() / mask.sum().clamp_min(1)
