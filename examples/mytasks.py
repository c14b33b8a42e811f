"""A user task for accord: ``CoverEnv``, a PettingZoo ``ParallelEnv`` (docs/bring-your-own-env.md).

Two agents walk on a line of ``size`` cells; each must stand on its own target cell. Each step an
agent is penalized by its distance to its target; the episode ends when both stand on their
targets (``info["success"]``) or after ``max_cycles`` steps. Train it with
``PYTHONPATH=examples accord train task.name=mytasks:CoverEnv``.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

STAY, LEFT, RIGHT = 0, 1, 2  # action 0 does nothing: the stand-in of contribution reports


class CoverEnv(ParallelEnv):
    metadata = {"name": "cover_v0"}

    def __init__(self, size: int = 5, max_cycles: int = 10) -> None:
        self.size, self.max_cycles = size, max_cycles  # accord reads max_cycles as the episode limit
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self._rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Box:
        # own position, own target, the other's position, the other's target; scaled to [0, 1]
        return spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32)

    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(3)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.pos = self._rng.integers(0, self.size, size=2)
        self.target = self._rng.choice(self.size, size=2, replace=False)
        self.t = 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        move = np.array([{STAY: 0, LEFT: -1, RIGHT: 1}[int(actions[a])] for a in self.possible_agents])
        self.pos = np.clip(self.pos + move, 0, self.size - 1)
        self.t += 1
        distance = np.abs(self.pos - self.target)
        covered = bool((distance == 0).all())
        timeout = self.t >= self.max_cycles
        obs = self._obs()
        rewards = {a: float(-distance[i] / self.size) for i, a in enumerate(self.possible_agents)}
        terminated = {a: covered for a in self.possible_agents}
        truncated = {a: timeout and not covered for a in self.possible_agents}
        infos = {a: {"success": covered} for a in self.possible_agents}
        if covered or timeout:
            self.agents = []
        return obs, rewards, terminated, truncated, infos

    def _obs(self) -> dict[str, np.ndarray]:
        scale = max(self.size - 1, 1)
        out = {}
        for i, a in enumerate(self.possible_agents):
            j = 1 - i
            out[a] = np.array([self.pos[i], self.target[i], self.pos[j], self.target[j]], dtype=np.float32) / scale
        return out
