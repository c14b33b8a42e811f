"""Matrix games: exact payoffs, episode boundaries and the batch layout."""

from __future__ import annotations

import itertools

import pytest
import torch

from accord.envs.tasks.matrix import CLIMBING_PAYOFF, Climbing, MatrixGame, Penalty, TwoStep
from accord.errors import ConfigError, EnvError


def play_two_step(first: list[int], second: list[list[int]]) -> tuple[torch.Tensor, list]:
    """Run one two-step episode per env; ``first[b]`` is agent 0's step-1 action in env b."""
    env = TwoStep(len(first))
    start = env.reset()
    assert start.state.tolist() == [[1.0, 0.0, 0.0]] * len(first)
    step1 = env.step(torch.tensor([[a, 1 - a] for a in first]))  # agent 1's step-1 action is ignored
    step2 = env.step(torch.tensor(second))
    return step1.reward + step2.reward, [step1, step2]


def test_two_step_optimum_is_8_and_2a_pays_7() -> None:
    returns, (step1, step2) = play_two_step([1, 1, 0, 0, 1], [[1, 1], [0, 1], [0, 0], [1, 1], [0, 0]])
    assert returns.tolist() == [8.0, 1.0, 7.0, 7.0, 0.0]
    assert step1.reward.tolist() == [0.0] * 5 and not bool(step1.done.any()) and step1.final_state is None
    assert step1.state.tolist() == [[0, 0, 1], [0, 0, 1], [0, 1, 0], [0, 1, 0], [0, 0, 1]]  # 2B, 2A
    assert torch.equal(step1.obs["vector"], step1.state[:, None].expand(5, 2, 3))
    assert bool(step2.terminated.all()) and not bool(step2.truncated.any())
    assert torch.equal(step2.final_state, step1.state)  # the episode ended in the state it reached
    assert step2.state.tolist() == [[1.0, 0.0, 0.0]] * 5  # autoreset to state 1
    torch.testing.assert_close(step2.agent_reward, step2.reward[:, None].expand(5, 2) / 2)


def test_climbing_pays_its_table_for_every_joint_action() -> None:
    joint = list(itertools.product(range(3), repeat=2))
    env = Climbing(len(joint))
    assert env.spec.n_actions == 3 and env.spec.episode_limit == 1
    env.reset()
    step = env.step(torch.tensor(joint))
    assert step.reward.tolist() == [CLIMBING_PAYOFF[a][b] for a, b in joint]
    assert max(step.reward.tolist()) == 11.0
    torch.testing.assert_close(step.agent_reward, step.reward[:, None].expand(-1, 2) / 2)
    assert bool(step.terminated.all()) and not bool(step.truncated.any())  # a one-shot game ends


def test_penalty_pays_10_on_the_corners_and_minus_k_on_miscoordination() -> None:
    env = Penalty(4, k=50.0)
    env.reset()
    step = env.step(torch.tensor([[0, 2], [2, 0], [0, 0], [1, 1]]))
    assert step.reward.tolist() == [10.0, 10.0, -50.0, 2.0]


def test_repeated_climbing_truncates_after_25_plays_with_return_275() -> None:
    env = Climbing(2, episode_limit=25)
    step = env.reset(seed=0)
    total = torch.zeros(2)
    for t in range(25):
        step = env.step(torch.tensor([[0, 0], [1, 1]]))
        total += step.reward
        assert bool(step.truncated.all()) == (t == 24) and not bool(step.terminated.any())
        assert (step.final_state is None) == (t < 24)
    assert total.tolist() == [275.0, 175.0]
    assert step.state.tolist() == [[1.0], [1.0]] and step.obs["vector"].shape == (2, 2, 1)


def test_general_payoff_with_three_agents_indexes_agent_axes_in_order() -> None:
    payoff = torch.arange(8.0).view(2, 2, 2)  # [a0, a1, a2]
    env = MatrixGame(3, payoff=payoff)
    env.reset()
    step = env.step(torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    assert step.reward.tolist() == [4.0, 2.0, 1.0]
    assert step.agent_reward.shape == (3, 3)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("make", [TwoStep, Climbing, lambda b: Penalty(b, episode_limit=3)])
def test_shapes_and_dtypes(make, batch: int) -> None:
    env = make(batch)
    spec = env.spec
    step = env.reset()
    for _ in range(4):
        assert step.obs["vector"].shape == (batch, spec.n_agents, spec.obs_shapes["vector"][0])
        assert step.state.shape == (batch, spec.state_dim) and step.state.dtype == torch.float32
        assert step.reward.dtype == torch.float32 and step.reward.shape == (batch,)
        assert step.agent_reward.shape == (batch, spec.n_agents)
        assert step.terminated.dtype == torch.bool and step.truncated.shape == (batch,)
        assert step.avail_actions.shape == (batch, spec.n_agents, spec.n_actions)
        assert bool(step.avail_actions.all()) and bool(step.agent_mask.all())
        step = env.step(torch.zeros(batch, spec.n_agents, dtype=torch.long))


def test_invalid_actions_and_payoffs_raise() -> None:
    env = Climbing(2)
    env.reset()
    for bad in (torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 2), torch.full((2, 2), 3),
                torch.full((2, 2), -1), torch.zeros(2, 2, dtype=torch.bool)):
        with pytest.raises(EnvError):
            env.step(bad)
    with pytest.raises(EnvError):
        TwoStep(1).step(torch.tensor([[0, 2]]))
    with pytest.raises(ConfigError):
        MatrixGame(1, payoff=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # not square
    with pytest.raises(ConfigError):
        Climbing(1, episode_limit=0)
