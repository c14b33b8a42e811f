"""Adapter: a VMAS scenario (torch-vectorized simulator) as a :class:`~accord.envs.base.VecEnv`.

VMAS already steps B envs with tensor ops, so the adapter only re-lays tensors: observations,
rewards and dones stay on the simulator's device from simulator to policy and back (no numpy, no
per-env Python loop except resetting envs that finished early).

Mapping from VMAS to the layout:

- agents are ``env.agents`` in order, always alive (``agent_mask`` True).
- each agent's tensor observation becomes modality ``"vector"``; smaller ones are zero-padded to
  the largest. The global state is the concatenation of all agents' observations
  (``agent_state_dim`` = obs size): VMAS scenarios offer no separate state.
- team reward is the sum (default) or mean of the agents' rewards; ``agent_reward`` keeps them apart.
- discrete actions: one flat ``Discrete`` per agent (VMAS's default encoding); agents with fewer
  actions have the rest marked unavailable. Continuous actions: the spec carries the widest bounds
  over agents; VMAS clamps each agent's action to its own ``u_range`` (``clamp_actions``).
- ``max_steps`` ends episodes by truncation; a scenario's own ``done()`` is termination.

VMAS keeps one random state for all its envs in a process (it swaps it in and out of torch's
global RNG around every call), so ``reset(seed)`` makes a run reproducible as long as one VMAS env
is stepped at a time in the process.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from accord.envs.base import EnvSpec, Step
from accord.envs.pettingzoo import TeamReward
from accord.errors import ConfigError, EnvError

_INSTALL = "pip install 'accord[vmas]'"


def _import_vmas() -> Any:
    try:
        import vmas
    except ImportError:
        raise ConfigError(f"task 'vmas' needs the VMAS simulator, which is not installed; hint: {_INSTALL}") from None
    return vmas


def _scenario_names(vmas: Any) -> list[str]:
    """Every scenario VMAS can load by name."""
    return sorted({*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios})


class VmasVecEnv:
    """A batch of ``num_envs`` copies of VMAS ``scenario``; extra keyword arguments go to the scenario.

    ``continuous`` picks VMAS's continuous (``[B, N, D]`` float) or discrete (``[B, N]`` int) actions.
    Episodes are truncated after ``max_steps`` steps.
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        scenario: str = "navigation",
        continuous: bool = True,
        max_steps: int = 100,
        team_reward: TeamReward = "sum",
        **scenario_kwargs: Any,
    ) -> None:
        vmas = _import_vmas()
        names = _scenario_names(vmas)
        if scenario not in names:
            match = difflib.get_close_matches(scenario, names, n=1, cutoff=0.5)
            hint = f"did you mean '{match[0]}'?" if match else f"one of {', '.join(names)}"
            raise ConfigError(f"task.params.scenario: VMAS has no scenario '{scenario}'; hint: {hint}")
        if team_reward not in ("sum", "mean"):
            raise ConfigError(f"task.params.team_reward must be 'sum' or 'mean', got {team_reward!r}")
        if max_steps < 1:
            raise ConfigError(f"task.params.max_steps must be >= 1, got {max_steps}")
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*not used by the scenario")  # VMAS only warns
            try:
                self.env = vmas.make_env(
                    scenario, num_envs=num_envs, device=device, continuous_actions=continuous,
                    max_steps=max_steps, clamp_actions=True, terminated_truncated=True, **scenario_kwargs,
                )
            except UserWarning as w:
                unused = str(w).split("kwargs: ")[-1].split(" passed")[0]
                raise ConfigError(f"task.params: {unused} unknown to VMAS scenario '{scenario}'; hint: see "
                                  "the keyword arguments its make_world reads") from None
        self.name = f"vmas/{scenario}"
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.team_reward = team_reward

        agents = self.env.agents
        obs = self.env.reset()
        if not all(isinstance(o, Tensor) for o in obs):
            raise EnvError(f"{self.name}: observations are {type(obs[0]).__name__}, not tensors; hint: "
                           "the VMAS adapter supports scenarios with one tensor observation per agent")
        dim = max(o.shape[-1] for o in obs)
        n = len(agents)
        spaces = self.env.action_space.spaces
        if continuous:
            self._act_sizes = [int(s.shape[0]) for s in spaces]
            n_actions = max(self._act_sizes)
            low, high = float(min(s.low.min() for s in spaces)), float(max(s.high.max() for s in spaces))
            self._avail = torch.zeros(num_envs, n, 0, dtype=torch.bool, device=self.device)
        else:
            sizes = torch.tensor([int(s.n) for s in spaces], device=self.device)
            n_actions, low, high = int(sizes.max()), -1.0, 1.0
            per_agent = torch.arange(n_actions, device=self.device) < sizes[:, None]  # [N, A]
            self._avail = per_agent.expand(num_envs, n, n_actions)
        self.spec = EnvSpec(
            n_agents=n, obs_shapes={"vector": (dim,)}, state_dim=n * dim,
            action_kind="continuous" if continuous else "discrete", n_actions=n_actions,
            episode_limit=max_steps, action_low=low, action_high=high,
            agent_names=tuple(a.name for a in agents), agent_state_dim=dim,
        )
        self._alive = torch.ones(num_envs, n, dtype=torch.bool, device=self.device)

    # -- VecEnv -------------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> Step:
        """Reset every env; ``seed`` seeds VMAS's random state (shared by the whole batch)."""
        if seed is not None:
            self.env.seed(seed)
        obs = self._stack_obs(self.env.reset())
        zeros = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        rewards = torch.zeros(self.num_envs, self.spec.n_agents, device=self.device)
        return self._step(obs, rewards, zeros, zeros)

    def step(self, actions: Tensor) -> Step:
        actions = actions.to(self.device)
        if self.spec.action_kind == "continuous":
            per_agent = [actions[:, i, :d] for i, d in enumerate(self._act_sizes)]  # N x [B, D_i]
        else:
            per_agent = list(actions.unbind(1))  # N x [B]
        obs, rewards, terminated, truncated, _ = self.env.step(per_agent)
        obs = self._stack_obs(obs)
        rewards = torch.stack(rewards, dim=1)  # [B, N]
        terminated = terminated.bool()
        truncated = truncated.bool() & ~terminated
        done = terminated | truncated
        n_done = int(done.sum())  # the one host sync per step
        if n_done == 0:
            return self._step(obs, rewards, terminated, truncated)
        if n_done == self.num_envs:  # the usual case: every episode hit max_steps together
            new_obs = self.env.reset()
        else:
            for i in done.nonzero().flatten().tolist():
                self.env.reset_at(i, return_observations=False)
            new_obs = self.env.get_from_scenario(get_observations=True, get_rewards=False, get_infos=False,
                                                 get_dones=False)[0]
        step = self._step(self._stack_obs(new_obs), rewards, terminated, truncated)
        step.final_obs, step.final_state = {"vector": obs}, obs.flatten(1)
        return step

    def close(self) -> None:
        """VMAS holds no processes or files; nothing to release."""

    # -- layout -------------------------------------------------------------------------------------

    def _stack_obs(self, obs: list[Tensor]) -> Tensor:
        dim = self.spec.obs_shapes["vector"][0]
        return torch.stack([o if o.shape[-1] == dim else F.pad(o, (0, dim - o.shape[-1])) for o in obs], 1)

    def _step(self, obs: Tensor, rewards: Tensor, terminated: Tensor, truncated: Tensor) -> Step:
        team = rewards.sum(1) if self.team_reward == "sum" else rewards.mean(1)  # [B]
        return Step(
            obs={"vector": obs}, state=obs.flatten(1), reward=team, agent_reward=rewards,
            terminated=terminated, truncated=truncated, agent_mask=self._alive, avail_actions=self._avail,
        )
