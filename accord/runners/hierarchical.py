"""Collection for ``architecture: hierarchical``: the manager acts inside the env the workers see.

:class:`GoalEnv` wraps the task: after every env step it lets the manager pick sub-goals where due
(:func:`accord.hierarchy.decide`, the same rule :class:`~accord.hierarchy.HierarchicalPolicy` acts
by), appends them to the observations and records the manager's side of the step. The worker level
is then an ordinary env for :class:`~accord.runners.sync.SyncRunner`, which fills the workers'
``Rollout`` as for any PPO run; :class:`HierarchicalRunner` adds the manager's ``Rollout`` over the
same T steps and hands both over as a :class:`~accord.algos.hierarchical.HierBatch`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from accord.algos.hierarchical import HierBatch
from accord.envs.base import Step, VecEnv
from accord.errors import EnvError
from accord.hierarchy import HierarchicalPolicy, decide, reached_goal, state_with_goals, with_goal, worker_spec
from accord.rollout import Rollout
from accord.runners.sync import SyncRunner


class GoalEnv:
    """``env`` as the workers see it: observations carry each agent's current sub-goal (one-hot)."""

    def __init__(self, env: VecEnv, policy: HierarchicalPolicy, rollout_len: int) -> None:
        self.inner, self.policy = env, policy
        self.spec, self.num_envs, self.device = worker_spec(env.spec), env.num_envs, env.device
        self.k_goals = env.spec.n_subgoals
        t, b, n = rollout_len, env.num_envs, env.spec.n_agents
        self.goal = torch.zeros(b, n, dtype=torch.long, device=env.device)
        self.age = torch.zeros_like(self.goal)  # steps the current sub-goal has been held
        # The manager's side of the last T steps (row t: the sub-goal the worker pursued at step t).
        self.goals = torch.zeros(t, b, n, dtype=torch.long, device=env.device)
        self.logp = torch.zeros(t, b, n, device=env.device)
        self.decision = torch.zeros(t, b, n, dtype=torch.bool, device=env.device)
        self.reached = torch.zeros(t, b, n, dtype=torch.bool, device=env.device)
        self.t = 0
        self._pending: tuple[Tensor, Tensor] = (self.logp[0], self.decision[0])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # e.g. fault_counts of the resilient layer

    def _decide(self, step: Step, starts: Tensor, reached: Tensor | None) -> None:
        self.goal, logp, decided = decide(self.policy.manager, step.obs, self.goal, self.age, starts, self.policy.k,
                                          False, reached)
        self.age = self.age.masked_fill(decided, 0)
        self._pending = (logp, decided)

    def reset(self, seed: int | None = None) -> Step:
        step = self.inner.reset(seed=seed)
        self._decide(step, torch.ones(self.num_envs, dtype=torch.bool, device=self.device), None)
        return self._with_goals(step, self.goal)

    def step(self, actions: Tensor) -> Step:
        t = self.t % self.goals.shape[0]
        self.goals[t], (self.logp[t], self.decision[t]) = self.goal, self._pending
        step = self.inner.step(actions)
        held = self.goal
        reached = reached_goal(step.info, held)
        if reached is None:
            raise EnvError("architecture 'hierarchical': the task reports no info['subgoal'] [B, N] (the "
                           "sub-goal each agent reached, -1 for none); see docs/hierarchical.md")
        self.reached[t] = reached
        self.age += 1
        self.t += 1
        self._decide(step, step.done, reached)  # a worker that reached its sub-goal hands back at once
        return self._with_goals(step, held)

    def _with_goals(self, step: Step, held: Tensor) -> Step:
        """Sub-goals into observations and state: the current ones, the held ones for a finished episode's last."""
        k = self.k_goals
        final_obs = with_goal(step.final_obs, held, k) if step.final_obs else {}
        final_state = None if step.final_state is None else state_with_goals(step.final_state, held, k)
        return replace(step, obs=with_goal(step.obs, self.goal, k), state=state_with_goals(step.state, self.goal, k),
                       final_obs=final_obs, final_state=final_state)

    def close(self) -> None:
        self.inner.close()


def manager_rollout(worker: Rollout, goals: Tensor, logp: Tensor, decision: Tensor, k_goals: int) -> Rollout:
    """The manager's ``Rollout`` over the workers' T steps: env observations and state (the workers'
    without the sub-goals: views, no copy), sub-goals as actions, decisions as the agent mask."""
    t, b, n = goals.shape

    def env_obs(obs: dict[str, Tensor]) -> dict[str, Tensor]:
        return {**obs, "vector": obs["vector"][..., :-k_goals]}

    def env_state(state: Tensor) -> Tensor:
        return state[..., :-n * k_goals]

    z = torch.zeros(t, b, n, device=goals.device)
    return Rollout(
        obs=env_obs(worker.obs), state=env_state(worker.state), next_state=env_state(worker.next_state),
        avail=torch.ones(t, b, n, k_goals, dtype=torch.bool, device=goals.device),
        agent_mask=worker.agent_mask & decision, starts=worker.starts, actions=goals, logp=logp, values=z,
        reward=worker.reward, agent_reward=worker.agent_reward, terminated=worker.terminated,
        truncated=worker.truncated, final_values=z.clone(), last_values=z[0].clone(),
        final_obs=env_obs(worker.final_obs), last_obs=env_obs(worker.last_obs), last_state=env_state(worker.last_state),
        last_starts=worker.last_starts)


class HierarchicalRunner(SyncRunner):
    """A SyncRunner for the workers on a :class:`GoalEnv`; :meth:`collect` returns both levels."""

    def __init__(self, env: VecEnv, policy: HierarchicalPolicy, rollout_len: int, seed: int) -> None:
        self.goal_env = GoalEnv(env, policy, rollout_len)
        super().__init__(self.goal_env, policy.worker, rollout_len, seed)

    def collect(self) -> HierBatch:  # type: ignore[override]
        g = self.goal_env
        g.t = 0
        worker = super().collect()
        manager = manager_rollout(worker, g.goals, g.logp, g.decision, g.k_goals)
        return HierBatch(worker, manager, g.decision, g.reached)
