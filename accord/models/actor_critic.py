"""Decentralized actors and (centralized or local) critics for the PPO family.

All inputs carry leading dims ``[T, B, N]`` (a rollout step is ``T = 1``); one forward pass serves
every agent of every env. Parameter sharing appends a one-hot agent id so shared weights can still
specialise; ``share_params=False`` gives each agent its own weights (still one einsum).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from accord.config import ModelConfig
from accord.envs.base import EnvSpec
from accord.models.encoders import ObsEncoder
from accord.models.layers import AgentLinear, MaskedGRU, mlp

LOG_2PI = math.log(2 * math.pi)


class _Body(nn.Module):
    """Input norm -> MLP -> optional GRU, over features ``[T, B, N, F]`` (agent id appended here)."""

    def __init__(self, n_in: int, spec: EnvSpec, cfg: ModelConfig) -> None:
        super().__init__()
        n = spec.n_agents
        self.agent_id = cfg.agent_id
        self.register_buffer("ids", torch.eye(n), persistent=False)
        n_in += n if cfg.agent_id else 0
        self.norm = nn.LayerNorm(n_in) if cfg.input_norm else nn.Identity()
        self.mlp = mlp(n_in, cfg.hidden, cfg.layers, n, cfg.share_params, cfg.activation)
        self.gru = MaskedGRU(cfg.hidden, cfg.hidden) if cfg.recurrent else None
        self.hidden = cfg.hidden

    @property
    def recurrent(self) -> bool:
        return self.gru is not None

    def forward(self, x: Tensor, h: Tensor | None, starts: Tensor | None,
                agent: int | None = None) -> tuple[Tensor, Tensor | None]:
        """``agent=i``: ``x`` is ``[T, B, 1, F]``, agent i's own input (see ``AgentLinear``)."""
        if self.agent_id:
            ids = self.ids if agent is None else self.ids[agent:agent + 1]
            x = torch.cat([x, ids.expand(*x.shape[:-1], -1)], dim=-1)  # [T, B, N, F + N]
        x = self.norm(x)
        for layer in self.mlp:
            x = layer(x, agent) if isinstance(layer, AgentLinear) else layer(x)
        if self.gru is None:
            return x, None
        return self.gru(x, h, starts[..., None].expand(x.shape[:-1]))  # starts [T, B] -> [T, B, N]


class Actor(nn.Module):
    """pi(u^a | o^a): categorical over available actions, or a diagonal Gaussian."""

    def __init__(self, spec: EnvSpec, cfg: ModelConfig, log_std_init: float = -0.5) -> None:
        super().__init__()
        self.discrete = spec.action_kind == "discrete"
        self.encoder = ObsEncoder(spec, cfg)
        self.body = _Body(self.encoder.out_dim, spec, cfg)
        self.head = AgentLinear(cfg.hidden, spec.n_actions, spec.n_agents, cfg.share_params, gain=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((spec.n_actions,), log_std_init))

    def forward(self, obs: dict[str, Tensor], avail: Tensor, h: Tensor | None = None,
                starts: Tensor | None = None, agent: int | None = None) -> tuple[Tensor, Tensor | None]:
        """Returns distribution parameters (masked logits, or the Gaussian mean) ``[T, B, N, A]``.

        ``agent=i`` runs agent i alone on its own inputs ``[T, B, 1, ...]`` (decentralized execution).
        """
        x, h = self.body(self.encoder(obs), h, starts, agent)
        out = self.head(x, agent)
        if self.discrete:
            out = torch.where(avail, out, -1e9)
        return out, h

    def sample(self, params: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Draw actions and their log-probabilities from :meth:`forward`'s output."""
        if self.discrete:
            logp_all = params.log_softmax(-1)
            if deterministic:
                act = logp_all.argmax(-1)
            else:  # Gumbel-max: one fused draw for all agents and envs
                act = (logp_all - torch.log(-torch.log(torch.rand_like(logp_all)))).argmax(-1)
            return act, logp_all.gather(-1, act.unsqueeze(-1)).squeeze(-1)
        act = params if deterministic else params + self.log_std.exp() * torch.randn_like(params)
        return act, self.log_prob(params, act)

    def log_prob(self, params: Tensor, act: Tensor) -> Tensor:
        if self.discrete:
            return params.log_softmax(-1).gather(-1, act.unsqueeze(-1)).squeeze(-1)
        z = (act - params) * torch.exp(-self.log_std)
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * LOG_2PI).sum(-1)

    def log_prob_entropy(self, params: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`log_prob` and :meth:`entropy` together (PPO's loss needs both): one log-softmax."""
        if not self.discrete:
            return self.log_prob(params, act), self.entropy(params)
        logp = params.log_softmax(-1)
        return logp.gather(-1, act.unsqueeze(-1)).squeeze(-1), -(logp.exp() * logp).sum(-1)

    def entropy(self, params: Tensor) -> Tensor:
        if self.discrete:
            logp = params.log_softmax(-1)
            return -(logp.exp() * logp).sum(-1)
        return (self.log_std + 0.5 * (1 + LOG_2PI)).sum().expand(params.shape[:-1])


class Critic(nn.Module):
    """V(s, a) from the global state + agent id (centralized, MAPPO) or V(o^a) (local, IPPO)."""

    def __init__(self, spec: EnvSpec, cfg: ModelConfig, centralized: bool) -> None:
        super().__init__()
        self.centralized = centralized
        self.n_agents = spec.n_agents
        self.encoder = None if centralized else ObsEncoder(spec, cfg)
        n_in = spec.state_dim if centralized else self.encoder.out_dim
        self.body = _Body(n_in, spec, cfg)
        self.head = AgentLinear(cfg.hidden, 1, spec.n_agents, cfg.share_params, gain=1.0)

    def forward(self, obs: dict[str, Tensor], state: Tensor, h: Tensor | None = None,
                starts: Tensor | None = None, every_hidden: bool = False) -> tuple[Tensor, Tensor | None]:
        """Values ``[T, B, N]`` (normalized scale when value normalization is on) and the recurrent state
        after the last step, or after every step ``[T, B, N, H]`` with ``every_hidden``."""
        if self.centralized:
            x = state.unsqueeze(-2).expand(*state.shape[:-1], self.n_agents, -1)  # [T, B, N, S]
        else:
            x = self.encoder(obs)
        x, h = self.body(x, h, starts)
        return self.head(x).squeeze(-1), (x if every_hidden and h is not None else h)
