"""PettingZoo view of built-in tasks: the official API test, plus what the wrapper adds."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from accord.envs.parallel_env import AsParallelEnv
from accord.envs.registry import TASKS as REGISTRY
from accord.envs.tasks.foraging import Foraging
from accord.envs.tasks.matrix import Climbing, TwoStep
from accord.envs.tasks.spread import Spread
from accord.errors import ConfigError

# Every built-in task of the registry with its defaults, plus variants that change the spaces.
TASKS = {
    **{name: functools.partial(entry.load(), 1) for name, entry in REGISTRY.items()
       if entry.target.startswith("accord.envs.tasks.")},
    "foraging_sight_3p": lambda: Foraging(1, grid_size=10, n_agents=3, n_food=3, sight=2),
    "climbing_25": lambda: Climbing(1, episode_limit=25),
    "spread_continuous": lambda: Spread(1, continuous=True),
}


@pytest.mark.parametrize("name", list(TASKS))
def test_parallel_api_test_passes_without_warnings(name: str) -> None:
    env = AsParallelEnv(TASKS[name]())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the API test reports missing or extra agent keys as warnings
        parallel_api_test(env, num_cycles=60)


@pytest.mark.parametrize("name", list(TASKS))
def test_episode_values_lie_in_their_spaces(name: str) -> None:
    env = AsParallelEnv(TASKS[name]())
    obs, infos = env.reset(seed=0)
    for agent in env.possible_agents:
        env.action_space(agent).seed(0)
    assert env.state() in env.state_space
    while env.agents:
        for agent in env.agents:
            assert obs[agent] in env.observation_space(agent)
        actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, rewards, terminated, truncated, infos = env.step(actions)
        assert set(rewards) == set(actions) and all(isinstance(r, float) for r in rewards.values())
        assert env.state() in env.state_space
    assert all(terminated[a] or truncated[a] for a in env.possible_agents)


def test_two_step_through_pettingzoo_pays_individual_shares_of_8() -> None:
    env = AsParallelEnv(TwoStep(1))
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs["agent_0"], [1.0, 0.0, 0.0])
    obs, rewards, *_ = env.step({"agent_0": 1, "agent_1": 0})
    np.testing.assert_array_equal(obs["agent_1"], [0.0, 0.0, 1.0])  # state 2B
    assert rewards == {"agent_0": 0.0, "agent_1": 0.0} and env.agents == ["agent_0", "agent_1"]
    obs, rewards, terminated, truncated, _ = env.step({"agent_0": 1, "agent_1": 1})
    assert rewards == {"agent_0": 4.0, "agent_1": 4.0}
    assert all(terminated.values()) and not any(truncated.values()) and env.agents == []
    np.testing.assert_array_equal(obs["agent_0"], [0.0, 0.0, 1.0])  # the last obs, not the next episode's
    np.testing.assert_array_equal(env.state(), [0.0, 0.0, 1.0])


def test_foraging_infos_carry_action_mask_and_success() -> None:
    inner = Foraging(1)
    env = AsParallelEnv(inner)
    _, infos = env.reset(seed=4)
    assert env.observation_space("agent_0").shape == (14,) and env.state_space.shape == (14,)
    for i, agent in enumerate(env.possible_agents):
        np.testing.assert_array_equal(infos[agent]["action_mask"], inner._avail[0, i].numpy())
        assert infos[agent]["success"] == 0.0
    for _ in range(inner.spec.episode_limit):
        _, _, _, truncated, infos = env.step({a: 0 for a in env.agents})
    assert all(truncated.values()) and env.agents == []
    assert "action_mask" not in infos["agent_0"]  # nothing left to act on


def test_only_single_env_batches_can_be_wrapped() -> None:
    with pytest.raises(ConfigError, match="num_envs=1"):
        AsParallelEnv(Foraging(2))
