"""Exact games for the value-based family (methods.md section 11): known answers, fixed seeds.

- Two-step game (Rashid et al. 2018), uniform exploration (epsilon 1 throughout), gamma 0.99, through
  the whole pipeline (runner, replay, sampled minibatches). QMIX represents state 2B exactly: its
  greedy return is 8 and its tables are 2B [[0, 1], [1, 8]], state 1 [[6.93, 6.93], [7.92, 7.92]].
  VDN's least-squares additive fit of 2B is [[-1.5, 2.5], [2.5, 6.5]] (max 6.5 < 7), so it goes to 2A
  and returns 7.
- QTRAN's 3x3 one-step matrix [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]. Uniform data is fed as its
  expectation, a batch holding each joint action once: a sampled buffer's own least-squares fit is off
  the uniform one by ~0.2 (20k episodes, multinomial noise) and sampled minibatches add ~0.2 more, so
  only the expectation can be held to 0.1. VDN must land on the unique additive fit; QMIX has several
  monotone local optima (SSE 288, 315.4, 320), so it is checked for monotonicity, not for one table.
"""

from __future__ import annotations

import pytest
import torch

from accord.algos.q import QLearner
from accord.config import load_config
from accord.credit.qatten import Qatten
from accord.credit.qmix import QMIX
from accord.envs.base import EnvSpec
from accord.envs.registry import make_env
from accord.envs.tasks.matrix import MatrixGame
from accord.evaluate import evaluate_policy
from accord.loop import build_learner, seed_everything, train_step

UNIFORM = ["algorithm=q", "q.epsilon_start=1", "q.epsilon_finish=1", "model.hidden=32"]
QTRAN = [[8.0, -12.0, -12.0], [-12.0, 0.0, 0.0], [-12.0, 0.0, 0.0]]
QTRAN_VDN_FIT = [[-6.222, -4.889, -4.889], [-4.889, -3.556, -3.556], [-4.889, -3.556, -3.556]]


