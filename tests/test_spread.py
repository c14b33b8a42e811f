import pytest
import torch

from accord.envs.tasks.spread import Spread, assignment_actions
from accord.errors import EnvError


@pytest.mark.parametrize("b,n", [(1, 1), (7, 3)])
def test_layout_shapes_and_dtypes(b, n):
    env = Spread(b, n_agents=n)
    s = env.reset(seed=0)
    assert s.obs["vector"].shape == (b, n, 4 * n + 2) and s.obs["vector"].dtype == torch.float32
    assert s.state.shape == (b, 6 * n) and s.avail_actions.shape == (b, n, 5)
    s = env.step(torch.zeros(b, n, dtype=torch.long))
    assert s.reward.shape == (b,) and s.agent_reward.shape == (b, n)
    assert s.terminated.dtype == torch.bool and s.agent_mask.all()


def test_reward_is_minus_coverage_distance_minus_collisions():
    env = Spread(1, n_agents=2)
    env.reset(seed=0)
    env.landmarks[:] = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    env.pos[:] = torch.tensor([[[0.0, 0.5], [0.1, 0.5]]])  # 0.1 apart: colliding
    env.vel.zero_()
    s = env.step(torch.zeros(1, 2, dtype=torch.long))
    p = env.pos[0]
    cover = torch.cdist(env.landmarks[0], p).min(1).values.sum()
    assert s.reward.item() == pytest.approx(-cover.item() - 2.0, abs=1e-5)  # 2 ordered colliding pairs


def test_autoreset_after_episode_limit_keeps_final_obs():
    env = Spread(4, n_agents=2, episode_limit=3)
    env.reset(seed=1)
    act = torch.zeros(4, 2, dtype=torch.long)
    for _ in range(2):
        assert not env.step(act).truncated.any()
    s = env.step(act)
    assert s.truncated.all() and not s.terminated.any()
    assert not torch.equal(s.final_obs["vector"], s.obs["vector"])
    assert (env.t == 0).all()


def test_same_seed_same_episodes_and_different_seed_differs():
    a, b, c = Spread(3), Spread(3), Spread(3)
    assert torch.equal(a.reset(seed=5).state, b.reset(seed=5).state)
    assert not torch.equal(a.reset(seed=5).state, c.reset(seed=6).state)


def test_continuous_actions_move_agents():
    env = Spread(2, n_agents=2, continuous=True)
    env.reset(seed=0)
    before = env.pos.clone()
    env.step(torch.ones(2, 2, 2))
    assert (env.pos - before > 0).all()


def test_bad_actions_raise_env_error():
    env = Spread(2, n_agents=2)
    env.reset(seed=0)
    with pytest.raises(EnvError, match="integer actions of shape"):
        env.step(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(EnvError, match="0..4"):
        env.step(torch.full((2, 2), 9))


def test_scripted_assignment_beats_random_by_far():
    env = Spread(512, n_agents=3)
    env.reset(seed=0)
    scripted = sum(env.step(assignment_actions(env)).reward.mean().item() for _ in range(25))
    env.reset(seed=0)
    rand = sum(env.step(torch.randint(0, 5, (512, 3))).reward.mean().item() for _ in range(25))
    assert scripted > -20 and rand < -45
