"""The actor's acting step in numpy (accord/models/numpy_actor.py) against torch's, alone and in place.

- **alone**: ``Policy.step`` on random observations, in a loop, at several batch sizes (envs x agents
  = rows), torch and numpy alternating; us a step. Where numpy stops winning is ``MAX_ROWS``.
- **in place**: training as ``accord train`` runs it (collect, update, in turn), the collects
  alternating between the two acting paths on one policy; us a vector step of collection. This is
  the figure that counts: inside training, with the env's code and data in the CPU's caches, a torch
  op costs more than alone.

Prints one JSON line, then a table.

    python benchmarks/acting.py                           # the default config, alone and in place
    python benchmarks/acting.py task.name=gymma task.params.env=lbforaging:Foraging-8x8-2p-2f-coop-v3 \\
        model.recurrent=true model.hidden=128 --iterations 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from accord.config import load_config
from accord.envs.registry import make_env
from accord.loop import build_learner, seed_everything
from accord.policy import Policy


def alone(policy: Policy, rows: int, repeats: int) -> dict[str, float]:
    """us a ``Policy.step`` over ``rows`` agents' rows (as many envs as fit), each path's median."""
    spec, fast = policy.spec, policy._numpy
    b = max(1, rows // spec.n_agents)
    obs = {"vector": torch.randn(b, spec.n_agents, *spec.obs_shapes["vector"])}
    avail = torch.ones(b, spec.n_agents, spec.avail_dim, dtype=torch.bool)
    h, starts = policy.initial_state(b), torch.zeros(b, dtype=torch.bool)
    times: dict[str, list[float]] = {"torch": [], "numpy": []}
    n = max(5, 20_000 // (b * spec.n_agents))  # calls per timing
    with torch.inference_mode():
        for _ in range(repeats):
            for path in times:
                policy._numpy = fast if path == "numpy" else None
                start = time.perf_counter()
                for _ in range(n):
                    policy.step(obs, avail, h, starts)
                times[path].append((time.perf_counter() - start) / n * 1e6)
    policy._numpy = fast
    return {path: statistics.median(t) for path, t in times.items()}


def in_place(learner: object, runner: object, iterations: int, warmup: int) -> dict[str, float]:
    """us a vector step of collection, each path's median over ``iterations`` collects."""
    policy, fast = learner.policy, learner.policy._numpy
    for _ in range(warmup):
        learner.update(runner.collect())
    times: dict[str, list[float]] = {"torch": [], "numpy": []}
    for _ in range(iterations):
        for path in times:
            policy._numpy = fast if path == "numpy" else None
            start = time.perf_counter()
            batch = runner.collect()
            times[path].append((time.perf_counter() - start) / runner.t_len * 1e6)
            learner.update(batch)
    policy._numpy = fast
    return {path: statistics.median(t) for path, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="a.b=c config overrides")
    p.add_argument("--config", default=None, help="a config file (default: accord's defaults)")
    p.add_argument("--rows", default="20,64,256,512,1024,4096", help="alone: envs x agents per step")
    p.add_argument("--repeats", type=int, default=7, help="alone: timings per path and size")
    p.add_argument("--iterations", type=int, default=30, help="in place: collects per path")
    p.add_argument("--warmup", type=int, default=4, help="in place: untimed iterations first")
    args = p.parse_args()

    cfg = load_config(args.config, [*args.overrides, "runs_dir=/tmp/accord_bench_runs"])
    torch.set_num_threads(cfg.train.torch_threads)
    seed_everything(cfg.seed)
    env = make_env(cfg.task, cfg.runner.kind, None, "cpu", runner=cfg.runner)
    learner, runner = build_learner(cfg, env)
    if learner.policy._numpy is None:
        raise SystemExit("this config's actor acts through torch only (see accord/models/numpy_actor.py)")
    sizes = [int(r) for r in args.rows.split(",") if r]
    by_rows = {rows: alone(learner.policy, rows, args.repeats) for rows in sizes}
    place = in_place(learner, runner, args.iterations, args.warmup)
    rows_here = env.num_envs * env.spec.n_agents
    print(json.dumps({"benchmark": "acting", "task": cfg.task.name, "hidden": cfg.model.hidden,
                      "recurrent": cfg.model.recurrent,
                      "alone_us": {str(r): {k: round(v, 1) for k, v in t.items()} for r, t in by_rows.items()},
                      "in_place_rows": rows_here,
                      "in_place_us_per_vector_step": {k: round(v, 1) for k, v in place.items()},
                      "in_place_ratio": round(place["numpy"] / place["torch"], 4)}))
    print(f"\nacting step alone (us), {cfg.model.layers} x {cfg.model.hidden} units"
          f"{' + GRU' if cfg.model.recurrent else ''}")
    print(f"{'rows':>6} {'torch':>9} {'numpy':>9} {'numpy/torch':>12}")
    for rows, t in by_rows.items():
        print(f"{rows:>6} {t['torch']:>9.1f} {t['numpy']:>9.1f} {t['numpy'] / t['torch']:>12.3f}")
    print(f"\ncollection in place ({cfg.task.name}, {rows_here} rows), us a vector step: torch {place['torch']:.1f}, "
          f"numpy {place['numpy']:.1f}, numpy/torch {place['numpy'] / place['torch']:.3f}")


if __name__ == "__main__":
    main()
