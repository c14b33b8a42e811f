"""Attention credit (MAAC-style): each agent's Q attends over the other agents' observation-actions.

Iqbal & Sha 2019, "Actor-Attention-Critic for Multi-Agent Reinforcement Learning" (ICML):

    e_j = g(o_j, u_j),  e_i^s = f(o_i, i)       (o_j with agent j's slice of the state, when the env has one)
    alpha_ij = softmax_{j != i, j alive}( (W_q e_i^s)^T (W_k e_j) / sqrt(d) )      (per head)
    x_i = sum_j alpha_ij LeakyReLU(W_v e_j),   Q_i(o, u) = h(e_i^s, x_i) -> one value per own action

Agent i's own action enters only through the output index, so one pass gives the values of all of
i's actions with the others' fixed, and COMA's counterfactual baseline applies unchanged
(:mod:`accord.credit.counterfactual`, which also trains the critic). Attention lets each agent's
critic pick the teammates that matter to it, which scales better with team size than COMA's
concatenated joint action.

Deviations from MAAC: on-policy TD(lambda) targets on the team reward instead of soft off-policy
targets on individual rewards; encoders, attention and Q head are shared by all agents (agent id in
``e_i^s``), as accord's actors share parameters; under CTDE each agent's observation is extended
by its slice of the global state (``EnvSpec.agent_state_dim``) where the env lays the state out per
agent, since the critic may see what the actors cannot. Kept: the attention-logit penalty
1e-3 mean(logit^2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from accord.config import Config, ModelConfig
from accord.credit.counterfactual import Counterfactual, CriticOut
from accord.envs.base import EnvSpec
from accord.errors import ConfigError
from accord.models.encoders import ObsEncoder
from accord.rollout import Rollout

LOGIT_PENALTY = 1e-3  # MAAC's attention-logit regularizer


class AttentionCritic(nn.Module):
    """Per-agent Q ``[T, B, N, A]`` from multi-head attention over the other alive agents."""

    def __init__(self, spec: EnvSpec, hidden: int, heads: int, model: ModelConfig | None = None) -> None:
        super().__init__()
        n, a = spec.n_agents, spec.n_actions
        self.n_actions, self.heads, self.d = a, heads, hidden // heads
        self.encoder = ObsEncoder(spec, model)
        self.agent_state_dim = spec.agent_state_dim
        d_obs = self.encoder.out_dim + spec.agent_state_dim
        self.register_buffer("ids", torch.eye(n), persistent=False)
        self.register_buffer("not_self", ~torch.eye(n, dtype=torch.bool), persistent=False)
        self.sa_enc = nn.Sequential(nn.LayerNorm(d_obs + a), nn.Linear(d_obs + a, hidden), nn.LeakyReLU())
        self.s_enc = nn.Sequential(nn.LayerNorm(d_obs + n), nn.Linear(d_obs + n, hidden), nn.LeakyReLU())
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Sequential(nn.Linear(hidden, hidden), nn.LeakyReLU())
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, a))

    def attend(self, batch: Rollout) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """-> (e^s [T, B, N, H], x [T, B, N, H], weights [T, B, N, heads, N], logits, same shape)."""
        t, b, n = batch.actions.shape
        o = self.encoder(batch.obs)  # [T, B, N, D]
        if self.agent_state_dim:
            own = batch.state[..., : n * self.agent_state_dim].unflatten(-1, (n, self.agent_state_dim))
            o = torch.cat([o, own], dim=-1)  # [T, B, N, D + agent_state_dim]
        u = nn.functional.one_hot(batch.actions, self.n_actions).float()  # [T, B, N, A]
        e = self.sa_enc(torch.cat([o, u], dim=-1))  # [T, B, N, H]
        e_s = self.s_enc(torch.cat([o, self.ids.expand(t, b, n, n)], dim=-1))  # [T, B, N, H]
        q = self.query(e_s).unflatten(-1, (self.heads, self.d))  # [T, B, N, heads, d]
        k = self.key(e).unflatten(-1, (self.heads, self.d))
        v = self.value(e).unflatten(-1, (self.heads, self.d))
        logits = torch.einsum("tbihd,tbjhd->tbihj", q, k) / math.sqrt(self.d)  # [T, B, N(i), heads, N(j)]
        # Attend to other agents that are alive; a finite fill keeps gradients clean when none is.
        allowed = self.not_self[:, None, :] & batch.agent_mask[:, :, None, None, :]  # [T, B, N, 1, N]
        weights = logits.masked_fill(~allowed, -1e9).softmax(-1) * allowed  # rows with nobody: all 0
        x = torch.einsum("tbihj,tbjhd->tbihd", weights, v).flatten(-2)  # [T, B, N, H]
        return e_s, x, weights, logits.masked_fill(~allowed, 0.0)

    def forward(self, batch: Rollout) -> CriticOut:
        e_s, x, weights, logits = self.attend(batch)
        q = self.head(torch.cat([e_s, x], dim=-1))  # [T, B, N, A]
        entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean(-1)  # [T, B, N], nats
        return CriticOut(q, LOGIT_PENALTY * logits.pow(2).mean(), {"attention_entropy": entropy.detach()})


class Attention(Counterfactual):
    """COMA's counterfactual advantage from a MAAC-style attention critic."""

    method = "attention"

    def build_critic(self, cfg: Config, spec: EnvSpec) -> nn.Module:
        if spec.n_agents < 2:
            raise ConfigError(f"credit.name=attention needs at least 2 agents (each agent's critic attends over "
                              f"the others), but task '{cfg.task.name}' has {spec.n_agents}; use counterfactual")
        return AttentionCritic(spec, cfg.credit.critic_hidden, cfg.credit.attention_heads, cfg.model)
