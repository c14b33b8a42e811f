"""Bad input through the command line: one clear error line, non-zero exit, run store intact."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
import torch

from accord import cli
from accord.envs.tasks.spread import Spread
from accord.store import RunIndex, list_runs


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "accord.cli", *args], capture_output=True, text=True, timeout=120)


def assert_one_error_line(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and pattern in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_config_typo_wrong_type_combination_and_missing_file(tmp_path):
    assert_one_error_line(run_cli("train", "configs/spread_mappo.yaml", "ppo.lrr=1"), "did you mean 'ppo.lr'")
    assert_one_error_line(run_cli("train", "configs/spread_mappo.yaml", "ppo.epochs=ten"), "ppo.epochs")
    assert_one_error_line(run_cli("train", "architecture=decentralized", "ppo.critic=centralized"),
                          "needs architecture 'ctde'")
    assert_one_error_line(run_cli("train", str(tmp_path / "missing.yaml")), "config file not found")
    assert not (tmp_path / "runs").exists()


def test_debug_flag_shows_the_traceback():
    proc = run_cli("--debug", "config", "show", "ppo.lrr=1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def _train_tiny(root, name="tiny") -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--runs-dir", str(root), f"name={name}", "task.params.n_agents=2", "task.num_envs=4",
                  "ppo.rollout_len=5", "ppo.epochs=1", "train.total_env_steps=100", "train.log_interval=20",
                  "--no-progress", "--eval-episodes", "0"])
    assert e.value.code == 0


def test_corrupt_and_foreign_checkpoints_are_refused_on_resume(tmp_path):
    root = tmp_path / "runs"
    _train_tiny(root)
    ckpt = next((root / "tiny" / "checkpoints").glob("*.pt"))
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[:-10] + bytes(10))  # flipped tail: checksum mismatch
    assert_one_error_line(run_cli("train", "--resume", "tiny", f"runs_dir={root}"), "corrupt")
    torch.save({"weights": torch.zeros(3)}, ckpt)  # another program's file
    assert_one_error_line(run_cli("train", "--resume", "tiny", f"runs_dir={root}"), "not an accord checkpoint")
    assert_one_error_line(run_cli("train", "--resume", "nope", f"runs_dir={root}"), "no run 'nope'")
    # The store is intact: the run is listed, its metrics parse, its config is unchanged.
    with RunIndex(root) as index:
        assert index.get("tiny")["status"] == "finished"
    assert all(json.loads(line) for line in (root / "tiny" / "metrics.jsonl").read_text().splitlines())


def _poison_spread(monkeypatch, field: str, after: int) -> None:
    real = Spread.step
    calls = {"n": 0}

    def step(self, actions):
        out = real(self, actions)
        calls["n"] += 1
        if calls["n"] > after:
            if field == "reward":
                out.reward[1] = float("nan")
            else:
                out.obs["vector"] = out.obs["vector"][:, :, :-1]
        return out

    monkeypatch.setattr(Spread, "step", step)


@pytest.mark.parametrize("field,pattern", [("reward", "NaN in reward at env 1"),
                                           ("obs", "obs['vector'] has shape")])
def test_bad_env_output_fails_cleanly_and_marks_the_run(tmp_path, monkeypatch, capsys, field, pattern):
    root = tmp_path / "runs"
    _poison_spread(monkeypatch, field, after=30)
    with pytest.raises(SystemExit) as e:
        cli.main(["train", f"runs_dir={root}", "task.params.n_agents=2", "task.num_envs=4", "ppo.rollout_len=5",
                  "train.total_env_steps=1000", "train.log_interval=20", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and pattern in err[-1]
    (run,) = list_runs(root)
    with RunIndex(root) as index:
        assert index.get(run.name)["status"] == "failed"
    lines = run.metrics_path.read_text().splitlines()
    assert lines and all(json.loads(line)["env_steps"] <= 20 * len(lines) for line in lines)


def test_runs_lists_and_survives_a_corrupt_index(tmp_path):
    root = tmp_path / "runs"
    _train_tiny(root, "listed")
    proc = run_cli("runs", "--runs-dir", str(root))
    assert proc.returncode == 0 and "listed" in proc.stdout and "finished" in proc.stdout
    (root / "index.sqlite").write_bytes(b"garbage" * 100)
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (root / extra).unlink(missing_ok=True)
    proc = run_cli("runs", "--root", str(root))
    assert_one_error_line(proc, "--rebuild")
    with pytest.raises(sqlite3.DatabaseError):  # nothing half-fixed behind the user's back
        sqlite3.connect(root / "index.sqlite").execute("select * from runs").fetchall()
    proc = run_cli("runs", "--root", str(root), "--rebuild")  # the old spelling of --runs-dir still works
    assert proc.returncode == 0 and "listed" in proc.stdout
