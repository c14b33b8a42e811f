"""GymmaEnv: tuple-space gymnasium envs (lbforaging, rware) through the PettingZoo batching path."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo.test import parallel_api_test

pytest.importorskip("lbforaging")

from accord.config import load_config  # noqa: E402
from accord.envs.guard import GuardedVecEnv  # noqa: E402
from accord.envs.gymma import GymmaEnv  # noqa: E402
from accord.envs.pettingzoo import PettingZooVecEnv  # noqa: E402
from accord.envs.registry import make_env  # noqa: E402
from accord.errors import ConfigError, EnvError  # noqa: E402
from accord.loop import train  # noqa: E402
from accord.runners.subproc import SubprocVecEnv  # noqa: E402

LBF = "lbforaging:Foraging-8x8-2p-2f-coop-v3"
CONFIG = Path(__file__).parents[1] / "configs" / "lbf_8x8_mappo.yaml"
lbf = functools.partial(GymmaEnv, LBF)


class Tiny(gymnasium.Env):
    """Two agents with tuple spaces; ends at step ``end`` (terminated) unless its limit of 4 comes first.

    ``broken`` returns one reward too few; ``per_agent_done`` reports a list of dones (agent 1 first).
    """

    _max_episode_steps = 4

    def __init__(self, end: int = 2, broken: bool = False, per_agent_done: bool = False) -> None:
        self.observation_space = spaces.Tuple([spaces.Box(-1, 10, (2,), np.float32)] * 2)
        self.action_space = spaces.Tuple([spaces.Discrete(3)] * 2)
        self.end, self.broken, self.per_agent_done, self.t = end, broken, per_agent_done, 0

    def _obs(self) -> tuple:
        return tuple(np.full(2, self.t + i, np.float32) for i in range(2))

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, actions):
        self.t += 1
        rewards = [1.0] if self.broken else [1.0, 2.0]
        done = [self.t >= self.end + 1, self.t >= self.end] if self.per_agent_done else self.t >= self.end
        return self._obs(), rewards, done, False, {"success": float(self.t >= self.end)}


gymnasium.register("accord-test/Tiny-v0", entry_point=Tiny)


def test_parallel_api() -> None:
    parallel_api_test(GymmaEnv(LBF), num_cycles=60)


def test_lbf_layout() -> None:
    env = GuardedVecEnv(PettingZooVecEnv([lbf] * 3))
    spec = env.spec
    assert (spec.n_agents, spec.action_kind, spec.n_actions, spec.episode_limit) == (2, "discrete", 6, 50)
    assert spec.obs_shapes == {"vector": (12,)} and spec.state_dim == 24
    s = env.reset(seed=0)
    assert s.obs["vector"].shape == (3, 2, 12) and s.avail_actions.all()
    s = env.step(torch.zeros(3, 2, dtype=torch.long))
    assert torch.equal(s.reward, s.agent_reward.sum(1))


def test_same_seed_same_episodes() -> None:
    def rollout() -> list[torch.Tensor]:
        env = PettingZooVecEnv([lbf] * 2)
        out = [env.reset(seed=5).obs["vector"]]
        gen = torch.Generator().manual_seed(0)
        for _ in range(60):  # crosses an autoreset
            out.append(env.step(torch.randint(0, 6, (2, 2), generator=gen)).obs["vector"])
        return out

    assert all(torch.equal(a, b) for a, b in zip(rollout(), rollout(), strict=True))


def test_time_limit_truncates_and_autoresets() -> None:
    env = GuardedVecEnv(PettingZooVecEnv([lbf] * 2))
    env.reset(seed=0)
    noop = torch.zeros(2, 2, dtype=torch.long)  # nobody loads: no food taken, the clock runs out
    for _ in range(49):
        assert not env.step(noop).done.any()
    s = env.step(noop)
    assert s.truncated.all() and not s.terminated.any()
    assert s.final_state is not None and s.final_obs["vector"].shape == (2, 2, 12)


def test_termination_success_and_per_agent_dones() -> None:
    env = PettingZooVecEnv([functools.partial(GymmaEnv, "accord-test/Tiny-v0", {"end": 2})])
    assert env.spec.episode_limit == 4
    env.reset(seed=0)
    act = torch.zeros(1, 2, dtype=torch.long)
    env.step(act)
    s = env.step(act)
    assert s.terminated.all() and s.info["success"].tolist() == [1.0]
    assert s.reward.tolist() == [3.0] and s.final_obs["vector"][0, :, 0].tolist() == [2.0, 3.0]
    staggered = PettingZooVecEnv([functools.partial(GymmaEnv, "accord-test/Tiny-v0", {"per_agent_done": True})])
    staggered.reset(seed=0)
    staggered.step(act)
    s = staggered.step(act)
    assert s.agent_mask.tolist() == [[True, False]] and not s.done.any()
    assert staggered.step(act).terminated.all()


class DictsOnly(GymmaEnv):
    """A GymmaEnv seen only through the ParallelEnv API: no list methods for the vec env to find."""

    def __getattribute__(self, name: str):
        if name in ("step_lists", "reset_lists") and sys._getframe(1).f_code.co_filename.endswith("pettingzoo.py"):
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.mark.parametrize("kwargs", [{"end": 2}, {"per_agent_done": True}])
def test_list_path_batches_as_the_dict_path(kwargs) -> None:
    """GymmaEnv's own lists (the fast path) give the same arrays as PettingZoo's dicts, dead agents included."""
    fast, generic = (PettingZooVecEnv([functools.partial(cls, "accord-test/Tiny-v0", kwargs)] * 2)
                     for cls in (GymmaEnv, DictsOnly))
    steps = [(fast.reset_arrays(seed=0), generic.reset_arrays(seed=0))]
    gen = np.random.default_rng(0)
    for _ in range(7):  # two episodes or more, with autoresets
        actions = gen.integers(0, 3, (2, 2))
        steps.append((fast.step_arrays(actions), generic.step_arrays(actions)))
    assert any((a["agent_mask"].sum(1) == 1).any() for a, _ in steps) == bool(kwargs.get("per_agent_done"))
    for a, b in steps:
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_plain_vectors_fill_as_entry_by_entry() -> None:
    """lbforaging's flat observations go in one copy per env; the same rows as the general path's."""
    fast, general = PettingZooVecEnv([lbf] * 2), PettingZooVecEnv([lbf] * 2)
    general._plain = False
    assert fast._plain
    steps = [(fast.reset_arrays(seed=3), general.reset_arrays(seed=3))]
    gen = np.random.default_rng(0)
    for _ in range(55):  # crosses the autoreset at the time limit
        actions = gen.integers(0, 6, (2, 2))
        steps.append((fast.step_arrays(actions), general.step_arrays(actions)))
    assert any(a["truncated"].any() for a, _ in steps)
    for a, b in steps:
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_limit_beats_env_end() -> None:
    env = PettingZooVecEnv([functools.partial(GymmaEnv, "accord-test/Tiny-v0", {"end": 9})])
    env.reset(seed=0)
    for _ in range(3):
        env.step(torch.zeros(1, 2, dtype=torch.long))
    assert env.step(torch.zeros(1, 2, dtype=torch.long)).truncated.all()


def test_bad_env_output_and_user_errors(monkeypatch) -> None:
    env = GymmaEnv("accord-test/Tiny-v0", {"broken": True})
    env.reset(seed=0)
    with pytest.raises(EnvError, match="returned 1 rewards for 2 agents"):
        env.step({"agent_0": 0, "agent_1": 0})
    with pytest.raises(ConfigError, match="not one Tuple entry per agent"):
        GymmaEnv("CartPole-v1")
    with pytest.raises(ConfigError, match="Did you mean"):
        GymmaEnv("lbforaging:Foraging-8x8-2p-2f-cop-v3")
    monkeypatch.setitem(sys.modules, "lbforaging", None)
    with pytest.raises(ConfigError, match=r"pip install 'accord\[lbf\]'"):
        GymmaEnv(LBF)
    with pytest.raises(ConfigError, match="task.params.env: required for task 'gymma'"):
        load_config(None, ["task.name=gymma"])


def test_rware() -> None:
    pytest.importorskip("rware")
    env = GuardedVecEnv(PettingZooVecEnv([functools.partial(GymmaEnv, "rware:rware-tiny-2ag-v2")] * 2))
    assert (env.spec.n_agents, env.spec.n_actions, env.spec.episode_limit) == (2, 5, 500)
    env.reset(seed=0)
    env.step(torch.ones(2, 2, dtype=torch.long))


def test_subprocess_workers_match_in_process() -> None:
    in_proc = PettingZooVecEnv([lbf] * 4)
    workers = SubprocVecEnv([lbf] * 4, workers=2)
    try:
        a, b = in_proc.reset(seed=1), workers.reset(seed=1)
        gen = torch.Generator().manual_seed(0)
        for _ in range(55):
            assert torch.equal(a.obs["vector"], b.obs["vector"]) and torch.equal(a.reward, b.reward)
            act = torch.randint(0, 6, (4, 2), generator=gen)
            a, b = in_proc.step(act), workers.step(act)
    finally:
        workers.close()


def test_registry_and_mappo_smoke_run(tmp_path) -> None:
    cfg = load_config(CONFIG, [f"runs_dir={tmp_path}", "task.num_envs=4", "ppo.rollout_len=50", "ppo.epochs=1",
                               "model.hidden=16", "train.total_env_steps=400", "train.log_interval=200"])
    assert isinstance(make_env(cfg.task), GuardedVecEnv)
    result = train(cfg, progress=False)
    assert result.status == "finished" and result.env_steps == 400
    assert result.return_mean == result.return_mean  # episodes of 50 steps finished: not NaN


def test_lbforaging_valid_actions_become_the_available_action_mask() -> None:
    cfg = load_config(None, ["task.name=gymma", f"task.params.env={LBF}", "task.params.action_masks=true",
                             "task.num_envs=3"])
    env = make_env(cfg.task)
    step = env.reset(seed=0)
    inner = env.env.envs
    for _ in range(20):
        for b, gym_env in enumerate(inner):
            lbf = gym_env.env.unwrapped
            for i, player in enumerate(lbf.players):
                valid = {int(a.value) for a in lbf._valid_actions[player]}
                assert set(torch.nonzero(step.avail_actions[b, i]).flatten().tolist()) == valid
        avail = step.avail_actions.float()
        step = env.step(torch.multinomial(avail.view(-1, avail.shape[-1]), 1).view(avail.shape[:2]))
    assert not step.avail_actions.all()  # some moves or loads are really invalid
    with pytest.raises(ConfigError, match="action_masks"):
        load_config(None, ["task.name=pettingzoo", "task.params.env=mpe2.simple_spread_v3",
                           "task.params.action_masks=true"])
