"""A killed QMIX run resumes with its replay buffer, epsilon, counters and greedy policy intact."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from training_process import start_training, wait_for_checkpoint

from accord.config import build_config
from accord.envs.registry import make_env
from accord.evaluate import evaluate_run
from accord.loop import build_learner, train
from accord.store import RunDir, latest_checkpoint, load_checkpoint

LOG_EVERY = 400  # a multiple of the 8 envs x 25 steps collected per iteration
Q_RUN = ["algorithm=q", "credit.name=qmix", "task.name=foraging",
         "task.params={grid_size: 5, n_food: 1, episode_limit: 25}", "task.num_envs=8", "q.rollout_len=25",
         "q.buffer_episodes=1000", "q.epsilon_anneal_steps=20000", f"train.log_interval={LOG_EVERY}"]


def _start(root: Path, *extra: str) -> subprocess.Popen:
    return start_training(root, *Q_RUN, *extra)


def _learner_state(run: Path) -> dict:
    return load_checkpoint(latest_checkpoint(run / "checkpoints"))["algo"]


def _epsilon(run: Path, env_steps: int) -> float:

    cfg = build_config(RunDir.open(run.parent, run.name).load_config())
    cfg.task.num_envs = 1
    learner, _ = build_learner(cfg, make_env(cfg.task))
    learner.env_steps = env_steps
    return learner.epsilon


def test_sigkill_then_resume_keeps_replay_epsilon_counters_and_policy(tmp_path):
    root = tmp_path / "runs"
    proc = _start(root, "train.total_env_steps=100000000")
    run = wait_for_checkpoint(root, proc, min_steps=3000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = _learner_state(run)
    steps, size, updates = saved["env_steps"], saved["buffer"]["size"], saved["updates"]
    assert size > 0 and updates > 0
    before = evaluate_run(run.name, root=root, episodes=64)["policy"]

    # Resume with nothing left to train: the checkpoint it writes is the resumed state itself.
    train(build_config({"runs_dir": str(root)}), resume=run.name, overrides=[f"train.total_env_steps={steps}"],
          progress=False)
    again = _learner_state(run)
    assert (again["env_steps"], again["updates"], again["buffer"]["size"]) == (steps, updates, size)
    assert evaluate_run(run.name, root=root, episodes=64)["policy"] == before  # same greedy policy

    # Resume and train on: counters, buffer and epsilon continue from where the killed run stopped.
    resumed = _start(root, "--resume", run.name, f"train.total_env_steps={steps + 2000}")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    after = _learner_state(run)
    assert after["env_steps"] >= steps + 2000 and after["updates"] > updates
    assert after["buffer"]["episodes"] > saved["buffer"]["episodes"]
    assert _epsilon(run, after["env_steps"]) < _epsilon(run, steps) < 1.0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first_resumed = next(r for r in records if r["env_steps"] > steps)
    assert first_resumed["buffer_episodes"] >= size, "the replay buffer restarted empty"
    assert first_resumed["epsilon"] <= _epsilon(run, steps), "epsilon restarted instead of continuing"
    logged = [r["env_steps"] for r in records]
    grid = [s for s in logged if s < steps + 2000]  # the last record sits at the total, off the grid
    assert grid == list(range(LOG_EVERY, grid[-1] + 1, LOG_EVERY)), "gap or duplicate in the history"
    assert logged == sorted(set(logged)) and logged[-1] >= steps + 2000
