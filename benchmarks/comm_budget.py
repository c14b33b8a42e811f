"""Communication under a budget on ``hidden_goal``: return without messages and with 0, 1, 2, 4 and
unlimited messages per agent per episode, over seeds (docs/communication.md, docs/benchmarks.md).

    OMP_NUM_THREADS=1 python benchmarks/comm_budget.py --seeds 3 --steps 120000 --plot docs/img/comm_budget.png

Every run trains ``configs/hidden_goal_comm.yaml`` (MAPPO) through :func:`accord.loop.train` with
``task.comm.budget`` set (over-budget messages dropped), or with ``task.comm.enabled=false``; then its
final policy is evaluated greedily on 512 episodes (the same env seeds for every run). Prints one
JSON line per run, then a table: interquartile mean of the greedy return over seeds with a 95 %
percentile-bootstrap interval, the best memoryless return for that budget (closed form,
:func:`accord.envs.tasks.hidden_goal.optimal_return`), and the messages each agent sent per episode
in the last training log interval (sampled actions).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from accord.config import load_config
from accord.envs.tasks.hidden_goal import optimal_return
from accord.eval.stats import bootstrap_ci, iqm
from accord.evaluate import evaluate_run
from accord.loop import train
from accord.store import MetricsLog

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "hidden_goal_comm.yaml"
COMMON = ["train.checkpoint_interval_s=1e9", "train.log_interval=12000", "logging.tensorboard=false"]
# Setting name -> overrides.
SETTINGS: dict[str, list[str]] = {
    "no messages": ["task.comm.enabled=false"],
    "budget 0": ["task.comm.budget=0"],
    "budget 1": ["task.comm.budget=1"],
    "budget 2": ["task.comm.budget=2"],
    "budget 4": ["task.comm.budget=4"],
    "unlimited": ["task.comm.budget=null"],
}


def run_one(setting: str, seed: int, steps: int, root: Path) -> dict[str, Any]:
    cfg = load_config(CONFIG, [*COMMON, *SETTINGS[setting], f"seed={seed}", f"train.total_env_steps={steps}",
                               f"runs_dir={root}"])
    result = train(cfg, progress=False)
    ev = evaluate_run(result.run.path, root=root, episodes=512)
    last = [r for r in MetricsLog.read(result.run.path) if "return_mean" in r][-1]
    sent = [v for k, v in last.items() if k.endswith("/messages_per_episode")]
    return {"setting": setting, "seed": seed, "greedy_return": ev["policy"]["return_mean"],
            "random_return": ev["random"]["return_mean"], "wall_s": round(result.wall_s, 1),
            "messages_per_agent_episode": round(sum(sent) / len(sent), 3) if sent else 0.0}


def budget_of(setting: str) -> int | None:
    return 0 if setting == "no messages" else None if setting == "unlimited" else int(setting.split()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=120_000)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--plot", default=None, help="write the return-vs-budget plot (PNG) here")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = Path(args.runs_dir or tempfile.mkdtemp(prefix="comm_budget_"))
    rows = []
    for setting in args.settings.split(","):
        results = [run_one(setting, s, args.steps, root) for s in range(args.seeds)]
        for r in results:
            print(json.dumps(r), flush=True)
        scores = [r["greedy_return"] for r in results]
        lo, hi = bootstrap_ci(scores, iqm)
        rows.append({"setting": setting, "iqm": float(iqm(scores)), "lo": lo, "hi": hi, "scores": scores,
                     "optimum": optimal_return(6, 4, budget_of(setting)),
                     "sent": sum(r["messages_per_agent_episode"] for r in results) / len(results)})
    print(f"\n| setting | greedy return, IQM [95% CI] ({args.seeds} seeds) | per seed | best memoryless | "
          "messages / agent / episode |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['iqm']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}] | "
              f"{', '.join(f'{s:.2f}' for s in r['scores'])} | {r['optimum']:.2f} | {r['sent']:.2f} |")
    if args.plot:
        _plot(rows, Path(args.plot), args.seeds)


def _plot(rows: list[dict[str, Any]], out: Path, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = list(range(len(rows)))
    err = [[r["iqm"] - r["lo"] for r in rows], [r["hi"] - r["iqm"] for r in rows]]
    ax.errorbar(x, [r["iqm"] for r in rows], yerr=err, fmt="o", capsize=4,
                label=f"MAPPO, greedy (IQM, 95% CI, {seeds} seeds)")
    ax.plot(x, [r["optimum"] for r in rows], "k_", markersize=18, label="best memoryless policy")
    ax.set_xticks(x, [r["setting"] for r in rows], rotation=20)
    ax.set(ylabel="team return", title="hidden_goal: return vs message budget (per agent per episode)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")


if __name__ == "__main__":
    main()
