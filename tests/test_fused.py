"""The fused runner (accord/runners/fused.py): acting and a pure task's step as one program."""

from __future__ import annotations

import copy
from dataclasses import fields

import pytest
import torch

from accord.algos.ppo import PPO
from accord.config import load_config
from accord.envs.registry import make_env
from accord.rollout import Rollout
from accord.runners import make_runner
from accord.runners.fused import FusedRunner, pure_task
from accord.runners.sync import SyncRunner

TINY = ["architecture=decentralized", "task.params.n_agents=3", "task.num_envs=4", "ppo.rollout_len=8",
        "model.hidden=16", "task.guard=false"]


def _collect(runner_kind: str, overrides: list[str], compile: bool = False) -> tuple[Rollout, dict[str, float]]:
    cfg = load_config(None, TINY + overrides)
    env = make_env(cfg.task, runner=cfg.runner)
    torch.manual_seed(0)
    learner = PPO(cfg, env.spec, torch.device("cpu"))
    torch.manual_seed(7)  # the Gumbel noise comes from the global generator: the same draws for both
    if runner_kind == "fused":
        runner: SyncRunner = FusedRunner(env, pure_task(env), learner.policy, 8, seed=3, compile=compile)
    else:
        runner = SyncRunner(env, learner.policy, 8, seed=3)
    batch = copy.deepcopy(runner.collect())
    batch = copy.deepcopy(runner.collect())  # the second: carried state across calls
    return batch, runner.stats.summary()


def _tensors(batch: Rollout) -> dict[str, torch.Tensor]:
    out = {}
    for f in fields(batch):
        x = getattr(batch, f.name)
        if isinstance(x, dict):
            out.update({f"{f.name}.{m}": v for m, v in x.items()})
        elif isinstance(x, torch.Tensor):
            out[f.name] = x
    return out


@pytest.mark.parametrize("model", [[], ["model.recurrent=true"], ["task.params.continuous=true"]])
def test_fused_steps_fill_the_batch_the_sync_runner_fills(model):
    sync, sync_stats = _collect("sync", ["task.params.episode_limit=25", *model])  # 16 steps: no episode ends
    fused, fused_stats = _collect("fused", ["task.params.episode_limit=25", *model])
    got = _tensors(fused)
    for name, x in _tensors(sync).items():
        assert torch.equal(got[name], x), name
    assert sync_stats == fused_stats == {}


def test_fused_autoreset_ends_episodes_where_the_sync_runner_does():
    # Episodes of 3 steps: the fused task draws new episodes every step, so only what does not depend
    # on those draws must agree: where episodes end, how many and how long they are.
    sync, sync_stats = _collect("sync", ["task.params.episode_limit=3"])
    fused, fused_stats = _collect("fused", ["task.params.episode_limit=3"])
    for name in ("truncated", "terminated", "starts", "last_starts"):
        assert torch.equal(getattr(fused, name), getattr(sync, name)), name
    assert bool(fused.truncated.any()) and fused_stats["episodes"] == sync_stats["episodes"]
    assert fused_stats["episode_len_mean"] == 3.0
    ended = fused.truncated
    # After an end, the next step starts a fresh episode: agents at rest inside the spawn box.
    fresh = fused.obs["vector"][1:][ended[:-1]]  # [E, N, 14]: velocity (2), position (2), ...
    assert torch.all(fresh[..., :2] == 0) and torch.all(fresh[..., 2:4].abs() <= 1)
    # The final observation of an ended episode is not the next episode's first one.
    assert not torch.equal(fused.final_obs["vector"][:-1][ended[:-1]], fresh)


def test_the_fused_runner_serves_compiled_training_on_unchecked_pure_tasks():
    def kind(overrides: list[str]) -> str:
        cfg = load_config(None, ["architecture=decentralized"] + overrides)
        env = make_env(cfg.task, runner=cfg.runner)
        return type(make_runner(env, PPO(cfg, env.spec, torch.device("cpu")), 0, cfg.train.compile)).__name__

    assert kind(["train.compile=auto", "task.guard=false"]) == "FusedRunner"
    assert kind(["train.compile=false", "task.guard=false"]) == "SyncRunner"
    assert kind(["train.compile=auto"]) == "SyncRunner"  # the guard checks each step's output
    assert kind(["train.compile=auto", "task.guard=false", "task.cost.budget.tool_calls=3"]) == "SyncRunner"
    assert kind(["train.compile=auto", "task.guard=false", "task.name=foraging"]) == "SyncRunner"  # not pure


@pytest.mark.slow  # compiles acting and the spread step as one program
def test_compiled_fused_steps_draw_the_eager_actions():
    eager, eager_stats = _collect("fused", ["task.params.episode_limit=5"])
    compiles = torch._dynamo.utils.counters["frames"]["ok"]
    fast, fast_stats = _collect("fused", ["task.params.episode_limit=5"], compile=True)
    assert torch._dynamo.utils.counters["frames"]["ok"] - compiles <= 1  # one program serves every call
    assert torch.equal(eager.actions, fast.actions) and torch.equal(eager.truncated, fast.truncated)
    got = _tensors(fast)
    for name, x in _tensors(eager).items():
        torch.testing.assert_close(got[name], x, rtol=1e-5, atol=1e-5, msg=name)
    assert eager_stats["episodes"] == fast_stats["episodes"]


def test_episode_counts_over_a_batch_equal_the_counts_step_by_step():
    from accord.runners.sync import EpisodeStats

    g = torch.Generator().manual_seed(0)
    reward = torch.rand(40, 5, generator=g)
    done = torch.rand(40, 5, generator=g) < 0.15
    done[0, 0] = done[1, 0] = done[39, 2] = True  # ends at the first step, twice in a row, at the last step
    by_batch, by_step = EpisodeStats(5, torch.device("cpu")), EpisodeStats(5, torch.device("cpu"))
    by_batch.count_steps(reward[:17], done[:17])
    by_batch.count_steps(reward[17:], done[17:])  # episodes carry over between batches
    for r, d in zip(reward, done, strict=True):
        by_step.count(r, d)
    assert by_batch.episodes == by_step.episodes == int(done.sum())
    torch.testing.assert_close(torch.tensor(list(by_batch.recent)), torch.tensor(list(by_step.recent)), equal_nan=True)
    torch.testing.assert_close(by_batch.ret, by_step.ret)
    assert torch.equal(by_batch.len, by_step.len)
