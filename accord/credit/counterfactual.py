"""Counterfactual credit (COMA): a centralized Q(s, u) critic and a baseline that marginalizes one agent.

Foerster et al. 2018, "Counterfactual Multi-Agent Policy Gradients" (AAAI, arXiv 1705.08926):

    A^a(s, u) = Q(s, u) - sum_{u'} pi^a(u' | tau^a) Q(s, (u^{-a}, u'))

The baseline holds the other agents' actions fixed and averages over agent a's own, so it adds no
bias and removes the other agents' part of the team reward from a's signal. The critic sees the
state, a's own observation, the other agents' actions (a's own slot zeroed) and a's id, and
outputs one value per action of a, so one pass gives every counterfactual value.

The critic is trained on TD(lambda) returns of the team reward, as in the paper,
``G_t = r_t + gamma [(1 - lambda) Q(s_{t+1}, u_{t+1}) + lambda G_{t+1}]``, bootstrapped with the
learner's V(s_{t+1}) = E_u Q where u_{t+1} is not in the batch (rollout end, truncation). Targets
come from the critic before its steps, i.e. a target network refreshed every update (the
reference refreshes every 200 critic steps). Deviation: the network outputs Q - V(s), V from the
learner's critic, and regresses ``G_t - V(s_t)`` (normalized like MAPPO's values). With bootstrapped
returns Q is often orders of magnitude larger than the gaps between actions, and a network fitting the
whole of Q spends its precision on the common part; A^a is unchanged, since V(s) does not depend
on u. Discrete actions only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from accord.config import Config, ModelConfig
from accord.credit.base import (
    CreditContext,
    CreditModule,
    Signals,
    masked_mean,
    policy_probs,
    reward_gae,
    team_reward,
)
from accord.envs.base import EnvSpec
from accord.errors import ConfigError
from accord.models.encoders import ObsEncoder
from accord.models.layers import AgentLinear, mlp
from accord.models.value_norm import ValueNorm
from accord.rollout import Rollout


@dataclass
class CriticOut:
    q: Tensor  # [T, B, N, A] Q - V(s) of every own action of each agent, others' actions fixed (normalized)
    reg: Tensor  # scalar added to the critic loss
    stats: dict[str, Tensor] = field(default_factory=dict)  # per-agent statistics [T, B, N] to monitor


def counterfactual_advantage(q: Tensor, pi: Tensor, actions: Tensor) -> Tensor:
    """``A^a = Q(s, u)[u^a] - sum_u' pi^a(u') Q(s, (u^-a, u'))``: q, pi ``[T, B, N, A]``, actions ``[T, B, N]``."""
    q_taken = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [T, B, N]
    return q_taken - (pi * q).sum(-1)


def td_lambda_returns(rewards: Tensor, q_taken: Tensor, bootstrap: Tensor, batch: Rollout, gamma: float,
                      lam: float) -> Tensor:
    """TD(lambda) returns ``[T, B, N]`` of Q(s_t, u_t); ``bootstrap`` [T, B, N] is V(s_{t+1}), used where
    the next step's action is unknown (after the last step, or where the episode was truncated)."""
    done = (batch.terminated | batch.truncated).unsqueeze(-1)  # [T, B, 1]
    nxt = torch.cat([q_taken[1:], bootstrap[-1:]])  # [T, B, N]
    nxt = torch.where(done, bootstrap, nxt)
    # G_t = A_t + Q_t with A the GAE of Q: the same recursion, written once (credit/gae.py).
    return reward_gae(rewards, batch, q_taken, nxt, gamma, lam) + q_taken


class ComaCritic(nn.Module):
    """Q(s, o^a, u^{-a}, a) -> ``[T, B, N, A]``: state, own observation, the others' one-hot actions, agent
    id; one set of weights for all agents, or one per agent (``model.share_params``)."""

    def __init__(self, spec: EnvSpec, hidden: int, shared: bool, model: ModelConfig | None = None) -> None:
        super().__init__()
        n, a = spec.n_agents, spec.n_actions
        self.n_actions = a
        self.register_buffer("others", 1.0 - torch.eye(n), persistent=False)  # [N, N]
        self.register_buffer("ids", torch.eye(n), persistent=False)
        self.encoder = ObsEncoder(spec, model)
        n_in = spec.state_dim + self.encoder.out_dim + n * a + n
        self.net = nn.Sequential(nn.LayerNorm(n_in), mlp(n_in, hidden, 2, n, shared, "relu"),
                                 AgentLinear(hidden, a, n, shared, gain=1.0))

    def forward(self, batch: Rollout) -> CriticOut:
        t, b, n = batch.actions.shape
        u = nn.functional.one_hot(batch.actions, self.n_actions).float()  # [T, B, N, A]
        u = u * batch.agent_mask.unsqueeze(-1)  # dead agents act as nobody
        others = (self.others[:, :, None] * u.unsqueeze(-3)).flatten(-2)  # [T, B, N, N * A]
        state = batch.state.unsqueeze(-2).expand(t, b, n, -1)  # [T, B, N, S]
        obs = self.encoder(batch.obs)  # [T, B, N, D]
        x = torch.cat([state, obs, others, self.ids.expand(t, b, n, n)], dim=-1)  # [T, B, N, S + D + N*A + N]
        return CriticOut(self.net(x), torch.zeros((), device=x.device))


class Counterfactual(CreditModule):
    """COMA's counterfactual advantage from a centralized Q critic that this module trains."""

    method = "counterfactual"

    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__(cfg, spec)
        if spec.action_kind != "discrete":
            raise ConfigError(f"credit.name={self.method} needs discrete actions (its baseline sums over each "
                              f"agent's actions), but task '{cfg.task.name}' has continuous actions; use shared, "
                              "individual, mixed, shaped or potential")
        c = cfg.credit
        self.critic = self.build_critic(cfg, spec)
        self.norm = ValueNorm()
        self.td_lambda, self.epochs, self.max_norm = c.td_lambda, c.critic_epochs, cfg.ppo.max_grad_norm
        self.optimizers = {"critic": torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr, eps=1e-5)}

    def build_critic(self, cfg: Config, spec: EnvSpec) -> nn.Module:
        if spec.state_dim == 0:
            raise ConfigError(f"credit.name={self.method} needs a global state for its critic, but task "
                              f"'{cfg.task.name}' has none; use shared or individual")
        return ComaCritic(spec, cfg.credit.critic_hidden, cfg.model.share_params, cfg.model)

    def _assign(self, batch: Rollout, ctx: CreditContext) -> Signals:
        with torch.no_grad():
            out = self.critic(batch)
            adv = counterfactual_advantage(self.norm.denormalize(out.q), policy_probs(ctx.actor, batch),
                                           batch.actions)
        for key, x in out.stats.items():
            self.record(f"credit/{key}", x, batch.agent_mask)
        # The learner's V still learns the team value: it bootstraps the Q targets (E_u Q = V).
        team = reward_gae(team_reward(batch, adv.shape[-1]), batch, ctx.values, ctx.next_values,
                          self.gamma, self.lam)
        return Signals(adv, team + ctx.values)

    def update(self, batch: Rollout, ctx: CreditContext) -> dict[str, float]:
        act = batch.actions.unsqueeze(-1)
        with torch.no_grad():
            gap = self.norm.denormalize(self.critic(batch).q).gather(-1, act).squeeze(-1)  # [T, B, N] Q - V
            returns = td_lambda_returns(team_reward(batch, gap.shape[-1]), ctx.values + gap, ctx.next_values,
                                        batch, self.gamma, self.td_lambda)
            targets = returns - ctx.values
            self.norm.update(targets[batch.agent_mask])
            y = self.norm.normalize(targets)
        for _ in range(self.epochs):
            out = self.critic(batch)
            err = out.q.gather(-1, act).squeeze(-1) - y
            loss = masked_mean(err.pow(2), batch.agent_mask) + out.reg
            grad = self.step("critic", loss, self.max_norm)
        return {"credit/critic_loss": float(loss.detach()), "credit/critic_grad_norm": float(grad)}

