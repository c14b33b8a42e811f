"""SubprocVecEnv: same outputs as in-process, and survives (a bounded number of) worker crashes."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from mpe2 import simple_spread_v3

from accord.envs.base import Step
from accord.envs.pettingzoo import PettingZooVecEnv
from accord.errors import ConfigError, EnvError
from accord.runners.subproc import SubprocVecEnv


def make_spread():
    """Module-level, so workers can unpickle it."""
    return simple_spread_v3.parallel_env(N=3, max_cycles=25)


class _SlowSpread:
    """simple_spread whose steps hang, to exercise the step timeout."""

    def __init__(self) -> None:
        self.env = make_spread()

    def __getattr__(self, name: str):
        return getattr(self.env, name)

    def step(self, actions):
        time.sleep(30)


def make_slow_spread():
    return _SlowSpread()


def make_broken():
    raise RuntimeError("boom")


def make_misconfigured():
    raise ConfigError("bad kwargs")


def assert_same(a: Step, b: Step) -> None:
    for name in ("state", "reward", "agent_reward", "terminated", "truncated", "agent_mask", "avail_actions"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.obs.keys() == b.obs.keys() and all(torch.equal(a.obs[k], b.obs[k]) for k in a.obs)
    assert a.final_obs.keys() == b.final_obs.keys()
    assert all(torch.equal(a.final_obs[k], b.final_obs[k]) for k in a.final_obs)
    assert (a.final_state is None) == (b.final_state is None)
    assert a.final_state is None or torch.equal(a.final_state, b.final_state)
    assert a.info.keys() == b.info.keys() and all(torch.equal(a.info[k], b.info[k]) for k in a.info)


def test_matches_in_process_env() -> None:
    local = PettingZooVecEnv([make_spread] * 4)
    remote = SubprocVecEnv([make_spread] * 4, workers=2)
    try:
        assert remote.spec == local.spec and remote.num_envs == 4 and len(remote.worker_pids) == 2
        assert_same(local.reset(seed=3), remote.reset(seed=3))
        g = torch.Generator().manual_seed(0)
        dones = 0
        for _ in range(60):
            actions = torch.randint(0, 5, (4, 3), generator=g)
            a, b = local.step(actions), remote.step(actions)
            assert_same(a, b)
            dones += int(a.done.sum())
        assert dones == 8  # two autoresets per env
    finally:
        remote.close()


def test_killed_worker_is_restarted_then_gives_up() -> None:
    env = SubprocVecEnv([make_spread] * 4, workers=2, max_restarts=1)
    try:
        env.reset(seed=0)
        actions = torch.zeros(4, 3, dtype=torch.long)
        env.step(actions)
        old_pid = env.worker_pids[1]
        os.kill(old_pid, signal.SIGKILL)
        step = env.step(actions)
        assert env.restarts == 1 and env.worker_pids[1] != old_pid
        assert step.truncated.tolist() == [False, False, True, True] and not step.terminated.any()
        assert step.info["worker_restart"].tolist() == [0, 0, 1, 1]
        assert step.final_state is not None and step.agent_mask.all()
        for _ in range(3):
            step = env.step(actions)
            assert not step.done.any() and "worker_restart" not in step.info
        os.kill(env.worker_pids[0], signal.SIGKILL)
        with pytest.raises(EnvError, match=r"worker 0 \(envs 0-1\) died with exit code -9 .*max_restarts=1"):
            env.step(actions)
    finally:
        env.close()


def test_hung_worker_times_out_and_is_restarted() -> None:
    env = SubprocVecEnv([make_spread, make_slow_spread], workers=2, step_timeout_s=0.5)
    try:
        env.reset(seed=0)
        step = env.step(torch.zeros(2, 3, dtype=torch.long))
        assert env.restarts == 1 and step.truncated.tolist() == [False, True]
    finally:
        env.close()


def test_unpicklable_factory_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="picklable"):
        SubprocVecEnv([lambda: make_spread()], workers=1)


def test_worker_errors_are_reported() -> None:
    with pytest.raises(EnvError, match=r"worker 0 \(envs 0-0\) raised RuntimeError: boom"):
        SubprocVecEnv([make_broken], workers=1)
    with pytest.raises(ConfigError, match="bad kwargs"):  # user errors keep their type
        SubprocVecEnv([make_misconfigured], workers=1)
