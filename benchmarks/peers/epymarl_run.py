"""One EPyMARL run (MAPPO on an lbforaging task by default) at EPyMARL's own settings.

Runs inside the EPyMARL venv (see ``peers.py``) on the scratch copy of its source; runs the
documented command line ``src/main.py --config=mappo --env-config=gymma with env_args.time_limit=...
env_args.key=... t_max=... seed=...`` in a child process and reads the returns from the run's
sacred ``info.json``. ``--settings`` prints the merged config (default.yaml < envs/gymma.yaml <
algs/<alg>.yaml < the command line's values) as EPyMARL's ``main.py`` merges it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, report, settings  # noqa: E402


def merged_config(src: Path, alg: str, cli: dict[str, Any]) -> dict[str, Any]:
    """EPyMARL's config as main.py builds it: each later file updates the earlier, recursively."""
    import yaml

    def update(d: dict[str, Any], u: dict[str, Any]) -> dict[str, Any]:
        for k, v in u.items():
            d[k] = update(d.get(k, {}), v) if isinstance(v, dict) else v
        return d

    config: dict[str, Any] = {}
    for name in ("default.yaml", "envs/gymma.yaml", f"algs/{alg}.yaml"):
        update(config, yaml.safe_load((src / "config" / name).read_text()))
    return update(config, cli)


def number(value: Any) -> float:
    """A value from sacred's info.json: a plain number or a jsonpickled numpy scalar."""
    return float(value["value"] if isinstance(value, dict) else value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", type=Path, required=True, help="the scratch copy of EPyMARL's source")
    p.add_argument("--alg", default="mappo")
    p.add_argument("--key", default="lbforaging:Foraging-8x8-2p-2f-coop-v3")
    p.add_argument("--time-limit", type=int, default=50)
    p.add_argument("--frames", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", action="store_true", help="print the config and exit")
    args = p.parse_args()

    src = args.source / "src"
    cli = {"env_args": {"time_limit": args.time_limit, "key": args.key}, "t_max": args.frames, "seed": args.seed}
    if args.settings:
        import gymnasium

        package, env_id = args.key.split(":")
        __import__(package)
        spec = gymnasium.spec(env_id)  # lbforaging passes its limit as a kwarg, not to the registry
        settings(**merged_config(src, args.alg, cli),
                 env_limit=spec.max_episode_steps or spec.kwargs.get("max_episode_steps"))
        return

    sacred = args.source / "results" / "sacred" / args.alg / args.key
    before = set(sacred.glob("[0-9]*"))  # sacred numbers its runs; _sources is not one
    cmd = [sys.executable, str(src / "main.py"), f"--config={args.alg}", "--env-config=gymma", "with",
           f"env_args.time_limit={args.time_limit}", f"env_args.key={args.key}", f"t_max={args.frames}",
           f"seed={args.seed}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=args.source, stdout=sys.stderr)
    process_s, trained_at = time.perf_counter() - start, time.time()
    new = sorted(set(sacred.glob("[0-9]*")) - before, key=lambda d: int(d.name))
    if proc.returncode != 0 or not new:
        sys.exit(f"EPyMARL failed (exit {proc.returncode})")
    run_dir = new[-1]
    info = json.loads((run_dir / "info.json").read_text())
    meta = json.loads((run_dir / "run.json").read_text())
    wall = (datetime.fromisoformat(meta["stop_time"]) - datetime.fromisoformat(meta["start_time"])).total_seconds()
    curve, tests = ([[int(t), round(number(r), 3)] for t, r in zip(info[f"{k}_T"], info[k], strict=True)]
                    for k in ("return_mean", "test_return_mean"))
    report(trainer="epymarl", frames=args.frames, wall_s=round(wall, 1), fps=round(args.frames / wall, 1),
           process_s=round(process_s, 1), trained_at=trained_at, peak_rss_mib=round(peak_rss_mib()), seed=args.seed,
           num_envs=None, return_train=curve[-1][1] if curve else None,
           return_eval=tests[-1][1] if tests else None,
           return_note="team return; train: EPyMARL's last logged return_mean, eval: its last test_return_mean",
           curve=curve, eval_curve=tests)


if __name__ == "__main__":
    main()
