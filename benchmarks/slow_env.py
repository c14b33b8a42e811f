"""Slow-env benchmark: lockstep (sync) vs decoupled (async, ray) collection when the env is the bottleneck.

Trains MAPPO (or any config) on a task whose every env step sleeps ``--latency`` +- ``--jitter`` ms
(``task.latency_ms``, accord.envs.latency), with ``task.num_envs`` envs split over ``--workers``
actors. Prints one JSON line per run: env steps/s (the loop's, learned-from steps), the greedy
return at the end (256 eval episodes), the learner's utilization and the policy lag (means over log
points), dropped batches and restarts. ``--summary FILE`` reads such lines and prints, per
(runner, workers), the median env steps/s and the mean greedy return with its 95% t-interval.

    python benchmarks/slow_env.py --runner sync --seeds 0 1 2 >> slow.jsonl
    python benchmarks/slow_env.py --runner async --workers 4 --seeds 0 1 2 >> slow.jsonl
    python benchmarks/slow_env.py --summary slow.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

SPREAD_2 = ["task.params.n_agents=2", "task.num_envs=64", "ppo.epochs=5", "ppo.minibatches=1", "eval.interval=0",
            "credit.monitor.contribution_episodes=0", "train.log_interval=5000"]


def run(config: str, runner: str, workers: int, seed: int, steps: int, latency: float, jitter: float,
        extra: list[str]) -> dict:
    from accord.api import train
    from accord.store import MetricsLog

    with tempfile.TemporaryDirectory() as runs:
        overrides = [*SPREAD_2, f"runner.kind={runner}", f"runner.workers={workers}", f"seed={seed}",
                     f"train.total_env_steps={steps}", f"task.latency_ms={latency}", f"task.jitter_ms={jitter}",
                     *extra]
        report = train(config, overrides, runs_dir=runs, contribution=False, progress=False)
        rows = [r for r in MetricsLog.read(report.run.path) if "env_steps" in r]

        def mean(key: str) -> float | None:
            vals = [r[key] for r in rows if r.get(key) is not None]
            return round(statistics.mean(vals), 3) if vals else None

        last = rows[-1]
        return {"runner": runner, "workers": workers, "seed": seed, "env_steps": report.env_steps,
                "fps": round(report.fps, 1), "greedy_return": round(report.greedy["return_mean"], 3),
                "train_return": round(report.train_return, 3), "learner_util": mean("runner/learner_util"),
                "lag_mean": mean("runner/lag_mean"), "lag_max": last.get("runner/lag_max"),
                "dropped_batches": last.get("runner/dropped_batches"), "restarts": last.get("runner/restarts"),
                "latency_ms": latency, "jitter_ms": jitter}


def summary(path: Path) -> None:
    from accord.eval.stats import mean_ci_t

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["runner"], r["workers"]), []).append(r)
    print("| runner | workers | seeds | env steps/s (median) | greedy return, mean [95% CI] | learner util "
          "| lag mean |")
    print("|---|---|---|---|---|---|---|")
    for (runner, workers), rs in sorted(groups.items()):
        m, lo, hi = mean_ci_t(np.array([r["greedy_return"] for r in rs]))

        def median(key: str, group: list[dict] = rs) -> str:
            vals = [r[key] for r in group if r.get(key) is not None]
            return f"{statistics.median(vals):.2f}" if vals else "-"

        print(f"| {runner} | {workers} | {len(rs)} | {statistics.median(r['fps'] for r in rs):.0f} | "
              f"{float(m):.2f} [{float(lo):.2f}, {float(hi):.2f}] | {median('learner_util')} | {median('lag_mean')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/spread_mappo.yaml")
    ap.add_argument("--runner", default="sync", choices=["sync", "async", "ray"])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--latency", type=float, default=2.0)
    ap.add_argument("--jitter", type=float, default=1.0)
    ap.add_argument("--summary", type=Path, help="summarize a file of this script's JSON lines instead")
    ap.add_argument("overrides", nargs="*", help="extra a.b=c config overrides")
    args = ap.parse_args()
    if args.summary:
        summary(args.summary)
        return
    for seed in args.seeds:
        print(json.dumps(run(args.config, args.runner, args.workers, seed, args.steps, args.latency,
                             args.jitter, args.overrides)), flush=True)


if __name__ == "__main__":
    main()
