"""Level-based foraging: rules, rewards, spawn, seeding and the batch layout."""

from __future__ import annotations

import pytest
import torch

from accord.envs.tasks.foraging import Foraging
from accord.errors import ConfigError, EnvError

NOOP, NORTH, SOUTH, WEST, EAST, LOAD = range(6)


def set_layout(env: Foraging, agents: list[tuple[int, int]], levels: list[int],
               food: list[tuple[int, int]]) -> torch.Tensor:
    """Put every env of the batch in one hand-made layout (all food alive); return avail [B, N, A]."""
    g = env.grid_size
    env._agent_cell[:] = torch.tensor([r * g + c for r, c in agents])
    env._agent_level[:] = torch.tensor(levels, dtype=torch.float32)
    env._food_cell[:] = torch.tensor([r * g + c for r, c in food])
    env._food_level[:] = float(sum(levels))
    env._food_alive[:] = True
    env._t.zero_()
    _, _, env._avail = env._observe()
    return env._avail


def act(*actions: int, batch: int = 1) -> torch.Tensor:
    return torch.tensor([list(actions)] * batch)


def positions(env: Foraging) -> list[tuple[int, int]]:
    g = env.grid_size
    return [(int(c) // g, int(c) % g) for c in env._agent_cell[0]]


@pytest.mark.parametrize("batch", [1, 7])
def test_shapes_dtypes_and_autoreset(batch: int) -> None:
    env = Foraging(batch, episode_limit=10)
    n, d, s = 2, env.spec.obs_shapes["vector"][0], env.spec.state_dim
    assert (d, s, env.spec.n_actions, env.spec.agent_state_dim) == (14, 14, 6, 3)
    step = env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for t in range(25):
        assert step.obs["vector"].shape == (batch, n, d) and step.obs["vector"].dtype == torch.float32
        assert step.state.shape == (batch, s) and step.state.dtype == torch.float32
        assert step.reward.shape == (batch,) and step.reward.dtype == torch.float32
        assert step.agent_reward.shape == (batch, n) and step.agent_reward.dtype == torch.float32
        for flag in (step.terminated, step.truncated):
            assert flag.shape == (batch,) and flag.dtype == torch.bool
        assert step.agent_mask.shape == (batch, n) and bool(step.agent_mask.all())
        assert step.avail_actions.shape == (batch, n, 6) and step.avail_actions.dtype == torch.bool
        assert bool(step.avail_actions[..., NOOP].all())
        assert step.info["success"].shape == (batch,)
        torch.testing.assert_close(step.agent_reward.sum(-1), step.reward)
        if bool(step.done.any()):
            assert step.final_obs["vector"].shape == (batch, n, d) and step.final_state.shape == (batch, s)
        else:
            assert step.final_obs == {} and step.final_state is None
        if t == 10:  # the time limit (random play never collects food this fast with this seed)
            assert bool(step.truncated.all())
        actions = torch.randint(0, 6, (batch, n), generator=gen)
        step = env.step(actions)


def test_scripted_pair_collects_all_food_for_team_return_one() -> None:
    env = Foraging(2)
    env.reset(seed=0)
    # Levels 1 and 2: each food has level 3, so neither agent can load it alone.
    set_layout(env, agents=[(2, 0), (0, 2)], levels=[1, 2], food=[(2, 2), (5, 5)])
    plan = [(EAST, SOUTH), (LOAD, NOOP), (LOAD, LOAD)]  # reach food (2, 2), one loads alone, then both
    plan += [(SOUTH, EAST)] * 3 + [(EAST, SOUTH)] * 3  # walk to (5, 4) and (4, 5), next to food (5, 5)
    plan += [(LOAD, LOAD)]
    team, own = torch.zeros(2), torch.zeros(2, 2)
    for i, actions in enumerate(plan):
        step = env.step(act(*actions, batch=2))
        team += step.reward
        own += step.agent_reward
        if i == 1:  # loading alone collects nothing in the coop variant
            assert float(step.reward.sum()) == 0.0 and bool(env._food_alive.all())
        if i == 2:
            torch.testing.assert_close(step.reward, torch.full((2,), 0.5))
            torch.testing.assert_close(step.agent_reward, torch.tensor([[1 / 6, 2 / 6]] * 2))
        if i < len(plan) - 1:
            assert not bool(step.done.any())
    torch.testing.assert_close(team, torch.ones(2), rtol=0, atol=1e-6)
    torch.testing.assert_close(own, torch.tensor([[1 / 3, 2 / 3]] * 2))
    assert bool(step.terminated.all()) and not bool(step.truncated.any())
    assert step.info["success"].tolist() == [1.0, 1.0]
    # Obs = own (3), then per food (dr, dc, level, alive): alive flags sit at 6 and 10. The finished
    # episode's last view has both items gone; the next episode starts with both.
    assert bool((step.final_obs["vector"][..., [6, 10]] == 0).all())
    assert bool((step.obs["vector"][..., [6, 10]] == 1).all())


def test_blocked_moves_and_load_are_unavailable_and_play_as_noop() -> None:
    env = Foraging(1)
    env.reset(seed=0)
    # Agent 0 in the corner with agent 1 to its east; agent 1 has food to its south.
    avail = set_layout(env, agents=[(0, 0), (0, 1)], levels=[1, 1], food=[(1, 1), (4, 4)])
    assert avail[0, 0].tolist() == [True, False, True, False, False, False]  # north/west wall, east agent
    assert avail[0, 1].tolist() == [True, False, False, False, True, True]  # west agent, south food
    env.step(act(WEST, SOUTH))  # both unavailable: played as noop
    assert positions(env) == [(0, 0), (0, 1)]
    env.step(act(SOUTH, EAST))
    assert positions(env) == [(1, 0), (0, 2)]
    # (1, 0) touches food (1, 1); (0, 2) only diagonally.
    assert env._avail[0, :, LOAD].tolist() == [True, False]


def test_agents_moving_into_the_same_cell_both_stay() -> None:
    env = Foraging(1)
    env.reset(seed=0)
    set_layout(env, agents=[(3, 0), (3, 2)], levels=[1, 1], food=[(6, 6), (1, 5)])
    env.step(act(EAST, WEST))
    assert positions(env) == [(3, 0), (3, 2)]
    env.step(act(EAST, NORTH))
    assert positions(env) == [(3, 1), (2, 2)]


def test_time_limit_truncates() -> None:
    env = Foraging(3, episode_limit=5)
    env.reset(seed=1)
    for t in range(5):
        step = env.step(torch.zeros(3, 2, dtype=torch.long))
        assert bool(step.truncated.all()) == (t == 4)
    assert not bool(step.terminated.any()) and step.info["success"].sum() == 0


def test_spawn_rules_hold_across_a_batch() -> None:
    g, batch = 8, 512
    env = Foraging(batch, grid_size=g, n_agents=3, n_food=3)
    env.reset(seed=3)
    food = torch.stack([env._food_cell // g, env._food_cell % g], -1)  # [B, F, 2]
    assert bool(((food >= 1) & (food <= g - 2)).all())  # never on the border
    gap = (food[:, :, None] - food[:, None]).abs()  # [B, F, F, 2]
    off_diag = ~torch.eye(3, dtype=torch.bool)
    too_close = (gap.amax(-1) <= 1) | ((gap.amin(-1) == 0) & (gap.amax(-1) <= 2))
    assert not bool((too_close & off_diag).any())
    cells = torch.cat([env._agent_cell, env._food_cell], 1)  # [B, N + F]
    assert bool((cells.sort(-1).values.diff(dim=-1) > 0).all())  # nothing shares a cell
    assert set(env._agent_level.unique().tolist()) == {1.0, 2.0}
    torch.testing.assert_close(env._food_level, env._agent_level.sum(-1, keepdim=True).expand(-1, 3))


def rollout(seed: int, steps: int = 60) -> torch.Tensor:
    env = Foraging(4, episode_limit=20)
    obs = [env.reset(seed=seed).obs["vector"]]
    gen = torch.Generator().manual_seed(5)
    for _ in range(steps):
        obs.append(env.step(torch.randint(0, 6, (4, 2), generator=gen)).obs["vector"])
    return torch.stack(obs)


def test_same_seed_same_trajectory_other_seed_differs() -> None:
    assert torch.equal(rollout(7), rollout(7))
    assert not torch.equal(rollout(7)[0], rollout(8)[0])


def test_sight_hides_far_items() -> None:
    env = Foraging(1, sight=1)
    env.reset(seed=0)
    set_layout(env, agents=[(0, 0), (7, 7)], levels=[1, 1], food=[(1, 1), (5, 5)])
    obs = env._observe()[0]["vector"][0]  # [N, D]
    near, far = obs[0, 3:7], obs[0, 7:11]
    assert near.tolist() == pytest.approx([1 / 7, 1 / 7, 0.5, 1.0])
    assert far.tolist() == [0.0] * 4 and obs[0, 11:].tolist() == [0.0] * 3  # far food, far agent


def test_invalid_input_raises() -> None:
    env = Foraging(2)
    with pytest.raises(EnvError, match="reset"):
        env.step(torch.zeros(2, 2, dtype=torch.long))
    env.reset(seed=0)
    for bad in (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2), torch.full((2, 2), 6),
                torch.full((2, 2), -1), [[0, 0], [0, 0]]):
        with pytest.raises(EnvError):
            env.step(bad)
    with pytest.raises(ConfigError):
        Foraging(1, grid_size=4, n_food=3)
