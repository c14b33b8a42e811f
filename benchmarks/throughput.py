"""Throughput of the PPO training path on the built-in `spread` task.

For each (agents, envs) setting, three figures in env steps per second (one env step = one env
advancing one time step, all agents included; JaxMARL calls these frames):

- env:     the vectorized env alone, uniformly random actions;
- rollout: env + policy inference (actor and critic forward), no learning;
- train:   collect + PPO update, as `accord train` runs it.

From these, the share of training time spent in the env, in inference and in the update. Each figure
is the median of ``--repeats`` runs. Prints one JSON line per setting, then a table.

    python benchmarks/throughput.py                      # 3 agents at 16, 64, 256, 1024 envs
    python benchmarks/throughput.py --agents 3 8 32 --envs 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from accord.algos.ppo import PPO
from accord.config import load_config
from accord.envs.registry import make_env
from accord.evaluate import random_actions


def _rate(fn, steps_per_call: int, seconds: float) -> float:
    fn()  # warm-up (allocations, first-call overheads)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * steps_per_call / (time.perf_counter() - start)


def measure(n_agents: int, num_envs: int, seconds: float) -> dict[str, float]:
    cfg = load_config("configs/spread_mappo.yaml", [f"task.params.n_agents={n_agents}", f"task.num_envs={num_envs}"])
    env = make_env(cfg.task)
    algo = PPO(cfg, env)
    gen = torch.Generator().manual_seed(0)
    step = env.reset(seed=0)

    def env_only() -> None:
        env.step(random_actions(env, step.avail_actions, gen))

    t_len = cfg.ppo.rollout_len
    out = {
        "env": _rate(env_only, num_envs, seconds),
        "rollout": _rate(algo.runner.collect, t_len * num_envs, seconds),
        "train": _rate(algo.train_iteration, t_len * num_envs, seconds),
    }
    env.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, nargs="+", default=[3])
    p.add_argument("--envs", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure per repeat")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for n in args.agents:
        for b in args.envs:
            runs = [measure(n, b, args.seconds) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            # Per env step: time in env, in inference (rollout - env), in the update (train - rollout).
            t_env, t_roll, t_train = 1 / med["env"], 1 / med["rollout"], 1 / med["train"]
            shares = {"env": t_env / t_train, "inference": (t_roll - t_env) / t_train,
                      "update": (t_train - t_roll) / t_train}
            row = {"bench": "throughput", "task": "spread", "algorithm": "mappo", "n_agents": n, "num_envs": b,
                   "env_steps_per_s": round(med["env"]), "rollout_steps_per_s": round(med["rollout"]),
                   "train_steps_per_s": round(med["train"]),
                   "share": {k: round(v, 3) for k, v in shares.items()},
                   "repeats": args.repeats, "threads": args.threads}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    header = f"{'agents':>6} {'envs':>6} {'env/s':>10} {'rollout/s':>10} {'train/s':>10}  env  infer  update"
    print(header)
    print("-" * len(header))
    for r in rows:
        s = r["share"]
        print(f"{r['n_agents']:>6} {r['num_envs']:>6} {r['env_steps_per_s']:>10,} {r['rollout_steps_per_s']:>10,} "
              f"{r['train_steps_per_s']:>10,}  {s['env']:.2f} {s['inference']:>5.2f} {s['update']:>7.2f}")


if __name__ == "__main__":
    main()
