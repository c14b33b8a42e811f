"""Shim: a gymnasium multi-agent env with tuple observations and actions as a PettingZoo ``ParallelEnv``.

lbforaging, rware and similar envs register plain gymnasium ids whose ``observation_space`` and
``action_space`` are ``Tuple``s with one entry per agent, whose ``step`` takes a tuple of actions and
returns a list of rewards, and whose ``done`` is one flag (or one per agent). Exposing them as a
``ParallelEnv`` lets :class:`~accord.envs.pettingzoo.PettingZooVecEnv` and
:class:`~accord.runners.subproc.SubprocVecEnv` batch them, in this process or in workers, with the
batching code written once.

Episode ends: reaching the env's step limit (its registered ``max_episode_steps``, or the
``_max_episode_steps`` / ``max_steps`` attribute lbforaging and rware use) is a truncation, since
the observation does not show the clock; any other end is a termination. The env's info dict is
given to every agent. Agents that finished before the others (per-agent dones) are sent a zero action.

``action_masks=True`` passes the env's own valid actions to the learner as ``infos[agent]["action_mask"]``
(lbforaging keeps them per player in ``_valid_actions``: moves into walls or food, and loading away
from food, are invalid there anyway and played as no-ops). Off by default, as in EPyMARL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from accord.errors import ConfigError, EnvError

# Packages that register gymnasium ids -> the accord extra that installs them.
_EXTRAS = {"lbforaging": "lbf", "rware": "rware"}


def _make(env_id: str, kwargs: dict[str, Any]) -> Any:
    import gymnasium

    package = env_id.split(":")[0] if ":" in env_id else None
    try:
        return gymnasium.make(env_id, disable_env_checker=True, **kwargs)
    except ModuleNotFoundError as e:
        extra = _EXTRAS.get(package or "")
        fix = f"pip install 'accord[{extra}]'" if extra else f"install the package that provides '{env_id}'"
        raise ConfigError(f"task.params.env: cannot import '{package or e.name}' for '{env_id}'; hint: {fix}") from None
    except gymnasium.error.Error as e:
        hint = ("check the id against gymnasium.pprint_registry()" if package else
                "prefix the id with the package that registers it, e.g. 'lbforaging:Foraging-8x8-2p-2f-coop-v3'")
        raise ConfigError(f"task.params.env: {e}; hint: {hint}") from None


def _step_limit(env: Any) -> int | None:
    if env.spec is not None and env.spec.max_episode_steps is not None:
        return int(env.spec.max_episode_steps)
    inner = env.unwrapped
    limit = getattr(inner, "_max_episode_steps", None) or getattr(inner, "max_steps", None)
    return None if limit is None else int(limit)


class GymmaEnv(ParallelEnv):
    """``gymnasium.make(env, **kwargs)`` of a tuple-space multi-agent env, as a ``ParallelEnv``.

    Agents are ``agent_0 .. agent_{N-1}`` in tuple order; ``max_cycles`` is the env's step limit
    (``None`` if it has none, in which case the vec env needs ``episode_limit``).
    """

    def __init__(self, env: str, kwargs: dict[str, Any] | None = None, action_masks: bool = False) -> None:
        self.env = _make(env, dict(kwargs or {}))
        if action_masks and not hasattr(self.env.unwrapped, "_valid_actions"):
            raise ConfigError(f"task.params.action_masks: '{env}' does not expose valid actions "
                              "(only lbforaging does); hint: leave action_masks off")
        self.action_masks = action_masks
        obs_space, act_space = self.env.observation_space, self.env.action_space
        if not isinstance(obs_space, spaces.Tuple) or not isinstance(act_space, spaces.Tuple):
            raise ConfigError(f"task.params.env: '{env}' has {type(obs_space).__name__} observations and "
                              f"{type(act_space).__name__} actions, not one Tuple entry per agent; hint: use "
                              "task 'pettingzoo' for PettingZoo envs")
        if len(obs_space) != len(act_space):
            raise EnvError(f"'{env}' has {len(obs_space)} observation but {len(act_space)} action spaces; "
                           "hint: one of each per agent")
        self.possible_agents = [f"agent_{i}" for i in range(len(obs_space))]
        self.agents: list[str] = []
        self.metadata = {"name": env}
        self.max_cycles = _step_limit(self.env)
        self._idle = [np.zeros(s.shape, s.dtype) for s in act_space]  # the action of an agent that is done
        self._t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        return self.env.observation_space[self.possible_agents.index(agent)]

    def action_space(self, agent: str) -> spaces.Space:
        return self.env.action_space[self.possible_agents.index(agent)]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, infos = self.reset_lists(seed, options)
        return dict(zip(self.possible_agents, obs, strict=True)), self._by_agent(infos)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        agents = self.possible_agents
        obs, rewards, terms, truncs, infos = self.step_lists(
            [actions.get(a, idle) for a, idle in zip(agents, self._idle, strict=True)])
        return (dict(zip(agents, obs, strict=True)), dict(zip(agents, rewards, strict=True)),
                dict(zip(agents, terms, strict=True)), dict(zip(agents, truncs, strict=True)), self._by_agent(infos))

    # -- lists in agent order: what PettingZooVecEnv calls, tuple envs' own form -------------------------

    def reset_lists(self, seed: int | None = None, options: dict | None = None) -> tuple[Sequence, list]:
        """:meth:`reset` as lists in ``possible_agents`` order: observations and infos."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.agents, self._t = list(self.possible_agents), 0
        return self._checked(obs, "observations"), self._infos(info)

    def step_lists(self, actions: Sequence[Any]) -> tuple[Sequence, list[float], list[bool], list[bool], list]:
        """:meth:`step` as lists in ``possible_agents`` order, with no dicts built and read back: observations,
        rewards, terminations, truncations and infos (None for an agent that was not live before the step)."""
        agents, live = self.possible_agents, self.agents
        if len(live) < len(agents):
            actions = [x if a in live else idle for a, x, idle in zip(agents, actions, self._idle, strict=True)]
        obs, rewards, done, truncated, info = self.env.step(tuple(actions))
        self._t += 1
        clock = self.max_cycles is not None and self._t >= self.max_cycles
        obs, rewards = self._checked(obs, "observations"), [float(r) for r in self._checked(rewards, "rewards")]
        if done is False and truncated is False and not clock and len(live) == len(agents):  # the common step
            return obs, rewards, [False] * len(agents), [False] * len(agents), self._infos(info)
        dones = self._flags(done, "dones")
        truncs = [clock or t for t in self._flags(truncated, "truncations")]
        terms = [d and not t for d, t in zip(dones, truncs, strict=True)]
        infos = self._infos(info)  # for the agents live before this step, as PettingZoo gives them
        self.agents = [a for a, d, t in zip(agents, dones, truncs, strict=True) if a in live and not (d or t)]
        return obs, rewards, terms, truncs, infos

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    def _infos(self, info: dict[str, Any]) -> list[dict[str, Any] | None]:
        """The env's info for every live agent (None for the others), with its valid-action mask when asked for."""
        live, agents = self.agents, self.possible_agents
        if not self.action_masks:
            return [info] * len(agents) if len(live) == len(agents) else [info if a in live else None for a in agents]
        inner = self.env.unwrapped
        out = []
        for agent, player, space in zip(agents, inner.players, self.env.action_space, strict=True):
            mask = np.zeros(space.n, dtype=np.int8)
            mask[[int(action.value) for action in inner._valid_actions[player]]] = 1
            out.append({**info, "action_mask": mask} if agent in live else None)
        return out

    def _by_agent(self, infos: list[dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
        return {a: i for a, i in zip(self.possible_agents, infos, strict=True) if i is not None}

    def _flags(self, value: Any, what: str) -> list[bool]:
        """One flag for all agents, or one per agent, as a list in agent order."""
        if isinstance(value, (list, tuple, np.ndarray)):
            return [bool(v) for v in self._checked(value, what)]
        return [bool(value)] * len(self.possible_agents)

    def _checked(self, values: Any, what: str) -> Any:
        if len(values) != len(self.possible_agents):
            raise EnvError(f"{self.metadata['name']} returned {len(values)} {what} for "
                           f"{len(self.possible_agents)} agents; hint: one per agent, in tuple order")
        return values
