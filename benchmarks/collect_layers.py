"""Where a vector step goes inside training: each env layer, acting and the update, timed in place.

Between two steps of a Python env the CPU's caches hold the env's code and data, so accord's layers
cost several times inside a training process what they cost stepped alone in a loop (docs/speed.md).
This runs training as ``accord train`` does (collect, update, in turn) with a timer around every layer
of the env stack, the envs' own steps, the policy's acting step and the update, and reports each
one's *own* time: a layer's time minus the time of the layers inside it. Timers add about a
microsecond per call; compare runs of this script with each other, not with a run without it.

Prints one JSON line, then a table (us per vector step; the update in ms per iteration).

    python benchmarks/collect_layers.py task.name=gymma task.params.env=lbforaging:Foraging-8x8-2p-2f-coop-v3
    python benchmarks/collect_layers.py --config configs/simple_spread_mappo.yaml --iterations 20
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from accord.config import load_config
from accord.envs.registry import make_env
from accord.loop import build_learner, seed_everything


def timed(totals: Counter, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` adding its wall time to ``totals[key]``."""
    clock = time.perf_counter

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += clock() - start

    return wrapper


def env_chain(env: Any) -> list[Any]:
    """The env stack from the outside in (each layer holds the next as ``env``)."""
    chain = [env]
    while "env" in getattr(chain[-1], "__dict__", {}):
        chain.append(chain[-1].__dict__["env"])
    return chain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="a.b=c config overrides")
    p.add_argument("--config", default=None, help="a config file (default: accord's defaults)")
    p.add_argument("--iterations", type=int, default=40, help="timed collect + update iterations")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    args = p.parse_args()

    cfg = load_config(args.config, [*args.overrides, "runner.kind=sync", "train.compile=false"])
    torch.set_num_threads(cfg.train.torch_threads)
    seed_everything(cfg.seed)
    env = make_env(cfg.task, "sync", None, cfg.train.device, runner=cfg.runner)
    learner, runner = build_learner(cfg, env)
    totals: Counter = Counter()
    chain = env_chain(env)
    names = [type(layer).__name__ for layer in chain]
    for layer, name in zip(chain, names, strict=True):
        layer.step = timed(totals, name, layer.step)
    envs = getattr(chain[-1], "envs", [])  # the adapter's ParallelEnvs: their own steps
    for e in envs:
        attr = "step_lists" if hasattr(e, "step_lists") else "step"
        setattr(e, attr, timed(totals, "envs' own steps", getattr(e, attr)))
    runner._act = timed(totals, "acting", runner._act)
    collect, update = timed(totals, "collect", runner.collect), timed(totals, "update", learner.update)

    for _ in range(args.warmup):
        update(collect())
    totals.clear()
    for _ in range(args.iterations):
        update(collect())

    steps = args.iterations * cfg.ppo.rollout_len
    parts = [*names, "envs' own steps"] if envs else names  # the innermost part has nothing inside it
    own = {name: totals[name] - totals[below] for name, below in zip(parts, parts[1:], strict=False)}
    own[parts[-1]] = totals[parts[-1]]
    own["acting"] = totals["acting"]
    own["rest of collect"] = totals["collect"] - totals[names[0]] - totals["acting"]
    us = {k: round(1e6 * v / steps, 1) for k, v in own.items()}
    update_ms = round(1e3 * totals["update"] / args.iterations, 2)
    print(json.dumps({"bench": "collect_layers", "task": cfg.task.name, "num_envs": env.num_envs,
                      "iterations": args.iterations, "us_per_vector_step": us, "update_ms_per_iteration": update_ms}))
    print(f"\n{'part (own time)':24s} {'us / vector step':>16s}")
    for k, v in us.items():
        print(f"{k:24s} {v:16.1f}")
    print(f"{'update (ms / iteration)':24s} {update_ms:16.2f}")


if __name__ == "__main__":
    main()
