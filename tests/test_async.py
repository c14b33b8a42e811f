"""Decoupled actors and learner (runner async): V-trace, the slow-env wrapper, lag, restarts, resume,
and the bad inputs that must fail in one line."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from training_process import start_training, wait_for_checkpoint

from accord.cli import run_captured
from accord.config import load_config
from accord.credit.base import CreditContext
from accord.credit.gae import gae
from accord.credit.shared import Shared
from accord.credit.vtrace import truncated_ratios
from accord.envs.registry import make_env
from accord.errors import ConfigError
from accord.rollout import Rollout
from accord.runners.actor import actor_seed
from accord.store import latest_checkpoint, load_checkpoint

T, B, N = 12, 5, 3
LOG_EVERY = 200
ASYNC_RUN = ["task.params.n_agents=2", "task.num_envs=4", "runner.kind=async", "runner.workers=2",
             "ppo.rollout_len=10", "ppo.epochs=1", f"train.log_interval={LOG_EVERY}", "eval.interval=0",
             "credit.monitor.contribution_episodes=0"]


def _episode_data(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(T, B, generator=g) < 0.1
    truncated = (torch.rand(T, B, generator=g) < 0.1) & ~terminated
    return {"rewards": torch.randn(T, B, N, generator=g), "values": torch.randn(T, B, N, generator=g),
            "next_values": torch.randn(T, B, N, generator=g), "terminated": terminated,
            "done": terminated | truncated}


# -- V-trace ------------------------------------------------------------------------------------

def test_vtrace_with_zero_lag_is_exactly_gae_and_lambda_returns():
    d = _episode_data()
    logp = torch.randn(T, B, N)
    rho, c = truncated_ratios(logp, logp.clone(), rho_bar=1.0, c_bar=1.0)  # pi = mu: no lag
    for lam in (0.95, 1.0, 0.0):
        on_policy = gae(**d, gamma=0.99, lam=lam)
        corrected = gae(**d, gamma=0.99, lam=lam, rho=rho, c=c)
        assert torch.equal(corrected, on_policy)  # advantages; targets v_s = A + V are the lambda-returns
        assert torch.equal(corrected + d["values"], on_policy + d["values"])


def test_credit_module_with_zero_lag_gives_the_sync_signals_exactly():
    cfg = load_config(None, ["task.params.n_agents=3"])
    spec = make_env(cfg.task).spec
    batch = Rollout.allocate(spec, T, B, torch.device("cpu"))
    d = _episode_data(1)
    batch.reward, batch.terminated = d["rewards"][..., 0], d["terminated"]
    batch.truncated = d["done"] & ~d["terminated"]
    batch.agent_mask[:] = True
    credit = Shared(cfg, spec)
    ones = torch.ones(T, B, N)
    plain = credit.advantages(batch, CreditContext(d["values"], d["next_values"], batch.next_state, None))
    lagged = credit.advantages(batch, CreditContext(d["values"], d["next_values"], batch.next_state, None,
                                                    ones, ones))
    assert torch.equal(plain.advantages, lagged.advantages) and torch.equal(plain.returns, lagged.returns)


def test_vtrace_matches_the_papers_sum_with_truncated_ratios():
    """v_s = V(x_s) + sum_t gamma^(t-s) (prod_{i<t} c_i) rho_t delta_t (IMPALA Eq. 1, lambda = 1), one
    episode without ends, a naive double loop against the backward recursion."""
    g = torch.Generator().manual_seed(2)
    r, v, v_next = (torch.randn(T, 1, 1, generator=g) for _ in range(3))
    v_next[:-1] = v[1:]
    ratio = torch.rand(T, 1, 1, generator=g) * 2
    rho, c = truncated_ratios(ratio.log(), torch.zeros_like(ratio), rho_bar=1.0, c_bar=0.9)
    no_end = torch.zeros(T, 1, dtype=torch.bool)
    fast = gae(r, v, v_next, no_end, no_end, 0.95, 1.0, rho, c) + v
    for s in range(T):
        total, trace = v[s].clone(), 1.0
        for t in range(s, T):
            delta = r[t] + 0.95 * v_next[t] - v[t]
            total += 0.95 ** (t - s) * trace * rho[t] * delta
            trace = trace * c[t]
        assert torch.allclose(fast[s], total, atol=1e-5)
    assert float(rho.max()) <= 1.0 and float(c.max()) <= 0.9


# -- the slow env ----------------------------------------------------------------------------------

def test_latency_sleeps_per_env_with_jitter_and_leaves_the_training_rng_alone():
    cfg = load_config(None, ["task.num_envs=4", "task.latency_ms=5", "task.jitter_ms=2"])
    env = make_env(cfg.task)
    env.reset(seed=0)
    torch.manual_seed(0)
    before = torch.rand(1)
    start = time.perf_counter()
    for _ in range(5):
        env.step(torch.zeros(4, 3, dtype=torch.long))
    took = time.perf_counter() - start
    assert took >= 5 * 4 * 0.003  # at least latency - jitter per env and step
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), before)
    with pytest.raises(ConfigError, match="task.jitter_ms"):
        load_config(None, ["task.latency_ms=1", "task.jitter_ms=2"])


# -- runner async -----------------------------------------------------------------------------------

def _steps(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_killed_actor_is_restarted_with_a_fresh_seed_and_no_metric_row_is_lost(tmp_path):
    marker = tmp_path / "died"
    code, out, err = run_captured(["train", "--no-progress", "--eval-episodes", "0", f"runs_dir={tmp_path}",
                                   *ASYNC_RUN, "task.name=dying_task:DiesOnce", f"task.params.marker={marker}",
                                   "task.params.at=25", "train.total_env_steps=2000"])
    assert code == 0, err
    assert marker.exists()  # an actor process SIGKILLed itself
    run = next(p for p in tmp_path.iterdir() if p.is_dir() and (p / "metrics.jsonl").exists())
    rows = [r for r in _steps(run) if "env_steps" in r]
    assert [r["env_steps"] for r in rows] == list(range(LOG_EVERY, 2001, LOG_EVERY))
    assert rows[-1]["runner/restarts"] == 1
    assert all(r["runner/lag_max"] <= 8 for r in rows if "runner/lag_max" in r)
    ckpt = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    seeds = ckpt["runner"]["actor_seeds"]  # every start recorded; the restart got the next stream
    assert len(seeds) == 3 and len({s for _, _, s in seeds}) == 3
    dead = next(w for w, i, _ in seeds if i == 1)
    assert [dead, 1, actor_seed(0, dead, 1)] in seeds


def test_sigkill_then_resume_continues_the_metric_history_and_takes_new_actor_seeds(tmp_path):
    root = tmp_path / "runs"
    proc = start_training(root, *ASYNC_RUN, "train.total_env_steps=100000000")
    run = wait_for_checkpoint(root, proc, min_steps=400, timeout_s=180)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt_path = latest_checkpoint(run / "checkpoints")
    ckpt_steps = int(ckpt_path.stem.split("_")[1])
    before = load_checkpoint(ckpt_path)["runner"]["actor_seeds"]
    target = -(-(ckpt_steps + 400) // LOG_EVERY) * LOG_EVERY  # a log point: checkpoints may fall between them
    resumed = start_training(root, "--resume", run.name, f"train.total_env_steps={target}")
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    steps = [r["env_steps"] for r in _steps(run) if "env_steps" in r]
    assert steps == sorted(set(steps)), "duplicated or out-of-order log points"
    assert steps == list(range(LOG_EVERY, steps[-1] + 1, LOG_EVERY)) and steps[-1] >= target
    after = load_checkpoint(latest_checkpoint(run / "checkpoints"))["runner"]["actor_seeds"]
    assert after[:len(before)] == before
    assert not {s for _, _, s in after[len(before):]} & {s for _, _, s in before}  # never a rewound stream


# -- bad input: one line, exit 2 ---------------------------------------------------------------------

def _fails(*overrides: str) -> str:
    code, _, err = run_captured(["train", "--no-progress", *overrides])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_bad_inputs_fail_in_one_line(tmp_path, monkeypatch):
    assert "runner.max_lag" in _fails("runner.kind=async", "runner.max_lag=-1")
    line = _fails("runner.kind=async", "credit.name=counterfactual")
    assert "cannot correct policy lag" in line and "shared" in line
    assert "model.critic_recurrent" in _fails("runner.kind=async", "model.critic_recurrent=true")
    assert "runner.kind=sync only" in _fails("task.name=keydoor", "architecture=hierarchical", "runner.kind=async")
    assert "runner.address" in _fails(f"runs_dir={tmp_path}", "runner.kind=ray", "runner.address=127.0.0.1:9",
                                      "task.num_envs=2")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert "pip install 'accord[ray]'" in _fails("runner.kind=ray")
