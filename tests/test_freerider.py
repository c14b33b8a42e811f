"""The free-rider task: exact payoffs, its documented scores, and the flags it is built to raise."""

from __future__ import annotations

import pytest
import torch

from accord.config import load_config
from accord.envs.registry import make_env
from accord.envs.tasks.freerider import FarmableFreeRider, FreeRider, random_return
from accord.errors import ConfigError
from accord.eval.contribution import contribution_report
from accord.eval.flags import HACKING, mark_lazy
from accord.loop import build_learner, seed_everything, train, train_step
from accord.store import list_runs, read_flags

FREERIDER_PPO = ["task.name=freerider", "task.num_envs=64", "ppo.rollout_len=10", "ppo.epochs=5",
                 "ppo.minibatches=2"]


def test_payoffs_rider_job_noisy_worker_cues_and_success():
    env = FreeRider(2, n_agents=3, n_cues=4, episode_limit=2, cue_noise=0.0, quota=0.5)
    step = env.reset(seed=0)
    assert step.obs["vector"].shape == (2, 3, 4) and step.state.shape == (2, 12)
    assert env.spec.agent_names == ("worker_0", "worker_1", "rider")
    cues = env.cues.clone()
    right = torch.stack([cues[:, 0] + 1, (cues[:, 1] + 1) % 4 + 1, (cues[:, 2] + 1) % 4 + 1], dim=1)
    # env 0: worker 0 right, worker 1 wrong, rider right; env 1: all idle.
    act = torch.stack([right[0], torch.zeros(3, dtype=torch.long)])
    step = env.step(act)
    torch.testing.assert_close(step.agent_reward, torch.tensor([[5.0, -5.0, 0.6], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(step.reward, step.agent_reward.sum(-1))
    assert not bool(step.done.any())
    step = env.step(env.cues + 1)  # everyone answers the worker way: the rider is wrong
    assert step.agent_reward[:, 2].tolist() == pytest.approx([-0.2, -0.2])
    assert bool(step.truncated.all()) and env.quota == 2
    assert step.info["success"].tolist() == [1.0, 1.0]  # env 0: 2 + 2 right answers; env 1: 2


def test_workers_see_garbled_cues_and_the_rider_sees_the_truth():
    env = FreeRider(4096, cue_noise=0.5)
    env.reset(seed=1)
    seen = env.seen == env.cues  # [B, N]
    assert seen[:, :3].float().mean().item() == pytest.approx(0.625, abs=0.02)
    assert bool(seen[:, 3].all())


def test_common_random_numbers_the_cues_do_not_depend_on_actions():
    a, b = FreeRider(8), FreeRider(8)
    a.reset(seed=5), b.reset(seed=5)
    for _ in range(12):
        a.step(torch.zeros(8, 4, dtype=torch.long))
        b.step(torch.randint(5, (8, 4)))
        assert torch.equal(a.cues, b.cues) and torch.equal(a.seen, b.seen)


def test_documented_scores_random_and_optimum():
    ret, success = random_return(episodes=4096)
    assert ret == pytest.approx(-60.0, abs=1.5) and success < 0.02
    env = FreeRider(4096)
    env.reset(seed=2)
    total = torch.zeros(4096)
    for _ in range(10):  # the optimum: workers answer what they see, the rider answers right
        shift = torch.tensor([0, 0, 0, 1])
        total += env.step(1 + (env.seen + shift) % 4).reward
    assert total.mean().item() == pytest.approx(43.5, abs=1.0)


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError, match="n_agents >= 2"):
        FreeRider(2, n_agents=1)
    with pytest.raises(ConfigError, match="cue_noise"):
        FreeRider(2, cue_noise=1.5)


def test_tinkering_pays_the_share_of_the_team_tinkering():
    env = FarmableFreeRider(1, farm_bonus=2.0)
    env.reset(seed=0)
    tinker = env.spec.n_actions - 1
    step = env.step(torch.tensor([[tinker, tinker, 0, 0]]))
    assert step.agent_reward.tolist() == [[1.0, 1.0, 0.0, 0.0]]  # 2.0 x 2/4 each


@pytest.mark.slow
def test_shared_credit_leaves_a_lazy_rider_that_the_monitor_flags():
    # Whether the rider has gone lazy by 60k steps depends on the seed: with shuffled env-step
    # minibatches (issue 11), seed 0's rider still adds 1.5 per episode and seed 1's team succeeds 58%;
    # seed 2 gives the case under test (a lazy rider, workers carrying the team).
    cfg = load_config(None, [*FREERIDER_PPO, "seed=2"])
    seed_everything(cfg.seed)
    algo, runner = build_learner(cfg, make_env(cfg.task))
    while algo.env_steps < 60_000:
        train_step(algo, runner)
    report = contribution_report(FreeRider(256), algo.policy, seed=7)
    flags = mark_lazy(report, tolerance=0.05, success_threshold=0.5)
    assert report.success_rate > 0.8  # the workers carry the team...
    assert [f["agent"] for f in flags] == ["rider"]  # ...and the rider adds nothing measurable
    assert min(a.ablation_ci[0] for a in report.agents[:3]) > 5.0


@pytest.mark.slow
def test_farming_the_shaped_bonus_raises_the_reward_hacking_flag(tmp_path):
    cfg = load_config(None, [*FREERIDER_PPO, "task.name=freerider_farm", f"runs_dir={tmp_path}",
                             "train.total_env_steps=12000", "train.log_interval=640"])
    train(cfg, progress=False)
    flags = read_flags(list_runs(tmp_path)[0].path)
    assert [f["flag"] for f in flags] == [HACKING]
    assert flags[0]["success_drop"] >= 0.1 and flags[0]["return_rise"] > 0
