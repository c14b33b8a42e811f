"""Throughput of the PPO training path on the built-in `spread` task.

For each (agents, envs) setting, three figures in env steps per second (one env step = one env
advancing one time step, all agents included; JaxMARL calls these frames):

- env:     the vectorized env alone, uniformly random actions;
- rollout: env + policy inference (the actor; the learner runs its critic once per batch), no learning;
- train:   collect + PPO update, as `accord train` runs it.

From these, the share of training time spent in the env, in inference and in the update. Each figure
is the median of ``--repeats`` runs. Prints one JSON line per setting, then a table.
``--clock cpu`` times this process's CPU time instead of wall time: steadier when other jobs share
the core (it leaves out time spent waiting for the core, and the compiler's worker processes).

    python benchmarks/throughput.py                      # 3 agents at 16, 64, 256, 1024 envs
    python benchmarks/throughput.py --agents 3 8 32 --envs 64
    python benchmarks/throughput.py --config configs/spread_ippo_jaxmarl.yaml --envs 16   # compiled
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from accord.config import load_config
from accord.envs.registry import make_env
from accord.evaluate import random_actions
from accord.loop import build_learner, train_step

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU time
clock = CLOCKS["wall"]


def _rate(fn, steps_per_call: int, seconds: float) -> float:
    fn()  # warm-up (allocations, first-call overheads, the compile)
    calls, start = 0, clock()
    while clock() - start < seconds:
        fn()
        calls += 1
    return calls * steps_per_call / (clock() - start)


def summarize(runs: list[dict[str, float]], parts: tuple[str, str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """Median rate of each of three nested stages (env, env + acting, env + acting + update), and the
    share of the last stage's time spent in each part: stage k's time minus stage k-1's."""
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    times = [1 / v for v in med.values()]  # seconds per env step, stage by stage
    shares = {name: (t - prev) / times[-1] for name, t, prev in zip(parts, times, [0.0, *times[:-1]], strict=True)}
    return med, {k: round(v, 3) for k, v in shares.items()}


def print_table(rows: list[dict], first: tuple[str, str], rates: tuple[str, str, str]) -> None:
    """The human table under the JSON lines: two key columns, three rates, the time shares."""
    parts = list(rows[0]["share"])
    header = (f"{first[0]:>6} {first[1]:>6} " + " ".join(f"{r.split('_')[0] + '/s':>10}" for r in rates)
              + "  " + " ".join(parts))
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r[first[0]]:>6} {r[first[1]]:>6} " + " ".join(f"{r[k]:>10,}" for k in rates) + "  "
              + " ".join(f"{r['share'][p]:>{len(p)}.2f}" for p in parts))


def measure(config: str, n_agents: int, num_envs: int, seconds: float, overrides: list[str]) -> dict[str, float]:
    torch._dynamo.reset()  # a fresh learner per measurement: drop the last one's compiled code (recompile limit)
    cfg = load_config(config,
                      [f"task.params.n_agents={n_agents}", f"task.num_envs={num_envs}", *overrides])
    env = make_env(cfg.task)
    algo, runner = build_learner(cfg, env)
    gen = torch.Generator().manual_seed(0)
    step = env.reset(seed=0)

    def env_only() -> None:
        env.step(random_actions(env, step.avail_actions, gen))

    t_len = cfg.ppo.rollout_len
    out = {
        "env": _rate(env_only, num_envs, seconds),
        "rollout": _rate(runner.collect, t_len * num_envs, seconds),
        "train": _rate(lambda: train_step(algo, runner), t_len * num_envs, seconds),
    }
    env.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/spread_mappo.yaml", help="a PPO config on the spread task")
    p.add_argument("--agents", type=int, nargs="+", default=[3])
    p.add_argument("--envs", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure per repeat")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    p.add_argument("overrides", nargs="*", help="config overrides a.b=c, e.g. train.compile=false")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    rows = []
    for n in args.agents:
        for b in args.envs:
            runs = [measure(args.config, n, b, args.seconds, args.overrides) for _ in range(args.repeats)]
            med, shares = summarize(runs, ("env", "inference", "update"))
            row = {"bench": "throughput", "task": "spread", "config": args.config, "n_agents": n, "num_envs": b,
                   "env_steps_per_s": round(med["env"]), "rollout_steps_per_s": round(med["rollout"]),
                   "train_steps_per_s": round(med["train"]),
                   "share": shares, "repeats": args.repeats, "threads": args.threads, "clock": args.clock,
                   "overrides": args.overrides}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print_table(rows, ("n_agents", "num_envs"), ("env_steps_per_s", "rollout_steps_per_s", "train_steps_per_s"))

if __name__ == "__main__":
    main()
