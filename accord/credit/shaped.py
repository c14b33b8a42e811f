"""Learned intrinsic reward (LIIR): per-agent reward shaping trained by meta-gradient for the team.

Du et al. 2019, "LIIR: Learning Individual Intrinsic Reward in Multi-Agent Reinforcement Learning"
(NeurIPS):

    proxy reward  r^proxy_i = r^ex + lambda r^in_i(eta),   r^in_i = tanh(f_eta(s, i, u_i)) in [-1, 1]
    inner step    theta' = theta + alpha grad_theta L_in,  L_in = E[log pi_theta(u_i | tau_i) A^proxy_i(eta)]
    outer step    eta <- eta + beta grad_eta J^ex(theta'),  J^ex(theta') = E[pi_theta'(u|tau) / pi_theta(u|tau) A^ex]

The policy learns from the proxy reward (the learner's clipped PPO steps play the inner step, and
its critic is the proxy critic); this module keeps the extrinsic critic V^ex(s) on the team
reward. By the chain rule, grad_eta J^ex(theta') = alpha grad_eta E[c A^proxy(eta)] with
``c_{t,i} = grad_theta log pi_theta(u_{t,i} | tau_{t,i}) . grad_theta' J^ex``, one forward-mode
directional derivative at the old parameters. That is exact for one SGD inner step and the usual
linearization for PPO's several (the reference code makes the same one). Both advantages are
normalized as the learner normalizes them. Learned intrinsic rewards are not potential-based and
can change the optimum, so lambda stays small; the extrinsic team return is what is reported.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.config import Config
from accord.credit.base import (
    CreditContext,
    RewardCredit,
    Signals,
    masked_mean,
    normalize,
    reward_gae,
    team_reward,
)
from accord.credit.state_value import StateValue
from accord.envs.base import EnvSpec
from accord.errors import ConfigError
from accord.models.actor_critic import Actor
from accord.models.layers import mlp
from accord.rollout import Rollout


class IntrinsicReward(nn.Module):
    """r^in = tanh(f(s, i, u_i)) ``[T, B, N]`` in [-1, 1], for discrete (one-hot) or continuous actions."""

    def __init__(self, spec: EnvSpec, hidden: int) -> None:
        super().__init__()
        n = spec.n_agents
        self.discrete, self.n_actions = spec.action_kind == "discrete", spec.n_actions
        self.register_buffer("ids", torch.eye(n), persistent=False)
        n_in = spec.state_dim + n + spec.n_actions
        self.net = nn.Sequential(nn.LayerNorm(n_in), mlp(n_in, hidden, 2, n, True, "relu"), nn.Linear(hidden, 1))

    def forward(self, state: Tensor, actions: Tensor) -> Tensor:
        u = nn.functional.one_hot(actions, self.n_actions).float() if self.discrete else actions  # [T, B, N, A]
        t, b, n = u.shape[:3]
        x = torch.cat([state.unsqueeze(-2).expand(t, b, n, -1), self.ids.expand(t, b, n, n), u], dim=-1)
        return torch.tanh(self.net(x).squeeze(-1))


class _LogProb(nn.Module):
    """log pi(u | tau) of a batch ``[T, B, N]`` as one module call, so torch.func can swap parameters."""

    def __init__(self, actor: Actor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, batch: Rollout) -> Tensor:
        params, _ = self.actor(batch.obs, batch.avail, batch.h_actor, batch.starts)
        return self.actor.log_prob(params, batch.actions)


def extrinsic_gradient(actor: Actor, batch: Rollout, adv_ex: Tensor) -> dict[str, Tensor]:
    """grad J^ex at the actor's current parameters theta'; ``J^ex = E[exp(log pi' - log pi_old) A^ex]``."""
    named = [(k, p) for k, p in actor.named_parameters() if p.requires_grad]
    j = masked_mean(torch.exp(_LogProb(actor)(batch) - batch.logp) * adv_ex, batch.agent_mask)
    grads = torch.autograd.grad(j, [p for _, p in named], allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(named, grads, strict=True)}


def policy_sensitivity(actor: Actor, params: dict[str, Tensor], batch: Rollout,
                       direction: dict[str, Tensor]) -> Tensor:
    """``c = grad_theta log pi_theta(u | tau) . direction`` at ``theta = params``, ``[T, B, N]`` (one JVP)."""
    wrapped = _LogProb(actor)

    def logp(p: dict[str, Tensor]) -> Tensor:
        return torch.func.functional_call(wrapped, {f"actor.{k}": v for k, v in p.items()}, (batch,))

    primals = {k: params[k] for k in direction}
    _, c = torch.func.jvp(logp, (primals,), (direction,))
    return c


def meta_objective(sensitivity: Tensor, adv_proxy: Tensor, mask: Tensor) -> Tensor:
    """``E[c A^proxy(eta)]``: its eta-gradient times the inner step size is grad_eta J^ex(theta')."""
    return masked_mean(sensitivity.detach() * adv_proxy, mask)


class Shaped(RewardCredit):
    """Team reward plus a learned per-agent intrinsic reward, trained to raise the extrinsic return."""

    corrects_lag = False  # the meta-gradient differentiates through on-policy advantages
    nstep_targets = False  # the meta-gradient assumes GAE advantages, fixed for the whole update

    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__(cfg, spec)
        if spec.state_dim == 0:
            raise ConfigError(f"credit.name=shaped needs a global state for its extrinsic critic and intrinsic "
                              f"reward, but task '{cfg.task.name}' has none; use shared or individual")
        c = cfg.credit
        self.scale, self.epochs, self.max_norm = c.intrinsic_scale, c.critic_epochs, cfg.ppo.max_grad_norm
        self.intrinsic = IntrinsicReward(spec, c.critic_hidden)
        self.extrinsic = StateValue(spec.state_dim, c.critic_hidden)
        self.optimizers = {
            "intrinsic": torch.optim.Adam(self.intrinsic.parameters(), lr=c.intrinsic_lr, eps=1e-5),
            "extrinsic": torch.optim.Adam(self.extrinsic.parameters(), lr=c.critic_lr, eps=1e-5),
        }
        self._theta_old: dict[str, Tensor] = {}

    def proxy_reward(self, batch: Rollout) -> Tensor:
        """``r^ex + lambda r^in(eta)`` ``[T, B, N]``, differentiable in eta."""
        r_in = self.intrinsic(batch.state, batch.actions)
        return team_reward(batch, r_in.shape[-1]) + self.scale * r_in

    def reward(self, batch: Rollout, ctx: CreditContext) -> Tensor:
        with torch.no_grad():
            r_in = self.intrinsic(batch.state, batch.actions)  # [T, B, N]
        self.record("credit/intrinsic_abs", r_in.abs(), batch.agent_mask)
        return team_reward(batch, r_in.shape[-1]) + self.scale * r_in

    def _assign(self, batch: Rollout, ctx: CreditContext) -> Signals:
        # pi_old, kept for the meta-gradient once the learner has stepped the policy.
        self._theta_old = {k: p.detach().clone() for k, p in ctx.actor.named_parameters()}
        return super()._assign(batch, ctx)

    def update(self, batch: Rollout, ctx: CreditContext) -> dict[str, float]:
        mask = batch.agent_mask
        adv_ex, targets = self.extrinsic.targets(batch, ctx.next_state, self.gamma, self.lam)  # [T, B]
        adv_ex = normalize(adv_ex.unsqueeze(-1).expand_as(ctx.values), mask)  # [T, B, N]
        # Outer step: move eta along grad_eta J^ex(theta').
        c = policy_sensitivity(ctx.actor, self._theta_old, batch, extrinsic_gradient(ctx.actor, batch, adv_ex))
        proxy = reward_gae(self.proxy_reward(batch), batch, ctx.values, ctx.next_values, self.gamma, self.lam)
        meta = meta_objective(c, normalize(proxy, mask), mask)
        meta_grad = self.step("intrinsic", -meta, self.max_norm)
        for _ in range(self.epochs):
            v_loss = self.extrinsic.loss(batch.state, targets)
            self.step("extrinsic", v_loss, self.max_norm)
        return {"credit/meta_objective": float(meta.detach()), "credit/meta_grad_norm": float(meta_grad),
                "credit/extrinsic_value_loss": float(v_loss.detach())}
