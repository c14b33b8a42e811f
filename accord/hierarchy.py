"""The two levels of ``architecture: hierarchical``: a manager assigns sub-goals, workers pursue them.

The manager ``pi^M(g | o^a)`` picks a sub-goal ``g`` in ``0..K-1`` for each agent at every episode
start and whenever the agent's sub-goal has been held ``k`` steps; the worker ``pi^W(u | o^a, g)``
acts on its observation with the one-hot sub-goal appended to the ``vector`` modality. Each level
is a plain :class:`~accord.policy.Policy` over its own :class:`EnvSpec` (:func:`manager_spec`,
:func:`worker_spec`), so each can be stored, loaded and exported alone.

:class:`HierarchicalPolicy` composes them behind ``Policy``'s acting interface (``step``, ``act``,
``initial_state``, ``record``), so evaluation, the eval protocol, suites and contribution run it
unchanged. Its recurrent state ``[B, N, 2 + H]`` carries each agent's sub-goal, how many steps the
sub-goal has been held, and the worker's GRU state (H = 0 for feed-forward workers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.errors import CheckpointError, ConfigError
from accord.policy import RECORD_FORMAT, Policy, spec_from_dict, spec_to_dict

GOAL, AGE = 0, 1  # positions of the sub-goal and its age in the last dim of the policy state


def manager_spec(spec: EnvSpec) -> EnvSpec:
    """The manager sees the env's observations and state; its actions are the K sub-goals."""
    if spec.n_subgoals < 1:
        raise ConfigError("architecture 'hierarchical' needs a task with sub-goals (EnvSpec.n_subgoals > 0 "
                          "and info['subgoal']); built-in: keydoor (docs/hierarchical.md)")
    if "vector" not in spec.obs_shapes:
        raise ConfigError("architecture 'hierarchical' appends the sub-goal to the 'vector' observation; "
                          f"this task has only {', '.join(spec.obs_shapes)}")
    return replace(spec, action_kind="discrete", n_actions=spec.n_subgoals, n_subgoals=0)


def worker_spec(spec: EnvSpec) -> EnvSpec:
    """The worker acts in the env with the one-hot sub-goal appended to its vector observation; its
    centralized critic sees every agent's sub-goal after the state (its value depends on them)."""
    manager_spec(spec)  # the same checks, one message
    shapes = dict(spec.obs_shapes)
    shapes["vector"] = (shapes["vector"][0] + spec.n_subgoals,)
    return replace(spec, obs_shapes=shapes, state_dim=spec.state_dim + spec.n_agents * spec.n_subgoals,
                   n_subgoals=0)


def with_goal(obs: Mapping[str, Tensor], goal: Tensor, n_subgoals: int) -> dict[str, Tensor]:
    """Observations ``{m: [..., N, ...]}`` with ``one_hot(goal)`` [..., N, K] appended to the vector."""
    out = dict(obs)
    out["vector"] = torch.cat([obs["vector"], torch.nn.functional.one_hot(goal, n_subgoals).float()], dim=-1)
    return out


def state_with_goals(state: Tensor, goal: Tensor, n_subgoals: int) -> Tensor:
    """The state ``[..., S]`` with every agent's one-hot sub-goal appended ``[..., S + N K]``."""
    goals = torch.nn.functional.one_hot(goal, n_subgoals).float().flatten(-2)  # [..., N K]
    return torch.cat([state, goals], dim=-1)


def reached_goal(info: Mapping[str, Tensor], goal: Tensor) -> Tensor | None:
    """``[B, N]``: the agent reached the sub-goal it held (the env's ``info["subgoal"]``); None if not reported."""
    return None if "subgoal" not in info else info["subgoal"] == goal


