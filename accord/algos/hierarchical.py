"""Hierarchical MAPPO (``architecture: hierarchical``): a manager PPO over sub-goals, a worker PPO over actions.

Two PPO learners (:class:`~accord.algos.ppo.PPO`), composed rather than branched:

- **Manager** (CTDE: actor on ``o^a``, centralized critic on the state + agent id; feed-forward). It
  picks sub-goal ``g`` at episode starts, when the agent's worker reaches ``g``, and at the latest
  every ``k`` steps, so its transitions are semi-Markov: a decision at ``t`` held until the agent's
  next decision ``t'`` (or the episode's end) earns ``R_t = sum_{j=t}^{t'-1} gamma^{j-t} r_j`` (team
  reward) and bootstraps with ``gamma^{t'-t} V(s_{t'})`` (Sutton, Precup & Singh 1999, SMDP
  discounting). :func:`semi_markov_gae` is GAE over those decisions; only decision steps enter the
  manager's losses.
- **Workers** act on ``o^a`` + one-hot ``g`` (accord/hierarchy.py). Their advantage is their credit
  method's (``credit.name``: shared, counterfactual, ...; its critic and targets unchanged) plus
  :func:`option_return`: ``hierarchical.intrinsic`` for reaching ``g`` (``info["subgoal"]``),
  discounted to the end of the current option only. Options do not pay into each other, so a worker
  never gains by keeping the episode alive for more sub-goals (an earlier version summed intrinsic
  rewards across options and taught workers to avoid finishing the task).

The batch layout stays ``[T, B, N, ...]`` at both levels (:class:`HierBatch`): the manager's
``Rollout`` holds its sub-goals as actions on every step, its decisions as ``decision`` [T, B, N].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from accord.algos.ppo import PPO
from accord.config import Config
from accord.credit.base import CreditContext, CreditModule, Signals
from accord.credit.gae import backward_scan
from accord.envs.base import EnvSpec
from accord.hierarchy import HierarchicalPolicy, manager_spec, worker_spec
from accord.rollout import Rollout


@dataclass
class HierBatch:
    """What :class:`~accord.runners.hierarchical.HierarchicalRunner` collects: both levels, same T steps."""

    worker: Rollout  # obs with the sub-goal appended, env actions, pi^W log-probs
    manager: Rollout  # env obs, sub-goals as actions, pi^M log-probs; agent_mask = alive & decision
    decision: Tensor  # [T, B, N] bool: the manager picked agent a's sub-goal at step t
    reached: Tensor  # [T, B, N] bool: agent a reached its sub-goal at step t (first time in the option)


def semi_markov_gae(reward: Tensor, values: Tensor, next_values: Tensor, decision: Tensor, terminated: Tensor,
                    done: Tensor, gamma: float, lam: float) -> Tensor:
    """Manager advantages ``[T, B, N]`` at decision steps (0 elsewhere).

    ``reward`` [T, B] team reward; ``values``/``next_values`` [T, B, N] as in :func:`~accord.credit.gae.gae`;
    ``decision`` [T, B, N]; ``terminated``/``done`` [T, B]. For a decision at t whose option lasts
    until t' (the next decision, the episode's end, or the rollout's end, where it bootstraps):
    delta_t = R_t + gamma^(t'-t) V(s_t') - V(s_t),  A_t = delta_t + lam gamma^(t'-t) A_t' (A_t' = 0
    when the episode ended or the rollout stopped).
    """
    rew = torch.zeros_like(values[0])  # discounted reward from t+1 to the next decision (exclusive)
    disc = torch.ones_like(rew)  # gamma^(steps from t+1 to the next decision)
    v_next, a_next = next_values[-1], torch.zeros_like(rew)  # V and A at the next decision
    out = torch.zeros_like(values)
    for t in range(values.shape[0] - 1, -1, -1):
        end = done[t][:, None]  # [B, 1]: what follows step t is another episode
        rew, disc = rew.masked_fill(end, 0.0), disc.masked_fill(end, 1.0)
        v_next = torch.where(end, next_values[t] * (~terminated[t])[:, None], v_next)
        a_next = a_next.masked_fill(end, 0.0)
        rew, disc = reward[t][:, None] + gamma * rew, gamma * disc  # the option's return from t
        adv = rew + disc * v_next - values[t] + lam * disc * a_next
        d = decision[t]
        out[t] = adv * d
        rew, disc = rew.masked_fill(d, 0.0), disc.masked_fill(d, 1.0)
        v_next, a_next = torch.where(d, values[t], v_next), torch.where(d, adv, a_next)
    return out


class SemiMarkov(CreditModule):
    """The manager's credit: :func:`semi_markov_gae` on the team reward; its batch's ``agent_mask`` marks
    the decisions (of alive agents)."""

    def _assign(self, batch: Rollout, ctx: CreditContext) -> Signals:
        adv = semi_markov_gae(batch.reward, ctx.values, ctx.next_values, batch.agent_mask, batch.terminated,
                              batch.terminated | batch.truncated, self.gamma, self.lam)
        return Signals(adv, adv + ctx.values)


def option_return(intrinsic: Tensor, decision: Tensor, done: Tensor, gamma: float) -> Tensor:
    """``[T, B, N]``: the discounted intrinsic reward from step t to the end of the worker's current option
    (its next decision, the episode's end or the rollout's end). Options do not pay into each other: a
    worker gains nothing by keeping the episode alive for more sub-goals."""
    last = torch.cat([decision[1:], torch.ones_like(decision[:1])]) | done[..., None]  # option ends after t
    return backward_scan(intrinsic, gamma * (~last).float())


class WithIntrinsic(CreditModule):
    """The workers' credit: the configured method's signals, plus the option's intrinsic return added to
    the advantages (not to the critic's targets: the critic stays the credit method's)."""

    bonus: Tensor | None = None  # [T, B, N] option_return(...), set by Hierarchical.update

    def __init__(self, inner: CreditModule, cfg: Config, spec: EnvSpec) -> None:
        super().__init__(cfg, spec)
        self.inner = inner

    def _assign(self, batch: Rollout, ctx: CreditContext) -> Signals:
        assert self.bonus is not None
        s = self.inner.advantages(batch, ctx)
        return Signals(s.advantages + self.bonus, s.returns)

    def update(self, batch: Rollout, ctx: CreditContext) -> dict[str, float]:
        return self.inner.update(batch, ctx)

    def stats(self) -> dict[str, float]:
        return {**self.inner.stats(), **self._stats}


class Hierarchical:
    """Manager and worker PPO learners behind the :class:`~accord.runners.Learner` interface."""

    collects = "hierarchical"  # make_runner builds a HierarchicalRunner, which hands over a HierBatch

    def __init__(self, cfg: Config, spec: EnvSpec, device: torch.device) -> None:
        m_spec, w_spec = manager_spec(spec), worker_spec(spec)
        m_cfg = cfg.model_copy(deep=True)
        m_cfg.model.recurrent = False  # a sub-goal is picked from the current observation
        m_cfg.ppo.critic = "centralized"
        m_cfg.ppo.entropy_coef = cfg.hierarchical.manager_entropy
        self.manager = PPO(m_cfg, m_spec, device)
        self.manager.credit = SemiMarkov(m_cfg, m_spec).to(device)
        self.worker = PPO(cfg, w_spec, device)
        self.worker.credit = WithIntrinsic(self.worker.credit, cfg, w_spec).to(device)
        self.policy = HierarchicalPolicy(spec, self.manager.policy, self.worker.policy, cfg.hierarchical.k)
        self.intrinsic = cfg.hierarchical.intrinsic
        self.cfg = cfg
        self.rollout_len = cfg.ppo.rollout_len

    @property
    def env_steps(self) -> int:
        return self.worker.env_steps

    def update(self, batch: HierBatch) -> dict[str, float]:
        """Workers on their sub-goals (intrinsic + credit reward), then the manager on its decisions."""
        w = batch.worker
        self.worker.credit.bonus = option_return(self.intrinsic * batch.reached.float(), batch.decision,
                                                 w.terminated | w.truncated, self.cfg.ppo.gamma)
        out = self.worker.update(batch.worker)
        out["worker/subgoals_reached"] = float(batch.reached.sum() / batch.decision.sum().clamp_min(1))
        out["manager/decisions"] = float(batch.decision.sum())
        if bool(batch.decision.any()):  # k longer than the rollout: some batches hold no decision
            out.update({f"manager/{k}": v for k, v in self.manager.update(batch.manager).items()})
        else:
            self.manager.env_steps += batch.worker.reward.numel()
        return out

    def state_dict(self) -> dict[str, Any]:
        # env_steps at the top, as every learner's: evaluation and contribution read it from checkpoints.
        return {"manager": self.manager.state_dict(), "worker": self.worker.state_dict(), "env_steps": self.env_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.manager.load_state_dict(state["manager"])
        self.worker.load_state_dict(state["worker"])
