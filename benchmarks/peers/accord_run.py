"""One accord run of a config (plus ``key=value`` overrides), measured like the peers' runs.

Prints one ``RESULT {json}`` line: frames (env steps), training wall time and the seconds of it spent
compiling (``compile_s``), frames/s (also after the first log point, which holds the compiles:
``fps_after_first_log``), peak RSS, the
return of the last 100 training episodes, the learning curve (training return at each log point),
``trained_at`` (the clock when training ended, for the driver's time from launch) and the greedy
policy's return over ``--eval-episodes`` fresh episodes (not counted in any time).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, report  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file, or - for accord's defaults")
    p.add_argument("overrides", nargs="*", help="a.b=c config overrides")
    p.add_argument("--eval-episodes", type=int, default=10)
    args = p.parse_args()

    from accord.config import load_config
    from accord.evaluate import evaluate_run
    from accord.loop import train
    from accord.store.metrics import MetricsLog

    with tempfile.TemporaryDirectory(prefix="accord_peers_") as runs:
        cfg = load_config(None if args.config == "-" else args.config, [*args.overrides, f"runs_dir={runs}"])
        result = train(cfg, progress=False)
        trained_at = time.time()
        rss = peak_rss_mib()  # of training alone
        records = MetricsLog.read(result.run.path)
        curve = [[r["env_steps"], None if r.get("return_mean") is None else round(r["return_mean"], 3)]
                 for r in records if "return_mean" in r]
        # After the first log point, which holds any torch.compile (JaxMARL's fps is after its compile).
        timed = [r for r in records if "wall_s" in r]
        fps_after_first = (round((timed[-1]["env_steps"] - timed[0]["env_steps"])
                                 / max(timed[-1]["wall_s"] - timed[0]["wall_s"], 1e-9), 1) if len(timed) > 1 else None)
        greedy = None
        if args.eval_episodes > 0:
            greedy = evaluate_run(result.run.path.name, root=runs, episodes=args.eval_episodes)["policy"]["return_mean"]
    report(trainer="accord", frames=result.env_steps, wall_s=round(result.wall_s, 2), fps=round(result.fps, 1),
           compile_s=round(result.compile_s, 2),
           fps_after_first_log=fps_after_first, first_log_steps=timed[0]["env_steps"] if timed else None,
           trained_at=trained_at, peak_rss_mib=round(rss), seed=cfg.seed, num_envs=cfg.task.num_envs,
           return_train=round(result.return_mean, 3), return_eval=greedy, curve=curve)


if __name__ == "__main__":
    main()
