"""Training speed through the PettingZoo adapter against the same env stepped alone.

On one PettingZoo task (default: mpe2 ``simple_spread_v3``, ``configs/simple_spread_mappo.yaml``,
16 envs in this process), four figures in env steps per second, measured in the same process, the
stages alternating within each repeat:

- raw:     the ``num_envs`` ParallelEnvs stepped alone in a Python loop with uniformly random
           actions (autoreset), no accord;
- adapter: the same envs through accord's ``VecEnv`` (adapter + guard + fault layer), random actions;
- rollout: the adapter + policy inference, as the runner collects;
- train:   collect + update, as ``accord train`` runs it.

``train / raw`` is the share of the env's own speed that training keeps: the median over repeats of
each repeat's own ratio (its raw and train stages run a few seconds apart, so machine drift mostly
cancels); the time shares (from the medians of each stage) say where the rest goes (env, adapter,
inference, update). Prints one JSON line, then a table.

    python benchmarks/adapter_overhead.py
    python benchmarks/adapter_overhead.py --config configs/simple_spread_mappo.yaml --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import throughput
import torch
from throughput import CLOCKS, _rate, print_table, summarize

from accord.config import load_config
from accord.envs.registry import make_env, pettingzoo_env
from accord.evaluate import random_actions
from accord.loop import build_learner, train_step


def raw_stepper(module: str, kwargs: dict, num_envs: int, seed: int):
    """``num_envs`` raw ParallelEnvs and a function stepping all of them once with random actions."""
    envs = [pettingzoo_env(module, kwargs) for _ in range(num_envs)]
    rng = np.random.default_rng(seed)
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)
        for a in env.possible_agents:
            env.action_space(a).seed(seed + i)

    def step() -> None:
        for env in envs:
            env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
            if not env.agents:
                env.reset()

    return step


def measure(config: str, overrides: list[str], seconds: float, repeats: int) -> list[dict[str, float]]:
    cfg = load_config(config, overrides)
    params = cfg.task.params
    raw = raw_stepper(params["env"], params.get("kwargs", {}), cfg.task.num_envs, cfg.seed)
    env = make_env(cfg.task, runner=cfg.runner)
    learner, runner = build_learner(cfg, env)
    gen = torch.Generator().manual_seed(0)
    last = env.reset(seed=cfg.seed)

    def adapter() -> None:
        env.step(random_actions(env, last.avail_actions, gen))

    b, t_len = cfg.task.num_envs, learner.rollout_len
    runs = []
    for _ in range(repeats):
        runs.append({"raw": _rate(raw, b, seconds), "adapter": _rate(adapter, b, seconds),
                     "rollout": _rate(runner.collect, t_len * b, seconds),
                     "train": _rate(lambda: train_step(learner, runner), t_len * b, seconds)})
    env.close()
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/simple_spread_mappo.yaml")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="measuring time per figure per repeat")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="as in throughput.py")
    p.add_argument("overrides", nargs="*", help="config overrides a.b=c")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    throughput.clock = CLOCKS[args.clock]
    runs = measure(args.config, args.overrides, args.seconds, args.repeats)
    med, shares = summarize(runs, ("env", "adapter", "inference", "update"))
    ratios = [r["train"] / r["raw"] for r in runs]
    cfg = load_config(args.config, args.overrides)
    row = {"bench": "adapter_overhead", "config": args.config, "env": cfg.task.params.get("env"),
           "num_envs": cfg.task.num_envs, **{f"{k}_steps_per_s": round(v) for k, v in med.items()},
           "train_over_raw": round(statistics.median(ratios), 3),
           "train_over_raw_per_repeat": [round(x, 3) for x in ratios], "share": shares,
           "repeats": args.repeats, "threads": args.threads, "clock": args.clock}
    print(json.dumps(row), flush=True)
    print_table([{**row, "task": "pettingzoo"}], ("task", "num_envs"),
                ("raw_steps_per_s", "adapter_steps_per_s", "train_steps_per_s"))
    print(f"\ntrain / raw = {row['train_over_raw']:.2f}  (rollout {row['rollout_steps_per_s']:,}/s)")


if __name__ == "__main__":
    main()
