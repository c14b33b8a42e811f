"""The PPO-family credit interface: a stateful module that turns a batch into per-agent signals.

A learner of the PPO family holds one :class:`CreditModule` (built from the registry by
``credit.name``) and calls it once per update, in this order, never branching on the method:

1. ``advantages(batch, ctx) -> Signals``: per-agent advantages ``[T, B, N]`` (the learner
   normalizes them) and the value targets of the learner's own critic ``[T, B, N]``;
2. the learner's policy and critic steps;
3. ``update(batch, ctx) -> metrics``: the module trains what it owns (a Q critic, an intrinsic
   reward, a potential); it runs after the policy step because LIIR's meta-gradient needs the
   policy before (kept by ``advantages``) and after it;
4. ``stats() -> metrics``: per-agent credit statistics for monitoring (``docs/metrics.md``).

Networks are submodules and optimizer states travel as the module's extra state, so the
learner's ``state_dict`` checkpoints a credit module whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from accord.config import Config
from accord.credit.gae import gae
from accord.credit.nstep import nstep_returns
from accord.envs.base import EnvSpec
from accord.models.actor_critic import Actor
from accord.optim import clip_grad_norms
from accord.rollout import Rollout


@dataclass
class CreditContext:
    """What a credit module sees besides the batch; values are de-normalized."""

    values: Tensor  # [T, B, N] V(s_t) from the learner's critic
    next_values: Tensor  # [T, B, N] V(s_{t+1}); the final observation's value where truncated
    next_state: Tensor  # [T, B, S] state after step t, before autoreset (the final state at episode ends)
    actor: Actor  # the policy: pi_old in advantages(), the stepped policy in update()
    rho: Tensor | None = None  # [T, B, N] V-trace weights when actors act with lagged weights (async, ray)
    c: Tensor | None = None  # [T, B, N] V-trace trace weights (accord.credit.vtrace)


@dataclass
class Signals:
    advantages: Tensor  # [T, B, N] per-agent advantages, before the learner normalizes them
    returns: Tensor  # [T, B, N] value targets for the learner's critic (de-normalized)


class CreditModule(nn.Module):
    """Base of PPO-family credit methods; subclasses implement :meth:`_assign`."""

    corrects_lag = False  # uses ctx.rho / ctx.c, so it can learn from lagged actors (runner async, ray)
    nstep_targets = False  # True where advantages are R - V(s): ppo.nstep then refreshes them each epoch

    def __init__(self, cfg: Config, spec: EnvSpec) -> None:
        super().__init__()
        self.gamma, self.lam, self.nstep = cfg.ppo.gamma, cfg.ppo.gae_lambda, cfg.ppo.nstep
        self.agent_names = spec.agent_names
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._stats: dict[str, float] = {}

    def advantages(self, batch: Rollout, ctx: CreditContext) -> Signals:
        """Per-agent advantages and critic targets; records the advantage spread of each agent."""
        self._stats = {}
        signals = self._assign(batch, ctx)
        self.record("credit/adv_std", signals.advantages, batch.agent_mask, reduce="std")
        return signals

    def _assign(self, batch: Rollout, ctx: CreditContext) -> Signals:
        raise NotImplementedError

    def update(self, batch: Rollout, ctx: CreditContext) -> dict[str, float]:
        """Train the module's own parts after the policy step; nothing to train by default."""
        return {}

    def stats(self) -> dict[str, float]:
        """Per-agent credit statistics of the last update, keyed ``credit/<stat>/<agent>``."""
        return dict(self._stats)

    def record(self, key: str, x: Tensor, mask: Tensor, reduce: str = "mean") -> None:
        """Store the per-agent mean (or std) of ``x`` [T, B, N] over alive steps under ``key/<agent>``."""
        x = x.detach()
        for i, name in enumerate(self.agent_names):
            vals = x[..., i][mask[..., i]]
            if vals.numel() > 0:
                stat = vals.std(correction=0) if reduce == "std" else vals.mean()
                self._stats[f"{key}/{name}"] = float(stat)

    def step(self, name: str, loss: Tensor, max_norm: float) -> Tensor:
        """One optimizer step of ``self.optimizers[name]`` with gradient-norm clipping."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in opt.param_groups for p in group["params"]]
        (norm,) = clip_grad_norms([params], max_norm)
        opt.step()
        return norm

    # Optimizer states ride in the module's state_dict, so a checkpoint restores training exactly.
    def get_extra_state(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over entries where ``mask`` (same shape, bool or float) is set."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def normalize(x: Tensor, mask: Tensor) -> Tensor:
    """``(x - mean) / (std + 1e-5)`` with statistics over alive agents only (``mask`` bool or float, the
    shape of ``x``; sums, not a boolean gather, so it also runs inside the compiled minibatch loss)."""
    mask = mask.to(x.dtype)
    count = mask.sum()
    mean = (x * mask).sum() / count.clamp_min(1.0)
    var = ((x - mean).pow(2) * mask).sum() / (count - 1).clamp_min(1.0)  # unbiased, as Tensor.std
    return (x - mean) / (var.sqrt() + 1e-5)


def reward_gae(rewards: Tensor, batch: Rollout, values: Tensor, next_values: Tensor, gamma: float,
               lam: float, rho: Tensor | None = None, c: Tensor | None = None) -> Tensor:
    """GAE ``[T, B, N]`` of per-agent ``rewards`` [T, B, N] with the batch's episode boundaries
    (V-trace with the weights ``rho``/``c``)."""
    return gae(rewards, values, next_values, batch.terminated, batch.terminated | batch.truncated, gamma, lam,
               rho, c)


class RewardCredit(CreditModule):
    """Credit through the reward: GAE of the signal :meth:`reward` returns, against the learner's critic.

    Shared, individual and mixed rewards, learned intrinsic rewards (LIIR) and potential-based
    shaping differ only in that signal, so they differ only in :meth:`reward`.
    """

    corrects_lag = True
    nstep_targets = True

    def reward(self, batch: Rollout, ctx: CreditContext) -> Tensor:
        """Per-agent learning reward ``[T, B, N]``."""
        raise NotImplementedError

    def _assign(self, batch: Rollout, ctx: CreditContext) -> Signals:
        reward = self.reward(batch, ctx)
        if self.nstep is not None:
            returns = nstep_returns(reward, ctx.next_values, batch.terminated, batch.terminated | batch.truncated,
                                    self.gamma, self.nstep)
            return Signals(returns - ctx.values, returns)
        adv = reward_gae(reward, batch, ctx.values, ctx.next_values, self.gamma, self.lam, ctx.rho, ctx.c)
        return Signals(adv, adv + ctx.values)


def team_reward(batch: Rollout, n_agents: int) -> Tensor:
    """The team reward ``[T, B]`` broadcast to every agent ``[T, B, N]``."""
    return batch.reward.unsqueeze(-1).expand(*batch.reward.shape, n_agents)


def policy_probs(actor: Actor, batch: Rollout) -> Tensor:
    """pi(u | tau) over all discrete actions ``[T, B, N, A]`` (unavailable ones get 0)."""
    logits, _ = actor(batch.obs, batch.avail, batch.h_actor, batch.starts)
    return logits.softmax(-1)
