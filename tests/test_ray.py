"""Runner ray on a two-node Ray cluster on this machine (ray.cluster_utils.Cluster): actors spread over
both nodes, a killed actor is replaced with a fresh seed stream, a run keeps its metric rows, and a
SIGKILLed run resumes. Ray comes with the `dev` extra (`accord[ray]`)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster
from training_process import start_training, wait_for_checkpoint

from accord.cli import run_captured
from accord.config import load_config
from accord.envs.registry import make_env
from accord.loop import build_learner
from accord.store import latest_checkpoint, load_checkpoint

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cluster():
    """A head and one more node, one CPU each; workers find accord and this folder's test tasks."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS), *([old] if old else [])])
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old


def test_actors_spread_over_two_nodes_and_a_killed_actor_is_replaced(cluster):
    cfg = load_config(None, ["task.params.n_agents=2", "task.num_envs=4", "runner.kind=ray", "runner.workers=2",
                             f"runner.address={cluster.address}", "ppo.rollout_len=10", "ppo.epochs=1"])
    env = make_env(cfg.task)
    learner, runner = build_learner(cfg, env)
    try:
        for _ in range(3):
            learner.update(runner.collect())
        assert len(runner.nodes()) == 2
        ray.kill(runner.actors[0])
        for _ in range(3):
            learner.update(runner.collect())
        assert runner.restarts == 1 and runner.incarnations == [1, 0]
        assert learner.env_steps == 6 * 2 * 2 * 10
        assert runner.metrics()["runner/restarts"] == 1
    finally:
        runner.close()
        env.close()


def test_actor_that_dies_mid_run_leaves_every_metric_row(cluster, tmp_path):
    marker = tmp_path / "died"
    code, _, err = run_captured([
        "train", "--no-progress", "--eval-episodes", "0", f"runs_dir={tmp_path}", "task.name=dying_task:DiesOnce",
        "task.params.n_agents=2", f"task.params.marker={marker}", "task.params.at=25", "task.num_envs=4",
        "runner.kind=ray", "runner.workers=2", f"runner.address={cluster.address}", "ppo.rollout_len=10",
        "ppo.epochs=1", "train.log_interval=200", "train.total_env_steps=1600", "eval.interval=0",
        "credit.monitor.contribution_episodes=0"])
    assert code == 0, err
    assert marker.exists()
    run = next(p for p in tmp_path.iterdir() if p.is_dir() and (p / "metrics.jsonl").exists())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "env_steps" in r]
    assert [r["env_steps"] for r in rows] == list(range(200, 1601, 200))
    assert rows[-1]["runner/restarts"] == 1


def test_sigkill_then_resume_on_the_cluster(cluster, tmp_path):
    root = tmp_path / "runs"
    run_args = ["task.params.n_agents=2", "task.num_envs=4", "runner.kind=ray", "runner.workers=2",
                f"runner.address={cluster.address}", "ppo.rollout_len=10", "ppo.epochs=1", "train.log_interval=200",
                "eval.interval=0", "credit.monitor.contribution_episodes=0"]
    proc = start_training(root, *run_args, "train.total_env_steps=100000000")
    run = wait_for_checkpoint(root, proc, min_steps=400, timeout_s=240)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(run / "checkpoints")
    before = load_checkpoint(ckpt)["runner"]["actor_seeds"]
    target = -(-(int(ckpt.stem.split("_")[1]) + 400) // 200) * 200  # a log point: checkpoints may fall between them
    resumed = start_training(root, "--resume", run.name, f"train.total_env_steps={target}")
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    steps = [json.loads(x)["env_steps"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(200, steps[-1] + 1, 200)) and steps[-1] >= target
    after = load_checkpoint(latest_checkpoint(run / "checkpoints"))["runner"]["actor_seeds"]
    assert after[:len(before)] == before and len(after) == len(before) + 2
