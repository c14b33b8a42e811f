"""Throughput of the value-based (QMIX) training path on built-in `foraging`, next to throughput.py's PPO.

For each (envs, agent network) setting, three figures in env steps per second (one env step = one env
advancing one time step, all agents included), with ``configs/foraging_qmix.yaml``'s learner settings
(25 steps per env, then ``q.updates`` gradient steps on 32 sampled episodes):

- env:     the vectorized env alone, uniformly random actions;
- collect: env + epsilon-greedy action selection + replay writes, no learning;
- train:   collect + updates, as `accord train` runs it (buffer already holding a batch).

From these, the share of training time spent in the env, in acting + replay, and in the updates. Each
figure is the median of ``--repeats`` runs. Prints one JSON line per setting, then a table.

    python benchmarks/throughput_q.py                       # 8, 32, 128 envs; MLP and GRU agents
    python benchmarks/throughput_q.py --envs 64 --agent mlp
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from accord.config import load_config
from accord.envs.registry import make_env
from accord.evaluate import random_actions
from accord.loop import build_learner, train_step

sys.path.insert(0, str(Path(__file__).parent))
from throughput import _rate, print_table, summarize  # noqa: E402  (shared with the PPO benchmark)

CONFIG = "configs/foraging_qmix.yaml"


def measure(num_envs: int, recurrent: bool, seconds: float) -> dict[str, float]:
    cfg = load_config(CONFIG, [f"task.num_envs={num_envs}", f"model.recurrent={recurrent}"])
    env = make_env(cfg.task)
    learner, runner = build_learner(cfg, env)
    while learner.updates == 0:  # fill the buffer to one batch, so every timed iteration learns
        train_step(learner, runner)
    alone = make_env(cfg.task)  # its own env: resetting the learner's would desync its runner
    gen = torch.Generator().manual_seed(0)
    step = alone.reset(seed=0)

    def env_only() -> None:
        nonlocal step  # foraging's masks change every step
        step = alone.step(random_actions(alone, step.avail_actions, gen))

    steps = cfg.q.rollout_len * num_envs
    out = {
        "env": _rate(env_only, num_envs, seconds),
        "collect": _rate(runner.collect, steps, seconds),
        "train": _rate(lambda: train_step(learner, runner), steps, seconds),
    }
    env.close()
    alone.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--agent", choices=["mlp", "gru"], nargs="+", default=["mlp", "gru"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure per repeat")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(CONFIG)
    rows = []
    for agent in args.agent:
        for b in args.envs:
            runs = [measure(b, agent == "gru", args.seconds) for _ in range(args.repeats)]
            med, shares = summarize(runs, ("env", "acting", "update"))
            row = {"bench": "throughput_q", "task": "foraging", "algorithm": "q", "credit": cfg.credit.name,
                   "agent": agent, "n_agents": cfg.task.params["n_agents"], "num_envs": b,
                   "updates_per_iteration": cfg.q.updates, "env_steps_per_iteration": cfg.q.rollout_len * b,
                   "env_steps_per_s": round(med["env"]), "collect_steps_per_s": round(med["collect"]),
                   "train_steps_per_s": round(med["train"]),
                   "share": shares, "repeats": args.repeats, "threads": args.threads}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print_table(rows, ("agent", "num_envs"), ("env_steps_per_s", "collect_steps_per_s", "train_steps_per_s"))

if __name__ == "__main__":
    main()
