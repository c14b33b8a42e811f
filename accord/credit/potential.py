"""Potential-based reward shaping: ``r + gamma Phi(s') - Phi(s)`` with a given or learned potential.

Ng, Harada & Russell 1999, "Policy Invariance under Reward Transformations" (ICML): shaping by
``F = gamma Phi(s') - Phi(s)`` leaves the optimal policies unchanged for any Phi over states, and in
a stochastic game it keeps the Nash equilibria (Devlin & Kudenko 2011); a good Phi speeds learning.
Phi of the state after an episode's end is 0 (terminated or truncated), so every episode's shaping
sums to ``-Phi(s_0)``, which no policy can change. The same gamma as the learner's is used.

Phi is ``credit.potential`` ('package.module:function', states ``[..., S] -> [...]``), or, when
unset, learned as the team's state value (the potential that makes shaped rewards advantages).
The shaping term goes to every agent; the extrinsic team return is what is reported.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from accord.config import Config
from accord.credit.base import CreditContext, RewardCredit, team_reward
from accord.credit.state_value import StateValue
from accord.envs.base import EnvSpec
from accord.errors import ConfigError
from accord.plugins import load_object
from accord.rollout import Rollout


def load_potential(target: str) -> Callable[[Tensor], Tensor]:
    """The function named by 'package.module:function'; ConfigError if it cannot be imported."""
    return load_object(target, "potential", callable, "a function of states [..., S] -> [...]")


class Potential(RewardCredit):
    """Team reward plus ``gamma Phi(s_{t+1}) (1 - done_t) - Phi(s_t)`` for every agent."""

    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__(cfg, spec)
        if spec.state_dim == 0:
            raise ConfigError(f"credit.name=potential needs a global state for Phi(s), but task "
                              f"'{cfg.task.name}' has none; use shared or individual")
        c = cfg.credit
        self.target = c.potential
        self.epochs, self.max_norm = c.critic_epochs, cfg.ppo.max_grad_norm
        if self.target is None:
            self.fn: Callable[[Tensor], Tensor] = StateValue(spec.state_dim, c.critic_hidden)
            self.optimizers = {"potential": torch.optim.Adam(self.fn.parameters(), lr=c.critic_lr, eps=1e-5)}
        else:
            self.fn = load_potential(self.target)
            self.potential(torch.zeros(2, 3, spec.state_dim))  # refuse a wrong shape before training

    def potential(self, states: Tensor) -> Tensor:
        """Phi ``[...]`` of states ``[..., S]``; a user function of the wrong shape raises ConfigError."""
        phi = self.fn(states)
        want = tuple(states.shape[:-1])
        if not isinstance(phi, Tensor) or tuple(phi.shape) != want:
            got = f"shape {list(phi.shape)}" if isinstance(phi, Tensor) else f"a {type(phi).__name__}"
            raise ConfigError(f"credit.potential: '{self.target}' returned {got} for states of shape "
                              f"{list(states.shape)}; it must return one potential per state, shape {list(want)}")
        return phi.to(states)

    def reward(self, batch: Rollout, ctx: CreditContext) -> Tensor:
        with torch.no_grad():
            phi, phi_next = self.potential(batch.state), self.potential(ctx.next_state)  # [T, B]
        shaping = self.gamma * phi_next * ~(batch.terminated | batch.truncated) - phi  # [T, B]
        team = team_reward(batch, ctx.values.shape[-1])
        shaping = shaping.unsqueeze(-1).expand_as(team)  # [T, B, N]
        self.record("credit/shaping", shaping, batch.agent_mask)
        return team + shaping

    def update(self, batch: Rollout, ctx: CreditContext) -> dict[str, float]:
        if not isinstance(self.fn, StateValue):
            return {}
        _, targets = self.fn.targets(batch, ctx.next_state, self.gamma, self.lam)
        for _ in range(self.epochs):
            loss = self.fn.loss(batch.state, targets)
            self.step("potential", loss, self.max_norm)
        return {"credit/potential_loss": float(loss.detach())}
