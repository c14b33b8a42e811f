"""PettingZooVecEnv: layout, autoreset, seeding, dead agents and action masks."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from gymnasium import spaces
from mpe2 import simple_spread_v3
from pettingzoo import ParallelEnv

from accord.envs.base import VecEnv
from accord.envs.pettingzoo import PettingZooVecEnv
from accord.errors import ConfigError

spread = functools.partial(simple_spread_v3.parallel_env, N=3, max_cycles=25)


class Tiny(ParallelEnv):
    """Three agents; 'b' dies at step 2, everyone terminates at step 4 with success.

    'a' has 2 actions (of 3), 'c' has a smaller observation and an action mask. ``kind`` picks
    vector, dict ({"observation", "action_mask"}) or image observations.
    """

    metadata = {"name": "tiny_v0"}

    def __init__(self, kind: str = "vector") -> None:
        self.kind = kind
        self.possible_agents = ["a", "b", "c"]
        self.agents = []
        self.t = 0

    def _size(self, agent: str) -> int:
        return 3 if agent == "c" else 4

    def observation_space(self, agent: str) -> spaces.Space:
        if self.kind == "image":
            return spaces.Box(0, 255, (5, 6, 2), np.uint8)
        box = spaces.Box(-np.inf, np.inf, (self._size(agent),), np.float32)
        if self.kind == "dict":
            return spaces.Dict({"observation": box, "action_mask": spaces.MultiBinary(3)})
        return box

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2 if agent == "a" else 3)

    def _obs(self, agent: str) -> object:
        value = self.t + 1 + self.possible_agents.index(agent)
        if self.kind == "image":
            return np.full((5, 6, 2), value, np.uint8)
        obs = np.full(self._size(agent), value, np.float32)
        if self.kind == "dict":
            return {"observation": obs, "action_mask": np.array([0, 1, 1], np.int8)}
        return obs

    def _info(self, agent: str) -> dict:
        return {"action_mask": np.array([1, 0, 1], np.int8)} if agent == "c" and self.kind != "dict" else {}

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: self._obs(a) for a in self.agents}, {a: self._info(a) for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents)
        self.t += 1
        rewards = {a: 1.0 for a in self.agents}
        terms = {a: (a == "b" and self.t == 2) or self.t >= 4 for a in self.agents}
        truncs = {a: False for a in self.agents}
        obs = {a: self._obs(a) for a in self.agents}
        infos = {a: {**self._info(a), **({"success": 1.0} if self.t >= 4 else {})} for a in self.agents}
        self.agents = [a for a in self.agents if not terms[a]]
        return obs, rewards, terms, truncs, infos


def test_spread_layout_and_rewards() -> None:
    env = PettingZooVecEnv([spread] * 2)
    assert isinstance(env, VecEnv)
    s = env.spec
    assert (s.n_agents, s.obs_shapes, s.state_dim, s.action_kind, s.n_actions, s.episode_limit) == (
        3, {"vector": (18,)}, 54, "discrete", 5, 25,
    )  # fmt: skip
    assert s.agent_names == ("agent_0", "agent_1", "agent_2")
    step = env.reset(seed=0)
    assert step.obs["vector"].shape == (2, 3, 18) and step.obs["vector"].dtype == torch.float32
    assert step.state.shape == (2, 54) and step.avail_actions.shape == (2, 3, 5)
    assert step.agent_mask.all() and step.avail_actions.all() and not step.done.any()
    step = env.step(torch.zeros(2, 3, dtype=torch.long))
    assert step.reward.shape == (2,) and step.agent_reward.shape == (2, 3)
    assert torch.allclose(step.reward, step.agent_reward.sum(-1))
    mean_env = PettingZooVecEnv([spread] * 2, team_reward="mean")
    mean_env.reset(seed=0)
    mean_step = mean_env.step(torch.zeros(2, 3, dtype=torch.long))
    assert torch.allclose(mean_step.reward, step.agent_reward.mean(-1))


def test_spread_autoreset_truncates_after_max_cycles() -> None:
    env, raw = PettingZooVecEnv([spread] * 2), spread()
    env.reset(seed=0)
    raw.reset(seed=0)  # the same episode as env 0
    for t in range(25):
        actions = torch.randint(0, 5, (2, 3))
        step = env.step(actions)
        raw_obs, *_ = raw.step({a: int(actions[0, i]) for i, a in enumerate(raw.possible_agents)})
        assert bool(step.done.any()) == (t == 24)
    assert step.truncated.all() and not step.terminated.any()
    assert step.final_obs["vector"].shape == (2, 3, 18) and step.final_state.shape == (2, 54)
    # final_obs is the finished episode's last observation, obs already the next episode's.
    assert torch.equal(step.final_obs["vector"][0], torch.from_numpy(np.stack(list(raw_obs.values()))))
    assert not torch.equal(step.final_obs["vector"], step.obs["vector"])
    assert step.agent_mask.all() and not env.step(torch.randint(0, 5, (2, 3))).done.any()


def test_spread_seeding_is_deterministic() -> None:
    def rollout(seed: int | None, n_envs: int = 2) -> list[torch.Tensor]:
        env = PettingZooVecEnv([spread] * n_envs)
        g = torch.Generator().manual_seed(0)
        out = [env.reset(seed=seed).obs["vector"]]
        out += [env.step(torch.randint(0, 5, (n_envs, 3), generator=g)).obs["vector"] for _ in range(30)]
        return out

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert torch.equal(a[0][1], rollout(8, n_envs=1)[0][0])  # env i is seeded with seed + i


def test_spread_continuous_actions() -> None:
    env = PettingZooVecEnv([functools.partial(spread, continuous_actions=True)])
    s = env.spec
    assert (s.action_kind, s.n_actions, s.action_low, s.action_high, s.avail_dim) == (
        "continuous",
        5,
        0.0,
        1.0,
        0,
    )
    assert env.reset(seed=0).avail_actions.shape == (1, 3, 0)
    assert env.step(torch.full((1, 3, 5), 0.5)).reward.shape == (1,)
    # An "action_mask" in a continuous env's infos means nothing to the layout: ignored, not an error.
    inner = env.envs[0]
    step = inner.step
    inner.step = lambda acts: (*step(acts)[:4], {a: {"action_mask": np.ones(5, np.int8)} for a in inner.agents})
    assert env.step(torch.full((1, 3, 5), 0.5)).avail_actions.shape == (1, 3, 0)


def test_dead_agent_is_masked_with_zero_obs_and_reward() -> None:
    with pytest.raises(ConfigError, match="episode_limit"):
        PettingZooVecEnv([Tiny])
    env = PettingZooVecEnv([Tiny] * 2, episode_limit=4)
    assert env.spec.obs_shapes == {"vector": (4,)} and env.spec.n_actions == 3
    assert (env.spec.state_dim, env.spec.agent_state_dim) == (12, 4)  # concatenated observations
    step = env.reset()
    assert step.obs["vector"][0, 2].tolist() == [3, 3, 3, 0]  # 'c' padded to 4
    assert torch.equal(step.state, step.obs["vector"].reshape(2, 12))
    act = torch.zeros(2, 3, dtype=torch.long)
    env.step(act)
    step = env.step(act)  # 'b' terminates here
    assert step.agent_mask[:, 1].eq(False).all() and step.agent_mask[:, [0, 2]].all()
    assert step.obs["vector"][:, 1].eq(0).all() and step.avail_actions[:, 1].all()
    assert step.agent_reward[0].tolist() == [1, 1, 1] and not step.done.any()
    step = env.step(act)
    assert step.agent_reward[0].tolist() == [1, 0, 1] and step.reward.tolist() == [2, 2]
    step = env.step(act)  # everyone terminates
    assert step.terminated.all() and not step.truncated.any()
    assert step.info["success"].tolist() == [1.0, 1.0]
    assert step.final_obs["vector"][0, :, 0].tolist() == [5, 0, 7] and step.agent_mask.all()
    assert step.obs["vector"][0, :, 0].tolist() == [1, 2, 3]  # already the next episode


def test_action_masks_are_propagated() -> None:
    step = PettingZooVecEnv([Tiny], episode_limit=4).reset()
    # 'a' has only 2 actions; 'c' masks action 1 through infos.
    assert step.avail_actions[0].tolist() == [[True, True, False], [True, True, True], [True, False, True]]
    step = PettingZooVecEnv([functools.partial(Tiny, "dict")], episode_limit=4).reset()
    assert step.avail_actions[0].tolist() == [[False, True, True]] * 3  # from the dict observation
    assert step.obs["vector"].shape == (1, 3, 4)


def test_image_observations_are_chw_uint8() -> None:
    env = PettingZooVecEnv([functools.partial(Tiny, "image")], episode_limit=4)
    assert env.spec.obs_shapes == {"image": (2, 5, 6)} and env.spec.state_dim == 0
    step = env.reset()
    assert step.obs["image"].shape == (1, 3, 2, 5, 6) and step.obs["image"].dtype == torch.uint8
    assert step.state.shape == (1, 0)
