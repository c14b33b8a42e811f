"""Credit assignment on the free-rider task: final team return and lazy-agent flags, per method, over seeds.

    taskset -c 0 python benchmarks/credit_freerider.py            # shared, counterfactual, attention, individual
    python benchmarks/credit_freerider.py --methods shared,counterfactual --seeds 3 --steps 30000

Every run trains MAPPO (``architecture: ctde``) with one credit method through :func:`accord.loop.train`
(run store, metrics, reward-hacking monitor), then evaluates its final checkpoint with
:func:`accord.eval.contribution.report_run`: the team return over 512 episodes (sampled actions, as
trained; the same env seeds for every run) and the lazy-agent flags. The reward-hacking case trains
shared credit on ``freerider_farm`` and counts the runs whose flag fired.

Prints one JSON line per method and for the hacking case, then a table: interquartile mean of the
final team return over seeds with a 95 % percentile-bootstrap interval, and how many runs flagged a lazy
agent (which agents, in brackets). Runs go to ``--runs-dir`` (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from accord.config import load_config
from accord.eval.contribution import report_run
from accord.eval.flags import HACKING
from accord.eval.stats import bootstrap_ci, iqm
from accord.loop import train
from accord.store import append_flags, read_flags

COMMON = ["task.name=freerider", "task.num_envs=64", "ppo.rollout_len=10", "ppo.epochs=5", "ppo.minibatches=2",
          "train.log_interval=1280", "train.checkpoint_interval_s=1e9", "credit.monitor.contribution_episodes=512"]


def run_method(method: str, seeds: int, steps: int, root: Path) -> dict[str, Any]:
    finals, rider, lazy_runs, lazy_agents, hacking, wall = [], [], 0, Counter(), 0, 0.0
    for seed in range(seeds):
        cfg = load_config(None, [*COMMON, f"credit.name={method}", f"seed={seed}", f"runs_dir={root}",
                                 f"train.total_env_steps={steps}", f"name=freerider_{method}_{seed}"])
        result = train(cfg, progress=False)
        wall += result.wall_s
        report = report_run(result.run.path, root=root)
        append_flags(result.run.path, report.flags)
        finals.append(report.team_return)
        rider.append(report.agents[-1].ablation)
        lazy_runs += bool(report.flags)
        lazy_agents.update(f["agent"] for f in report.flags)
        hacking += sum(f["flag"] == HACKING for f in read_flags(result.run.path))
    lo, hi = bootstrap_ci(finals, iqm)
    return {"method": method, "seeds": seeds, "env_steps": steps, "final_return": finals, "iqm": float(iqm(finals)),
            "ci95": [lo, hi], "lazy_runs": lazy_runs, "lazy_agents": dict(lazy_agents),
            "rider_contribution": rider, "hacking_flags": hacking, "train_wall_s": round(wall, 1)}


def run_hacking(seeds: int, steps: int, root: Path) -> dict[str, Any]:
    fired = []
    for seed in range(seeds):
        cfg = load_config(None, [*COMMON, "task.name=freerider_farm", "train.log_interval=640", f"seed={seed}",
                                 f"runs_dir={root}", f"train.total_env_steps={steps}", f"name=farm_shared_{seed}"])
        result = train(cfg, progress=False)
        steps_at = [f["env_steps"] for f in read_flags(result.run.path) if f["flag"] == HACKING]
        fired.append(steps_at[0] if steps_at else None)
    return {"case": "freerider_farm, shared credit", "seeds": seeds, "env_steps": steps,
            "flag_fired": sum(s is not None for s in fired), "first_flag_at_env_steps": fired}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="shared,counterfactual,attention,individual")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=60_000, help="env steps per run")
    p.add_argument("--hacking-steps", type=int, default=12_000)
    p.add_argument("--runs-dir", help="where runs are stored (default: a temporary folder)")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.runs_dir or tmp)
        start = time.perf_counter()
        results = []
        for method in args.methods.split(","):
            results.append(run_method(method, args.seeds, args.steps, root))
            print(json.dumps(results[-1]), flush=True)
        hacking = run_hacking(args.seeds, args.hacking_steps, root)
        print(json.dumps(hacking), flush=True)
    print(f"\nfree-rider, {args.seeds} seeds x {args.steps} env steps, final team return over 512 episodes "
          f"(optimum 43.5, lazy rider 37.5, random -60); {time.perf_counter() - start:.0f} s in all\n")
    print(f"{'method':<16}{'IQM':>8}  {'95% CI':<18}{'lazy-agent flags':<24}{'rider contribution (mean)':>26}")
    for r in results:
        agents = ", ".join(f"{k} x{v}" for k, v in sorted(r["lazy_agents"].items()))
        lazy = f"{r['lazy_runs']}/{r['seeds']}" + (f" ({agents})" if agents else "")
        rider = sum(r["rider_contribution"]) / len(r["rider_contribution"])
        print(f"{r['method']:<16}{r['iqm']:>8.2f}  [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]".ljust(44)
              + f"{lazy:<24}{rider:>26.2f}")
    print(f"\nreward hacking (freerider_farm, shared): flag fired in {hacking['flag_fired']}/{hacking['seeds']} runs, "
          f"at env steps {hacking['first_flag_at_env_steps']}")


if __name__ == "__main__":
    main()
