"""Evaluation as its own entry point: rebuild a policy from the run store and play episodes.

Never reads the trainer's memory: everything comes from the run's config and latest checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from accord.algos import ALGORITHMS
from accord.config import build_config
from accord.envs.base import VecEnv
from accord.envs.registry import make_env
from accord.errors import CheckpointError
from accord.models.actor_critic import Actor
from accord.store import RunDir, latest_checkpoint, load_checkpoint


def random_actions(env: VecEnv, avail: Tensor, gen: torch.Generator) -> Tensor:
    """Uniform over available actions (discrete) or over the action box (continuous)."""
    spec = env.spec
    if spec.action_kind == "discrete":
        scores = torch.rand(avail.shape, generator=gen, device=avail.device).masked_fill(~avail, -1.0)
        return scores.argmax(-1)
    u = torch.rand(env.num_envs, spec.n_agents, spec.n_actions, generator=gen, device=avail.device)
    return spec.action_low + u * (spec.action_high - spec.action_low)


@torch.no_grad()
def evaluate_policy(env: VecEnv, actor: Actor | None, episodes: int, deterministic: bool = True,
                    seed: int = 12345, hidden: int = 0) -> dict[str, float]:
    """Team return over ``episodes`` finished episodes (``actor=None`` plays uniformly at random)."""
    gen = torch.Generator(device=env.device).manual_seed(seed)
    step = env.reset(seed=seed)
    starts = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    h = torch.zeros(env.num_envs, env.spec.n_agents, hidden, device=env.device) if hidden else None
    ret = torch.zeros(env.num_envs, device=env.device)
    returns: list[float] = []
    successes: list[float] = []
    while len(returns) < episodes:
        if actor is None:
            act = random_actions(env, step.avail_actions, gen)
        else:
            obs = {m: x.unsqueeze(0) for m, x in step.obs.items()}
            params, h = actor(obs, step.avail_actions.unsqueeze(0), h, starts[None])
            act, _ = actor.sample(params[0], deterministic=deterministic)
            if env.spec.action_kind == "continuous":
                act = act.clamp(env.spec.action_low, env.spec.action_high)
        step = env.step(act)
        ret += step.reward
        done = step.done
        if bool(done.any()):
            returns += ret[done].tolist()
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


def evaluate_run(run: str | Path, root: str | Path = "runs", episodes: int = 100, deterministic: bool = True,
                 num_envs: int | None = None, seed: int = 12345) -> dict[str, dict[str, float]]:
    """Evaluate a stored run's latest checkpoint next to a random policy on the same env seeds."""
    run_dir = RunDir.open(root, run)
    cfg = build_config(run_dir.load_config())
    ckpt_path = latest_checkpoint(run_dir.checkpoints_dir)
    if ckpt_path is None:
        raise CheckpointError(f"run {run_dir.name} has no usable checkpoint in {run_dir.checkpoints_dir}")
    cfg.task.num_envs = num_envs or min(episodes, cfg.task.num_envs)
    env = make_env(cfg.task, cfg.runner.kind, cfg.runner.workers, cfg.train.device)
    try:
        algo = ALGORITHMS[cfg.algorithm](cfg, env)
        algo.load_state_dict(load_checkpoint(ckpt_path)["algo"])
        hidden = cfg.model.hidden if cfg.model.recurrent else 0
        return {"policy": evaluate_policy(env, algo.actor, episodes, deterministic, seed, hidden),
                "random": evaluate_policy(env, None, episodes, seed=seed)}
    finally:
        env.close()