def joint_table(learner: QLearner, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Q_tot of every joint action ``[A, A]`` of a 2-agent game, at one observation [N, D] and state [S]."""
    n_actions = learner.policy.spec.n_actions
    with torch.no_grad():
        q, _ = learner.agent({"vector": obs[None, None]}, torch.ones(1, 1, 2, n_actions, dtype=torch.bool))
        q = q[0, 0]  # [N, A]
        joint = torch.stack(torch.meshgrid(q[0], q[1], indexing="ij"), dim=-1)  # [A, A, N]
        return learner.mixer(joint, state.expand(n_actions, n_actions, -1)).squeeze(-1)  # [A, A]


def two_step(credit: str) -> tuple[QLearner, float, dict[str, torch.Tensor]]:
    """300 rounds of 16 episodes, one 128-episode minibatch each (QMIX is exact to 0.01 from 300)."""
    cfg = load_config(None, [*UNIFORM, f"credit.name={credit}", "task.name=two_step", "task.num_envs=16",
                             "q.rollout_len=2", "q.batch_episodes=128", "q.buffer_episodes=2000",
                             "q.target_interval=20", "q.lr=3e-3"])
    seed_everything(cfg.seed)
    env = make_env(cfg.task)
    learner, runner = build_learner(cfg, env)
    for _ in range(300):
        train_step(learner, runner)
    greedy = evaluate_policy(env, learner.policy, 16)["return_mean"]
    one_hot = torch.eye(3)
    tables = {name: joint_table(learner, one_hot[i].expand(2, 3), one_hot[i])
              for i, name in enumerate(("1", "2A", "2B"))}
    return learner, greedy, tables


def test_two_step_qmix_finds_the_optimum_and_its_exact_tables():
    """Measured: return 8.0, 2B [[-0.001, 1.000], [0.999, 7.999]], 2A all 7.000 (+-0.001),
    state 1 [[6.932, 6.932], [7.914, 7.913]]."""
    _, greedy, t = two_step("qmix")
    assert greedy == 8.0
    assert torch.allclose(t["2B"], torch.tensor([[0.0, 1.0], [1.0, 8.0]]), atol=0.05), t["2B"]
    assert torch.allclose(t["1"], torch.tensor([[6.93, 6.93], [7.92, 7.92]]), atol=0.05), t["1"]
    assert torch.allclose(t["2A"], torch.full((2, 2), 7.0), atol=0.05), t["2A"]


def test_two_step_vdn_settles_on_seven():
    """Measured: return 7.0; 2B [[-1.86, 2.08], [2.36, 6.30]] (0.42 from the least-squares fit: sampled
    minibatches keep VDN's large residuals moving, entries shift by up to 0.4 between checkpoints);
    state 1 [[6.98, 7.02], [6.55, 6.59]]. The exact properties are additivity and max(2B) < 7."""
    _, greedy, t = two_step("vdn")
    assert greedy == 7.0
    b = t["2B"]
    assert abs(float(b[0, 0] + b[1, 1] - b[0, 1] - b[1, 0])) < 1e-4  # additive, so 8 is out of reach
    assert float(b.max()) < 7.0
    assert torch.allclose(b, torch.tensor([[-1.5, 2.5], [2.5, 6.5]]), atol=0.75), b
    assert t["1"][0].min() > t["1"][1].max(), "VDN should prefer going to 2A in state 1"


def qtran_learner(credit: str, updates: int) -> QLearner:
    """Full-batch updates on the 9 joint actions of the QTRAN matrix, played once each."""
    cfg = load_config(None, [*UNIFORM, f"credit.name={credit}", "task.name=climbing", "task.num_envs=9",
                             "q.batch_episodes=9", "q.buffer_episodes=9", "q.lr=3e-3"])
    seed_everything(cfg.seed)
    env = MatrixGame(9, payoff=QTRAN)
    learner, runner = build_learner(cfg, env)
    joint = torch.cartesian_prod(torch.arange(3), torch.arange(3))  # [9, N]
    learner.buffer.extend(runner.builder.add(runner.current, joint, env.step(joint)))
    batch = learner.buffer.store.time_major()  # exactly the 9 episodes
    assert sorted(map(tuple, batch.actions[0].tolist())) == sorted(map(tuple, joint.tolist()))
    for _ in range(updates):
        learner.gradient_step(batch)
    return learner


def test_qtran_matrix_vdn_converges_to_the_least_squares_additive_fit():
    """Measured: largest deviation from the fit 0.0004 after 300 full-batch updates (0.5 s)."""
    learner = qtran_learner("vdn", 300)
    table = joint_table(learner, torch.ones(2, 1), torch.ones(1))
    assert torch.allclose(table, torch.tensor(QTRAN_VDN_FIT), atol=0.1), table
    greedy = divmod(int(table.argmax()), 3)
    assert QTRAN[greedy[0]][greedy[1]] == 0.0  # the additive fit misses the 8


def assert_monotone(mixer: torch.nn.Module, n_agents: int, state_dim: int, samples: int = 4096) -> None:
    """dQ_tot/dQ_a >= 0 for every agent at random utilities and random states (wide scales)."""
    gen = torch.Generator().manual_seed(0)
    scale = torch.logspace(-1, 2, samples)[:, None]  # from 0.1 to 100
    q = (torch.randn(samples, n_agents, generator=gen) * scale).requires_grad_(True)
    state = torch.randn(samples, state_dim, generator=gen) * scale
    q_tot = mixer(q, state)  # [samples, 1]
    (grad,) = torch.autograd.grad(q_tot.sum(), q)
    assert (grad >= 0).all(), f"negative dQ_tot/dQ_a at {int((grad < 0).sum())} points"
    with torch.no_grad():  # and as finite differences: raising one utility never lowers Q_tot
        for a in range(n_agents):
            bumped = q.detach().clone()
            bumped[:, a] += torch.rand(samples, generator=gen) * scale[:, 0]
            assert (mixer(bumped, state) >= mixer(q.detach(), state) - 1e-4 * scale).all()


def test_qtran_matrix_qmix_is_monotone_and_no_better_than_the_best_monotone_fit():
    """Measured: QMIX lands in the SSE-320 basin, [[-8.03, -8.01, -8.01], [-8.01, 0.49, 0.49],
    [-8.01, 0.49, 0.49]] (SSE 321.5); the best monotone least-squares fit has SSE 288, so a lower SSE
    would mean a non-monotone Q_tot."""
    learner = qtran_learner("qmix", 300)
    table = joint_table(learner, torch.ones(2, 1), torch.ones(1))
    sse = float(((table - torch.tensor(QTRAN)) ** 2).sum())
    assert sse >= 288 - 0.5, table
    assert_monotone(learner.mixer, n_agents=2, state_dim=1)


@pytest.mark.parametrize("mixer_cls", [QMIX, Qatten])
def test_fresh_mixers_are_monotone_for_any_state(mixer_cls):
    spec = EnvSpec(n_agents=5, obs_shapes={"vector": (4,)}, state_dim=23, action_kind="discrete", n_actions=3,
                   episode_limit=5, agent_state_dim=4)
    torch.manual_seed(1)
    assert_monotone(mixer_cls(load_config(None, ["algorithm=q", "credit.name=qmix"]), spec), 5, 23)
