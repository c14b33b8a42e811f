"""The fault layer: retries, hangs, restarts, quarantine and non-finite updates are survived and
counted, or fail with one clear line."""

from __future__ import annotations

import json

import pytest
import torch

from accord import cli
from accord.algos.ppo import PPO
from accord.config import load_config
from accord.envs.parallel_env import AsParallelEnv
from accord.envs.pettingzoo import PettingZooVecEnv
from accord.envs.registry import make_env
from accord.envs.resilient import ResilientVecEnv
from accord.envs.tasks.spread import Spread
from accord.errors import EnvError
from accord.nonfinite import NonFiniteGuard
from accord.store import RunIndex, list_runs

TINY = ["task.name=faulty", "task.params.n_agents=2", "task.num_envs=4", "ppo.rollout_len=5", "ppo.epochs=1",
        "train.log_interval=100", "credit.monitor.contribution_episodes=0", "--no-progress", "--eval-episodes", "0"]


def _train(root, *extra: str) -> int:
    with pytest.raises(SystemExit) as e:
        cli.main(["train", f"runs_dir={root}", *TINY, *extra])
    return e.value.code


def _records(root) -> list[dict]:
    (run,) = list_runs(root)
    return [json.loads(x) for x in run.metrics_path.read_text().splitlines()]


def test_raises_and_hangs_are_retried_restarted_and_counted(tmp_path):
    code = _train(tmp_path / "runs", "train.total_env_steps=600", "task.params.raise_prob=0.05",
                  "task.params.hang_prob=0.04", "task.params.hang_s=0.3", "runner.step_timeout_s=0.05",
                  "runner.retries=2", "runner.backoff_s=0.001", "runner.max_restarts=50")
    assert code == 0
    last = _records(tmp_path / "runs")[-1]
    assert last["env_steps"] >= 600 and last["env_retries"] > 0 and last["env_timeouts"] > 0
    assert last["env_restarts"] >= last["env_timeouts"]


def test_an_env_that_keeps_raising_fails_with_one_line_and_marks_the_run(tmp_path, capsys):
    root = tmp_path / "runs"
    code = _train(root, "train.total_env_steps=1000", "task.params.raise_prob=1", "task.params.hang_prob=0",
                  "runner.max_restarts=2")
    assert code == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert err[-1].startswith("error: env 'faulty-spread' at ") and "InjectedFault" in err[-1]
    assert "giving up after 2 restarts" in err[-1] and not any("Traceback" in x for x in err)
    (run,) = list_runs(root)
    with RunIndex(root) as index:
        assert index.get(run.name)["status"] == "failed"


def test_nonfinite_updates_are_rolled_back_counted_and_fail_when_persistent(tmp_path, capsys):
    code = _train(tmp_path / "a", "train.total_env_steps=400", "task.guard=false", "task.params.raise_prob=0",
                  "task.params.hang_prob=0", "task.params.nan_steps=[7, 23]")
    assert code == 0
    last = _records(tmp_path / "a")[-1]
    assert last["nonfinite_updates"] == 2 and last["lr_scale"] == 0.25
    assert all(v is None or v == v for v in last.values())  # training went on with finite numbers
    code = _train(tmp_path / "b", "train.total_env_steps=400", "task.guard=false", "task.params.raise_prob=0",
                  "task.params.hang_prob=0", "task.params.nan_prob=1", "train.max_nonfinite=3")
    assert code == 2
    assert "in 3 updates in a row" in capsys.readouterr().err.strip().splitlines()[-1]


class _Flaky(AsParallelEnv):
    def step(self, actions):
        raise RuntimeError("sensor bus error")


def _spread_env():
    return AsParallelEnv(Spread(1, n_agents=2))


def _flaky_env():
    return _Flaky(Spread(1, n_agents=2))


