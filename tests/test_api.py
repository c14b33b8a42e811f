"""``accord.train(...)`` returns what ``accord train`` prints, and the CLI is a thin layer over it."""

from __future__ import annotations

import math

import accord
from accord import cli


def test_train_returns_the_evaluation_contribution_and_flags(tmp_path, capsys):
    report = accord.train(None, ["task.params.n_agents=2", "task.num_envs=8", "ppo.rollout_len=10", "ppo.epochs=1",
                                 "train.total_env_steps=800", "credit.monitor.contribution_episodes=8"],
                          runs_dir=tmp_path, eval_episodes=16, progress=False)
    assert report.finished and report.env_steps == 800 and math.isfinite(report.train_return)
    assert report.greedy["episodes"] == report.random["episodes"] == 16
    assert report.greedy["return_mean"] != report.random["return_mean"]
    assert [a.name for a in report.contribution.agents] == ["agent_0", "agent_1"]
    assert isinstance(report.flags, list)
    policy = accord.Policy.load(report.run.path)  # what was trained is what ships
    assert policy.spec.n_agents == 2

    again = accord.train(None, ["train.total_env_steps=800"], resume=report.run.name, runs_dir=tmp_path,
                         progress=False)
    assert again.status == "already finished" and again.greedy is None

    code = None
    try:
        cli.main(["train", "--resume", report.run.name, "--runs-dir", str(tmp_path), "train.total_env_steps=1000",
                  "--eval-episodes", "16", "--no-progress"])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr().out
    assert code == 0 and "return, greedy policy (16 eval episodes)" in out and "agent_1" in out
