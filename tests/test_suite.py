"""Robustness suite: perturbation wrappers, paired evaluation, the gate's exit codes, the run store, the hook."""

from __future__ import annotations

import json

import pytest
import torch

from accord import cli
from accord.envs.tasks.spread import Spread
from accord.suite import load_suite
from accord.suite.perturb import AgentFailure, DelayActions, Dropout, ObsNoise, StaleObs, wrap


def _spread(b: int = 4) -> Spread:
    return Spread(b, n_agents=2)


def test_stale_obs_lags_k_steps_and_restarts_with_the_episode():
    env = StaleObs(_spread(), severity=0.3)  # k = 2
    seen = [env.reset(seed=1).obs["vector"].clone()]
    raw = [seen[0]]
    for _ in range(4):
        env.step(torch.ones(4, 2, dtype=torch.long))
        seen.append(env.last.obs["vector"].clone())
        raw.append(env.env._observe()[0]["vector"].clone())
    assert all(torch.equal(seen[i], raw[max(0, i - 2)]) for i in range(5))
    assert not torch.equal(seen[4], raw[4])


def test_delay_actions_plays_noops_first_then_the_actions_k_steps_late():
    sent = []

    class Spy(Spread):
        def step(self, actions):
            sent.append(actions.clone())
            return super().step(actions)

    env = DelayActions(Spy(2, n_agents=2), severity=0.2)  # k = 1
    env.reset(seed=0)
    for a in (1, 2, 3):
        env.step(torch.full((2, 2), a, dtype=torch.long))
    assert [int(x[0, 0]) for x in sent] == [0, 1, 2]


def test_dropout_failure_and_noise_are_seeded_and_shape_preserving():
    full = Dropout(_spread(), severity=1.0).reset(seed=0)
    assert not full.obs["vector"].any()
    env = AgentFailure(_spread(), severity=1.0, mode="removed", agent=1)
    step = env.reset(seed=0)
    assert step.agent_mask[:, 1].logical_not().all() and step.agent_mask[:, 0].all()
    assert not step.obs["vector"][:, 1].any()
    a = ObsNoise(_spread(), 0.3, seed=5).reset(seed=0).obs["vector"]
    b = ObsNoise(_spread(), 0.3, seed=5).reset(seed=0).obs["vector"]
    clean = _spread().reset(seed=0).obs["vector"]
    assert torch.equal(a, b) and not torch.equal(a, clean) and a.shape == clean.shape
    stacked = wrap(_spread(), [("obs_noise", {}), ("action_noise", {})], 0.3, seed=1)
    stacked.reset(seed=0)
    assert stacked.step(torch.zeros(4, 2, dtype=torch.long)).obs["vector"].shape == clean.shape


def test_bad_suite_files_are_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("perturbations:\n  - kind: obs_nois\n")
    with pytest.raises(Exception, match="unknown perturbation 'obs_nois'"):
        load_suite(bad)
    bad.write_text("perturbations:\n  - kind: dropout\n    severities: [2.0]\n")
    with pytest.raises(Exception, match=r"severities must be"):
        load_suite(bad)
    assert len(load_suite("default").perturbations) >= 10


def _train_tiny(root, *extra: str) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["train", f"runs_dir={root}", "name=tiny", "task.params.n_agents=2", "task.num_envs=4",
                  "ppo.rollout_len=5", "ppo.epochs=1", "train.total_env_steps=100", "train.log_interval=20",
                  "--no-progress", "--eval-episodes", "0", *extra])
    assert e.value.code == 0


def test_suite_cli_table_store_gate_and_bad_input(tmp_path, capsys):
    root = tmp_path / "runs"
    _train_tiny(root)
    capsys.readouterr()
    suite = tmp_path / "gate.yaml"
    suite.write_text("episodes: 8\nseverities: [1.0]\nthresholds: {max_drop: 0.0}\nperturbations:\n"
                     "  - kind: dropout\n  - kind: [obs_noise, delay_actions]\n  - kind: init_shift\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["suite", "tiny", "--root", str(root), "--suite", str(suite), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert e.value.code == (0 if result["passed"] else 1)
    assert result["episodes"] == 8 and [r["perturbation"] for r in result["results"]] == [
        "dropout", "obs_noise+delay_actions", "init_shift"]
    row = result["results"][0]
    assert row["drop_ci"][0] <= row["drop"] <= row["drop_ci"][1]
    assert result["worst"]["drop"] == max(r["drop"] for r in result["results"])
    stored = list((root / "tiny" / "suites").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["worst"] == result["worst"]
    log = [json.loads(x) for x in (root / "tiny" / "suite.jsonl").read_text().splitlines()]
    assert log[0]["worst"] == result["worst"]
    # A lenient gate passes and prints the table; bad input is exit 2.
    suite.write_text("episodes: 4\nseverities: [0.1]\nthresholds: {max_drop: 100}\nperturbations:\n"
                     "  - kind: action_noise\n")
    with pytest.raises(SystemExit) as e:
        cli.main(["suite", "tiny", "--root", str(root), "--suite", str(suite)])
    out = capsys.readouterr()
    assert e.value.code == 0 and "action_noise" in out.out and "gate: passed" in out.out
    assert "suite: action_noise s=0.1" in out.err  # one progress line per case when not a terminal
    for args in (["--suite", str(tmp_path / "missing.yaml")], ["--checkpoint", "999"], ["--episodes", "1"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["suite", "tiny", "--root", str(root), *args])
        assert e.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")


def test_suite_runs_on_new_checkpoints_during_training(tmp_path):
    root = tmp_path / "runs"
    suite = tmp_path / "s.yaml"
    suite.write_text("severities: [0.3]\nperturbations:\n  - kind: action_noise\n")
    _train_tiny(root, "suite.every=1", f"suite.file={suite}", "suite.episodes=4")
    log = [json.loads(x) for x in (root / "tiny" / "suite.jsonl").read_text().splitlines()]
    assert log and log[-1]["checkpoint"].startswith("ckpt_") and log[-1]["episodes"] == 4


def test_delayed_and_stale_choices_never_send_unavailable_actions():
    from accord.envs.guard import GuardedVecEnv
    from accord.envs.tasks.foraging import Foraging
    from accord.suite.perturb import RandomTeammate

    for kinds in ([("delay_actions", {})], [("stale_obs", {}), ("dropped_steps", {})]):
        env = RandomTeammate(wrap(GuardedVecEnv(Foraging(16)), kinds, 1.0, seed=0), 1.0)
        step = env.reset(seed=0)
        gen = torch.Generator().manual_seed(0)
        for _ in range(60):  # random available actions, perturbed: the guard would refuse unavailable ones
            scores = torch.rand(step.avail_actions.shape, generator=gen).masked_fill(~step.avail_actions, -1)
            step = env.step(scores.argmax(-1))