def test_a_failing_env_copy_is_quarantined_and_the_others_go_on():
    env = PettingZooVecEnv([_spread_env, _flaky_env, _spread_env], episode_limit=25,
                           faults={"retries": 1, "backoff_s": 0.0, "quarantine_after": 2})
    env.reset(seed=0)
    steps = [env.step(torch.zeros(3, 2, dtype=torch.long)) for _ in range(30)]
    q = steps[-1].info["quarantined"]
    assert q.tolist() == [0.0, 1.0, 0.0]
    assert not steps[-1].agent_mask[1].any() and steps[-1].agent_mask[[0, 2]].all()
    assert sum(int(s.info["env_fault"][1]) for s in steps if "env_fault" in s.info) == 4  # 2 x (1 try + 1 retry)
    assert "env_fault" not in steps[-1].info  # only on steps where some call failed
    clean = PettingZooVecEnv([_spread_env], episode_limit=25, faults={"retries": 1})
    clean.reset(seed=0)
    assert not {"quarantined", "env_fault"} & set(clean.step(torch.zeros(1, 2, dtype=torch.long)).info)
    assert sum(bool(s.truncated[1]) for s in steps[3:]) >= 1  # placeholder episodes end at the limit
    with pytest.raises(EnvError, match="every env copy is quarantined"):
        solo = ResilientVecEnv(lambda: PettingZooVecEnv([_flaky_env], episode_limit=25,
                                                        faults={"quarantine_after": 1}))
        solo.reset(seed=0)
        solo.step(torch.zeros(1, 2, dtype=torch.long))


def test_without_a_runner_config_an_env_error_names_the_env_and_step():
    class Broken(Spread):
        def step(self, actions):
            raise ValueError("boom")

    env = ResilientVecEnv(lambda: Broken(2, n_agents=2), max_restarts=0)
    env.reset(seed=0)
    with pytest.raises(EnvError, match=r"env 'Broken' at step 1 raised ValueError: boom"):
        env.step(torch.zeros(2, 2, dtype=torch.long))


def test_quarantine_works_inside_subprocess_workers():
    from accord.runners.subproc import SubprocVecEnv

    env = SubprocVecEnv([_spread_env, _flaky_env], workers=2, episode_limit=25,
                        faults={"retries": 0, "quarantine_after": 1})
    try:
        env.reset(seed=0)
        step = env.step(torch.zeros(2, 2, dtype=torch.long))
        step = env.step(torch.zeros(2, 2, dtype=torch.long))
        assert step.info["quarantined"].tolist() == [0.0, 1.0] and step.agent_mask[0].all()
        assert env.restarts == 0  # the worker lives on; only its env copy is out
    finally:
        env.close()


class _TinyLearner:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Linear(3, 2)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=0.1)

    def step(self) -> None:
        self.opt.zero_grad()
        self.net(torch.ones(4, 3)).pow(2).sum().backward()
        self.opt.step()


def test_nonfinite_guard_restores_the_last_good_weights_and_optimizer_state_exactly():
    """The snapshot is refreshed in place after good updates (accord/nonfinite.py); a bad update brings
    back exactly the weights and Adam moments of the last good one, and finite but huge weights (whose
    sums overflow) are not mistaken for NaN/inf."""
    learner = _TinyLearner()
    guard = NonFiniteGuard(learner, max_in_row=3)
    for _ in range(2):  # the first good update changes the optimizer state's shape (Adam's moments appear)
        learner.step()
        guard.check({"loss": 1.0}, env_steps=0)
    good = {k: v.clone() for k, v in learner.net.state_dict().items()}
    moments = [s["exp_avg"].clone() for s in learner.opt.state.values()]
    learner.step()
    with torch.no_grad():
        learner.net.weight[0, 0] = float("nan")
    out = guard.check({"loss": 1.0}, env_steps=0)
    assert out["update_skipped"] == 1 and out["lr_scale"] == 0.5 and learner.opt.param_groups[0]["lr"] == 0.05
    for k, v in learner.net.state_dict().items():
        torch.testing.assert_close(v, good[k], rtol=0, atol=0)
    for s, m in zip(learner.opt.state.values(), moments, strict=True):
        torch.testing.assert_close(s["exp_avg"], m, rtol=0, atol=0)
    with torch.no_grad():
        learner.net.weight.fill_(3e38)  # finite; every sum of it overflows to inf
    assert "update_skipped" not in guard.check({"loss": 1.0}, env_steps=0)


def test_nonfinite_guard_holds_each_of_a_learners_weights_once():
    """A PPO learner holds its actor three ways (the policy, the actor, the compiled step's module): the
    guard snapshots and checks every weight, each once."""
    cfg = load_config(None, ["architecture=decentralized", "task.params.n_agents=2", "task.num_envs=2",
                             "train.compile=true"])  # nothing is compiled before the first update
    learner = PPO(cfg, make_env(cfg.task).spec, torch.device("cpu"))
    assert learner._nets.actor is learner.policy.actor is learner.actor
    guard = NonFiniteGuard(learner, max_in_row=3)
    held = [id(t) for m in guard.modules for t in m.state_dict(keep_vars=True).values()]
    assert len(held) == len(set(held))
    assert {id(p) for net in (learner.actor, learner.critic) for p in net.parameters()} <= set(held)
