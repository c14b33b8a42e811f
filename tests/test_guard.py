"""GuardedVecEnv: valid steps pass untouched; malformed ones fail with one line naming the field."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from mpe2 import simple_spread_v3

from accord.envs.base import EnvSpec, Step
from accord.envs.guard import GuardedVecEnv
from accord.envs.pettingzoo import PettingZooVecEnv
from accord.errors import EnvError

B, N, D, A = 4, 3, 5, 2
spread = functools.partial(simple_spread_v3.parallel_env, N=3, max_cycles=25)


class FakeEnv:
    """A valid VecEnv whose steps can be corrupted by ``corrupt(step)``."""

    name = "fake"

    def __init__(self, corrupt: Callable[[Step], None] = lambda s: None) -> None:
        self.spec = EnvSpec(
            n_agents=N, obs_shapes={"vector": (D,)}, state_dim=7, action_kind="discrete", n_actions=A,
            episode_limit=10,
        )  # fmt: skip
        self.num_envs = B
        self.device = torch.device("cpu")
        self.corrupt = corrupt
        self.last: Step | None = None

    def _step(self) -> Step:
        avail = torch.ones(B, N, A, dtype=torch.bool)
        avail[:, 0, 1] = False  # agent 0 may only take action 0
        step = Step(
            obs={"vector": torch.randn(B, N, D)},
            state=torch.randn(B, 7),
            reward=torch.zeros(B),
            agent_reward=torch.zeros(B, N),
            terminated=torch.zeros(B, dtype=torch.bool),
            truncated=torch.zeros(B, dtype=torch.bool),
            agent_mask=torch.ones(B, N, dtype=torch.bool),
            avail_actions=avail,
            info={"success": torch.zeros(B)},
        )
        self.corrupt(step)
        self.last = step
        return step

    def reset(self, seed: int | None = None) -> Step:
        return self._step()

    def step(self, actions: torch.Tensor) -> Step:
        return self._step()

    def close(self) -> None:
        pass


@pytest.fixture(params=["numpy", "torch"])
def guarded(request) -> Callable[[FakeEnv], GuardedVecEnv]:
    """The guard with its value checks in numpy (CPU) or in torch (every other device)."""

    def make(inner: FakeEnv) -> GuardedVecEnv:
        env = GuardedVecEnv(inner)
        env._numpy = request.param == "numpy"
        return env

    return make


def test_valid_env_passes_unchanged() -> None:
    inner = FakeEnv()
    env = GuardedVecEnv(inner)
    assert env.spec is inner.spec and env.num_envs == B
    assert env.reset(seed=0) is inner.last
    assert env.step(torch.zeros(B, N, dtype=torch.long)) is inner.last


def test_nan_reward_names_the_field_and_env(guarded) -> None:
    env = guarded(FakeEnv(lambda s: s.reward.__setitem__(3, float("nan"))))
    with pytest.raises(EnvError, match=r"env 'fake' at reset: NaN in reward at env 3; hint"):
        env.reset()


def test_inf_in_obs_names_env_and_agent(guarded) -> None:
    env = guarded(FakeEnv(lambda s: s.obs["vector"].__setitem__((1, 2, 0), float("inf"))))
    with pytest.raises(EnvError, match=r"inf in obs\['vector'\] at env 1, agent 2"):
        env.reset()


def test_huge_finite_values_pass(guarded) -> None:
    """Values whose sum overflows float32 are finite all the same: the fast check's sum is not the verdict."""
    inner = FakeEnv(lambda s: (s.obs["vector"].fill_(3e38), s.reward.fill_(-3e38)))
    assert guarded(inner).reset() is inner.last


def test_wrong_obs_shape_names_field_and_shapes() -> None:
    def corrupt(step: Step) -> None:
        step.obs["vector"] = torch.zeros(B, N, D + 1)

    with pytest.raises(EnvError, match=r"obs\['vector'\] has shape \(4, 3, 6\), expected \(4, 3, 5\)") as e:
        GuardedVecEnv(FakeEnv(corrupt)).reset()
    assert "\n" not in str(e.value)


def test_wrong_dtype_is_reported() -> None:
    def corrupt(step: Step) -> None:
        step.terminated = step.terminated.float()

    with pytest.raises(EnvError, match="terminated has dtype torch.float32, expected torch.bool"):
        GuardedVecEnv(FakeEnv(corrupt)).reset()


def test_alive_agent_without_available_action(guarded) -> None:
    def corrupt(step: Step) -> None:
        step.avail_actions[2, 1] = False

    with pytest.raises(EnvError, match="no available action for alive agent 1 at env 2"):
        guarded(FakeEnv(corrupt)).reset()

    def corrupt_dead(step: Step) -> None:
        corrupt(step)
        step.agent_mask[2, 1] = False  # a dead agent may have none

    guarded(FakeEnv(corrupt_dead)).reset()


def test_actions_are_checked(guarded) -> None:
    env = guarded(FakeEnv())
    env.reset()
    with pytest.raises(EnvError, match=r"actions has shape \(4, 2\), expected \(4, 3\)"):
        env.step(torch.zeros(B, N - 1, dtype=torch.long))
    with pytest.raises(EnvError, match="actions has dtype torch.float32"):
        env.step(torch.zeros(B, N))
    with pytest.raises(EnvError, match="action 1 of agent 0 at env 0 is unavailable"):
        env.step(torch.ones(B, N, dtype=torch.long))
    with pytest.raises(EnvError, match="action 5 of agent 1 at env 0"):
        env.step(torch.tensor([[0, 5, 0]] * B))
    with pytest.raises(EnvError, match="action -1 of agent 2 at env 3"):
        env.step(torch.tensor([[0, 0, 0]] * (B - 1) + [[0, 1, -1]]))
    dead = GuardedVecEnv(FakeEnv(lambda s: s.agent_mask[:, 0].fill_(False)))
    dead._numpy = env._numpy
    dead.reset()
    dead.step(torch.ones(B, N, dtype=torch.long))  # a dead agent may send any action in range


def test_pettingzoo_env_passes() -> None:
    env = GuardedVecEnv(PettingZooVecEnv([spread] * 2))
    assert env.name == "simple_spread_v3"
    step, g = env.reset(seed=0), torch.Generator().manual_seed(0)
    for _ in range(30):  # crosses an autoreset
        step = env.step(
            torch.multinomial(step.avail_actions.flatten(0, 1).float(), 1, generator=g).view(2, 3)
        )


def test_an_env_without_global_state_passes(guarded) -> None:
    """state_dim 0: an empty state tensor is no float field to check (the torch path's inf-norm would fail)."""
    from dataclasses import replace

    def no_state(step: Step) -> None:
        step.state = torch.zeros(B, 0)

    inner = FakeEnv(no_state)
    inner.spec = replace(inner.spec, state_dim=0)
    env = guarded(inner)
    env.reset()
    assert env.step(torch.zeros(B, N, dtype=torch.long)) is inner.last