def decide(manager: Policy, obs: Mapping[str, Tensor], goal: Tensor, age: Tensor, starts: Tensor, k: int,
           deterministic: bool, reached: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """New sub-goals ``[B, N]`` where an episode starts (``starts`` [B]), a worker reached its sub-goal
    (``reached`` [B, N]: its option ends) or held it ``k`` steps (``age`` [B, N]); returns (sub-goals,
    log pi^M of the new ones (0 elsewhere), decided [B, N])."""
    decided = starts[:, None] | (age >= k)  # [B, N]
    if reached is not None:
        decided |= reached
    b, n = goal.shape
    avail = torch.ones(b, n, manager.spec.n_actions, dtype=torch.bool, device=goal.device)
    new, logp, _ = manager.step(obs, avail, None, starts, deterministic)
    return torch.where(decided, new, goal), logp * decided, decided


class HierarchicalPolicy(Policy):
    """Manager and worker policies acting as one team policy ``pi(u | o)`` (see the module docstring)."""

    def __init__(self, spec: EnvSpec, manager: Policy, worker: Policy, k: int) -> None:
        super().__init__(spec, worker.actor, worker.model)
        self.manager, self.worker, self.k = manager, worker, k
        self.n_subgoals = manager.spec.n_actions

    def initial_state(self, batch: int, agents: int | None = None) -> Tensor:
        """Zeros ``[batch, N, 2 + H]``; the manager decides at the first step (``starts``) anyway."""
        return torch.zeros(batch, agents or self.spec.n_agents, 2 + self.worker.hidden, device=self.device)

    def step(self, obs: Mapping[str, Tensor], avail: Tensor, state: Tensor | None, starts: Tensor,
             deterministic: bool = False, info: Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Manager (where due), then worker on its sub-goal: env actions, log pi^W, next state.

        ``info`` (the env's, with ``"subgoal"``) lets a worker that reached its sub-goal hand back to the
        manager at once, as in training; without it (``act``, exported graphs) sub-goals last k steps.
        """
        if state is None:
            state = self.initial_state(avail.shape[0])
        goal, age = state[..., GOAL].long(), state[..., AGE].long()
        reached = None if info is None else reached_goal(info, goal)
        goal, _, decided = decide(self.manager, obs, goal, age, starts, self.k, deterministic, reached)
        h = state[..., 2:] if self.worker.hidden else None
        act, logp, h = self.worker.step(with_goal(obs, goal, self.n_subgoals), avail, h, starts, deterministic)
        age = torch.where(decided, 1, age + 1)
        parts = [goal[..., None].float(), age[..., None].float()] + ([] if h is None else [h])
        return act, logp, torch.cat(parts, dim=-1)

    def step_on(self, step: Step, state: Tensor | None, starts: Tensor, deterministic: bool = False
                ) -> tuple[Tensor, Tensor, Tensor]:
        return self.step(step.obs, step.avail_actions, state, starts, deterministic, info=step.info)

    def agent(self, i: int | str) -> Any:
        raise ConfigError("a hierarchical policy acts as a team (Policy.act); for one agent's view use "
                          "policy.manager.agent(i) and policy.worker.agent(i) with the sub-goal appended")

    def record(self) -> dict[str, Any]:
        """Both levels' records, plus the env spec and k (what ``Policy.load`` needs to compose them)."""
        return {"format": RECORD_FORMAT, "spec": spec_to_dict(self.spec), "model": self.model.model_dump(),
                "value_based": False, "epsilon": 0.0, "hierarchical": {"k": self.k},
                "manager": self.manager.record(), "worker": self.worker.record()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], device: str | torch.device = "cpu",
                    where: str = "checkpoint") -> HierarchicalPolicy:
        try:
            k = int(record["hierarchical"]["k"])
            spec = spec_from_dict(record["spec"])
            manager = Policy.from_record(record["manager"], device, f"{where} (manager)")
            worker = Policy.from_record(record["worker"], device, f"{where} (worker)")
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: the hierarchical policy record is incomplete ({e})") from None
        return cls(spec, manager, worker, k).eval()
