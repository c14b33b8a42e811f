"""A killed run resumes from its last checkpoint with its step counter and metric history intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from training_process import start_training, wait_for_checkpoint

from accord.store import RunIndex, latest_checkpoint, list_runs

LOG_EVERY = 400  # a multiple of the 8 envs x 10 steps collected per iteration
PPO_RUN = ["task.params.n_agents=2", "task.num_envs=8", "ppo.rollout_len=10", "ppo.epochs=1",
           f"train.log_interval={LOG_EVERY}"]


def _start(root: Path, *extra: str) -> subprocess.Popen:
    return start_training(root, *PPO_RUN, *extra)


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["env_steps"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_then_resume_continues_without_gaps_or_duplicates(tmp_path):
    root = tmp_path / "runs"
    proc = _start(root, "train.total_env_steps=100000000")
    run = wait_for_checkpoint(root, proc, min_steps=2000)
    time.sleep(0.7)  # let it log past the checkpoint, so resume must cut the history back
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt_steps = int(latest_checkpoint(run / "checkpoints").stem.split("_")[1])
    with RunIndex(root) as index:
        assert index.reconcile() == [run.name]  # the dead 'running' run now shows as interrupted

    target = ckpt_steps + 3000
    resumed = _start(root, "--resume", run.name, f"train.total_env_steps={target}")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    steps = _steps(run)
    assert steps == sorted(set(steps)), "duplicated or out-of-order log points"
    grid = [s for s in steps if s < target]
    assert grid == list(range(LOG_EVERY, grid[-1] + 1, LOG_EVERY)), "gap in the metric history"
    assert steps[-1] >= target and any(s > ckpt_steps for s in steps)
    assert f"train.total_env_steps={target}" in (run / "overrides.log").read_text()
    with RunIndex(root) as index:
        row = index.get(run.name)
    assert row["status"] == "finished" and row["env_steps"] == steps[-1]


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    root = tmp_path / "runs"
    proc = _start(root, "train.total_env_steps=100000000", "train.checkpoint_interval_s=1000")
    deadline = time.time() + 60
    while not (list_runs(root) and (list_runs(root)[0].metrics_path).exists()) and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    run = list_runs(root)[0]
    ckpt = latest_checkpoint(run.checkpoints_dir)
    assert ckpt is not None and int(ckpt.stem.split("_")[1]) >= _steps(run.path)[-1]
    with RunIndex(root) as index:
        assert index.get(run.name)["status"] == "interrupted"
