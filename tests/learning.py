"""Train any registered algorithm in-process and evaluate it greedily against a random policy
(for the learning tests; imported as `learning`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from accord.config import load_config
from accord.envs.registry import make_env
from accord.evaluate import evaluate_policy
from accord.loop import build_learner, seed_everything, train_step


def train_and_evaluate(config: str | None, overrides: list[str], steps: int, episodes: int = 256
                       ) -> tuple[float, float]:
    """(greedy return of the trained policy, return of a random policy) on the same env seeds."""
    cfg = load_config(config, overrides)
    seed_everything(cfg.seed)
    env = make_env(cfg.task)
    algo, runner = build_learner(cfg, env)
    while algo.env_steps < steps:
        train_step(algo, runner)
    learned = evaluate_policy(env, algo.policy, episodes)["return_mean"]
    rand = evaluate_policy(env, None, episodes)["return_mean"]
    env.close()
    return learned, rand
