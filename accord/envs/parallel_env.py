"""Any accord VecEnv with one env, seen through PettingZoo's ``ParallelEnv`` API.

This lets built-in tasks be driven by tools that speak PettingZoo (its API test, wrappers, other
libraries' trainers). Per agent: observations are numpy arrays (a ``Dict`` when the task has
several modalities), rewards are the individual rewards, and ``infos[agent]["action_mask"]``
(int8) carries the available-action mask for discrete tasks along with the task's own info
values. When the episode ends every agent leaves ``agents``; an agent whose ``agent_mask`` turns
False leaves as terminated. The returned observation of a finishing step is the episode's last
one (``final_obs``), not the first of the next: the inner env autoresets, this wrapper does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from accord.envs.base import Step, VecEnv
from accord.errors import ConfigError

# Per-agent space of each observation modality, given its per-agent shape.
_MODALITY_SPACES = {
    "vector": lambda shape: spaces.Box(-np.inf, np.inf, shape, np.float32),
    "image": lambda shape: spaces.Box(0, 255, shape, np.uint8),
    "text": lambda shape: spaces.Box(0, np.iinfo(np.int64).max, shape, np.int64),
}


class AsParallelEnv(ParallelEnv):
    """PettingZoo ``ParallelEnv`` over a VecEnv built with ``num_envs=1``."""

    metadata = {"name": "accord_parallel_v0", "render_modes": [], "is_parallelizable": True}
    render_mode = None

    def __init__(self, env: VecEnv) -> None:
        if env.num_envs != 1:
            raise ConfigError(f"AsParallelEnv wraps a single env: build the task with num_envs=1 "
                              f"(got num_envs={env.num_envs})")
        unknown = set(env.spec.obs_shapes) - set(_MODALITY_SPACES)
        if unknown:
            raise ConfigError(f"AsParallelEnv cannot expose observation modalities {sorted(unknown)}; "
                              f"known: {sorted(_MODALITY_SPACES)}")
        self.env, spec = env, env.spec
        self.possible_agents = list(spec.agent_names)
        self.agents: list[str] = []
        per_modality = {k: _MODALITY_SPACES[k](tuple(shape)) for k, shape in spec.obs_shapes.items()}
        obs_space = next(iter(per_modality.values())) if len(per_modality) == 1 else spaces.Dict(per_modality)
        if spec.action_kind == "discrete":
            act_space: spaces.Space = spaces.Discrete(spec.n_actions)
        else:
            act_space = spaces.Box(spec.action_low, spec.action_high, (spec.n_actions,), np.float32)
        # One shared object per agent: PettingZoo requires the same space object on every call.
        self.observation_spaces = dict.fromkeys(self.possible_agents, obs_space)
        self.action_spaces = dict.fromkeys(self.possible_agents, act_space)
        self.state_space = spaces.Box(-np.inf, np.inf, (spec.state_dim,), np.float32)
        self._state = np.zeros(spec.state_dim, np.float32)

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        step = self.env.reset(seed=seed)
        alive = step.agent_mask[0].cpu().numpy()
        self.agents = [a for a, live in zip(self.possible_agents, alive, strict=True) if live]
        self._state = step.state[0].cpu().numpy()
        obs = self._agent_obs(step.obs)
        return {a: obs[a] for a in self.agents}, self._infos(step, self.agents, finished=False)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        acting = self.agents
        step = self.env.step(self._joint_action(actions))
        finished = bool(step.done[0])
        obs, state = step.finals()  # the episode's last observation when it finished (before autoreset)
        obs = self._agent_obs(obs)
        self._state = state[0].cpu().numpy()
        rewards = step.agent_reward[0].cpu().numpy()
        alive = step.agent_mask[0].cpu().numpy()
        index = {a: i for i, a in enumerate(self.possible_agents)}
        terminated, truncated = bool(step.terminated[0]), bool(step.truncated[0])
        # An agent dies mid-episode when its mask turns False; after a finished step the mask
        # already belongs to the next episode, so then only the episode's end counts.
        died = {a: not finished and not alive[index[a]] for a in acting}
        self.agents = [] if finished else [a for a in acting if not died[a]]
        return (
            {a: obs[a] for a in acting},
            {a: float(rewards[index[a]]) for a in acting},
            {a: terminated or died[a] for a in acting},
            {a: truncated and not died[a] for a in acting},
            self._infos(step, acting, finished),
        )

    def state(self) -> np.ndarray:
        return self._state

    def render(self) -> None:
        """No rendering: ``render_mode`` is always None."""

    def close(self) -> None:
        self.env.close()

    # -- conversions -----------------------------------------------------------------------
    def _joint_action(self, actions: dict[str, Any]) -> torch.Tensor:
        """[1, N] int64 or [1, N, D] float32; agents that did not act (dead) get zeros."""
        spec, device = self.env.spec, self.env.device
        if spec.action_kind == "discrete":
            joint = [int(actions.get(a, 0)) for a in self.possible_agents]
            return torch.tensor([joint], dtype=torch.int64, device=device)  # [1, N]
        rest = np.zeros(spec.n_actions, np.float32)
        joint = np.stack([np.asarray(actions.get(a, rest), np.float32) for a in self.possible_agents])
        return torch.as_tensor(joint, device=device)[None]  # [1, N, D]

    def _agent_obs(self, obs: dict[str, torch.Tensor]) -> dict[str, Any]:
        arrays = {k: v[0].cpu().numpy() for k, v in obs.items()}  # modality -> [N, ...]
        if len(arrays) == 1:
            (only,) = arrays.values()
            return {a: only[i] for i, a in enumerate(self.possible_agents)}
        return {a: {k: v[i] for k, v in arrays.items()} for i, a in enumerate(self.possible_agents)}

    def _infos(self, step: Step, agents: list[str], finished: bool) -> dict[str, dict]:
        """Task info values per agent, plus the action mask while the agent still has to act."""
        index = {a: i for i, a in enumerate(self.possible_agents)}
        infos: dict[str, dict] = {a: {} for a in agents}
        for name, value in step.info.items():
            v = value[0].cpu().numpy()  # [] or [N]
            for a in agents:
                infos[a][name] = v[index[a]].item() if v.ndim else v.item()
        if self.env.spec.action_kind == "discrete" and not finished:
            mask = step.avail_actions[0].cpu().numpy().astype(np.int8)  # [N, A]
            for a in agents:
                infos[a]["action_mask"] = mask[index[a]]
        return infos
