"""Start `accord train` in a child process and wait for its checkpoints (for kill/resume tests;
imported as `training_process`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from accord.store import latest_checkpoint, list_runs


def start_training(root: Path, *args: str) -> subprocess.Popen:
    """`accord train --no-progress` writing into the run store ``root``, with extra args/overrides."""
    cmd = [sys.executable, "-m", "accord.cli", "train", "--no-progress", "--eval-episodes", "0",
           f"runs_dir={root}", "train.checkpoint_interval_s=0.5", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(root: Path, proc: subprocess.Popen, min_steps: int, timeout_s: float = 120) -> Path:
    """The run folder once a checkpoint of at least ``min_steps`` env steps exists."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        runs = list_runs(root)
        ckpt = latest_checkpoint(runs[0].checkpoints_dir) if runs else None
        if ckpt is not None and int(ckpt.stem.split("_")[1]) >= min_steps:
            return runs[0].path
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")
