"""Evaluation as its own entry point: load a :class:`~accord.policy.Policy` and play episodes.

Never reads the trainer's memory and never builds a learner: the policy comes from the checkpoint
alone, the env from the run's task config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor

from accord.config import build_config
from accord.envs.base import Step, VecEnv
from accord.envs.registry import make_env
from accord.policy import Policy
from accord.progress import phase
from accord.store import RunDir


def random_actions(env: VecEnv, avail: Tensor, gen: torch.Generator) -> Tensor:
    """Uniform over available actions (discrete) or over the action box (continuous)."""
    spec = env.spec
    if spec.action_kind == "discrete":
        scores = torch.rand(avail.shape, generator=gen, device=avail.device).masked_fill(~avail, -1.0)
        return scores.argmax(-1)
    u = torch.rand(env.num_envs, spec.n_agents, spec.n_actions, generator=gen, device=avail.device)
    return spec.action_low + u * (spec.action_high - spec.action_low)


@torch.no_grad()
def evaluate_policy(env: VecEnv, policy: Policy | None, episodes: int, deterministic: bool = True,
                    seed: int = 12345, advance: Callable[[int], None] | None = None) -> dict[str, float]:
    """Team return over ``episodes`` finished episodes (``policy=None`` plays uniformly at random);
    ``advance(k)`` is told of every k episodes that finish (progress display)."""
    gen = torch.Generator(device=env.device).manual_seed(seed)
    step = env.reset(seed=seed)
    starts = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    h = None if policy is None else policy.initial_state(env.num_envs)
    ret = torch.zeros(env.num_envs, device=env.device)
    returns: list[float] = []
    successes: list[float] = []
    while len(returns) < episodes:
        if policy is None:
            act = random_actions(env, step.avail_actions, gen)
        else:
            act, _, h = policy.step_on(step, h, starts, deterministic)
            act = policy.clamp_actions(act)
        step = env.step(act)
        ret += step.reward
        done = step.done
        if bool(done.any()):
            finished = ret[done].tolist()
            if advance is not None:
                advance(min(len(finished), episodes - len(returns)))
            returns += finished
            if "success" in step.info:
                successes += step.info["success"][done].tolist()
            ret = ret.masked_fill(done, 0.0)
        starts = done
    returns = returns[:episodes]
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / max(len(returns) - 1, 1))
    out = {"return_mean": mean, "return_std": std, "episodes": float(len(returns))}
    if successes:
        out["success_rate"] = sum(successes[:episodes]) / len(successes[:episodes])
    return out


@torch.no_grad()
def first_episodes(env: VecEnv, policy: Policy, seed: int, deterministic: bool = True,
                   replace: Callable[[Tensor, Step], Tensor] | None = None,
                   observe: Callable[[Step, Tensor], None] | None = None) -> tuple[Tensor, Tensor | None]:
    """Team return ``[B]`` of the first episode each env plays after ``env.reset(seed)``, and its success
    ``[B]`` (NaN where no episode ended) when the task reports one.

    The policy's random numbers are forked and seeded from ``seed``: the same (env, seed) gives the
    same episodes, so variants (coalitions, perturbations, greedy or sampled) meet the same starts.
    ``replace(actions, step)`` may swap actions (stand-in agents); ``observe(step, running)`` sees every
    observation. An episode that never ends (a broken env) counts what it got in 4 episode limits.
    """
    dev, b = env.device, env.num_envs
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        step = env.reset(seed=seed)
        starts = torch.ones(b, dtype=torch.bool, device=dev)
        h = policy.initial_state(b)
        ret = torch.zeros(b, device=dev)
        success = torch.full((b,), float("nan"), device=dev)
        running = torch.ones(b, dtype=torch.bool, device=dev)
        reports_success = False
        for _ in range(4 * max(env.spec.episode_limit, 1) + 10):
            if observe is not None:
                observe(step, running)
            act, _, h = policy.step_on(step, h, starts, deterministic)
            act = policy.clamp_actions(act)
            step = env.step(act if replace is None else replace(act, step))
            ret += step.reward * running
            ended = step.done & running
            if "success" in step.info:
                reports_success = True
                success = torch.where(ended, step.info["success"].float().reshape(b, -1)[:, 0], success)
            running &= ~ended
            if not bool(running.any()):
                break
            starts = step.done
    return ret, (success if reports_success else None)


def evaluate_run(run: str | Path, root: str | Path = "runs", episodes: int = 100, deterministic: bool = True,
                 num_envs: int | None = None, seed: int = 12345, checkpoint: str | Path | None = None,
                 progress: bool = False) -> dict[str, dict[str, float]]:
    """Evaluate a stored run's policy (latest checkpoint by default) next to a random policy on the
    same env seeds. Only the run's task config and the checkpoint's policy are read."""
    run_dir = RunDir.open(root, run)
    cfg = build_config(run_dir.load_config())
    policy = Policy.load(run_dir.path, checkpoint, device=cfg.train.device)
    cfg.task.num_envs = num_envs or min(episodes, cfg.task.num_envs)
    env = make_env(cfg.task, cfg.runner.kind, cfg.runner.workers, cfg.train.device)
    try:
        policy.check_fits(env.spec, f"run {run_dir.name}")
    except BaseException:
        env.close()
        raise
    label = f"eval ({episodes} episodes, {'greedy' if deterministic else 'sampled'} policy and random)"
    try:
        with phase(label, 2 * episodes, "episode") if progress else nullcontext() as advance:
            return {"policy": evaluate_policy(env, policy, episodes, deterministic, seed, advance),
                    "random": evaluate_policy(env, None, episodes, seed=seed, advance=advance)}
    finally:
        env.close()
