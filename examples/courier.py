"""A user's PettingZoo env with a Dict observation (image + text + vector), for docs/multimodal.md.

Two couriers on a 4 x 4 grid; two depots drawn per episode. Each courier reads in words which depot
is its own ("go to a" / "go to b", a gymnasium ``Text``), sees the depots only in a camera image
(uint8, HWC, one channel per depot) and knows its own position only from a sensor vector. The second
courier's sensor also reports the time (a heterogeneous team: its vector is longer).

Train it with no glue code: ``PYTHONPATH=examples accord train task.name=courier:Courier``. The flags
``float_image``, ``long_text`` and ``nan_sensor`` break it on purpose, to show the errors accord gives.

``Hum`` is a vectorized task with an ``audio`` modality that no built-in encoder knows.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from accord.envs.base import EnvSpec, Step

SIZE, LIMIT = 4, 10
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


class Courier(ParallelEnv):
    metadata = {"name": "courier_v0"}

    def __init__(self, float_image: bool = False, long_text: bool = False, nan_sensor: bool = False) -> None:
        self.possible_agents = ["courier_0", "courier_1"]
        self.float_image, self.long_text, self.nan_sensor = float_image, long_text, nan_sensor
        image = spaces.Box(0, 255 if not float_image else 1, (SIZE, SIZE, 2),
                           np.float32 if float_image else np.uint8)
        text = spaces.Text(max_length=8, charset="abgot ")
        self._spaces = {a: spaces.Dict({"image": image, "text": text,
                                        "vector": spaces.Box(0, 1, (2 + i,), np.float32)})
                        for i, a in enumerate(self.possible_agents)}
        self.max_cycles = LIMIT
        self._rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Space:
        return self._spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(5)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        cells = self._rng.choice(SIZE * SIZE, 2, replace=False)
        self.depots = np.stack([cells // SIZE, cells % SIZE], -1)  # [2, 2]
        self.pos = self._rng.integers(0, SIZE, (2, 2))
        self.goal = self._rng.integers(0, 2, 2)
        self.t = 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        for i, a in enumerate(self.possible_agents):
            self.pos[i] = np.clip(self.pos[i] + MOVES[actions[a]], 0, SIZE - 1)
        self.t += 1
        dist = np.abs(self.pos - self.depots[self.goal]).sum(-1)
        rewards = {a: -float(dist[i]) / (2 * SIZE - 2) for i, a in enumerate(self.agents)}
        done = self.t >= LIMIT
        obs = self._obs()
        agents, self.agents = self.agents, [] if done else self.agents
        return obs, rewards, dict.fromkeys(agents, False), dict.fromkeys(agents, done), {a: {} for a in agents}

    def _obs(self) -> dict:
        image = np.zeros((SIZE, SIZE, 2), np.uint8)
        image[self.depots[:, 0], self.depots[:, 1], [0, 1]] = 255
        if self.float_image:
            image = image.astype(np.float32) / 255
        out = {}
        for i, a in enumerate(self.possible_agents):
            vector = [*(self.pos[i] / (SIZE - 1))] + ([self.t / LIMIT] if i else [])
            if self.nan_sensor and self.t == 3:
                vector[0] = float("nan")
            text = "go to " + "ab"[self.goal[i]] + (" to go" if self.long_text else "")
            out[a] = {"image": image, "text": text, "vector": np.array(vector, np.float32)}
        return out


class Hum:
    """A vectorized task observing ``audio`` [B, N, 8]: no built-in encoder for it."""

    def __init__(self, num_envs: int, device: str | torch.device = "cpu") -> None:
        self.num_envs, self.device = num_envs, torch.device(device)
        self.spec = EnvSpec(n_agents=2, obs_shapes={"audio": (8,)}, state_dim=2, action_kind="discrete",
                            n_actions=2, episode_limit=5)

    def reset(self, seed: int | None = None) -> Step:
        b = self.num_envs
        zeros = torch.zeros(b)
        false = torch.zeros(b, dtype=torch.bool)
        return Step({"audio": torch.zeros(b, 2, 8)}, torch.zeros(b, 2), zeros, torch.zeros(b, 2), false, false,
                    torch.ones(b, 2, dtype=torch.bool), torch.ones(b, 2, 2, dtype=torch.bool))

    def step(self, actions: torch.Tensor) -> Step:
        return self.reset()

    def close(self) -> None:
        """Nothing to release."""
