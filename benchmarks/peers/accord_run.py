"""One accord run of a config (plus ``key=value`` overrides), measured like the peer's.

Prints one ``RESULT {json}`` line: frames (env steps), training wall time, frames/s, peak RSS, the
return of the last 100 training episodes and the greedy policy's return over ``--eval-episodes``
fresh episodes (as the peers' evaluations; not counted in the wall time).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, report  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="a.b=c config overrides")
    p.add_argument("--eval-episodes", type=int, default=10)
    args = p.parse_args()

    from accord.config import load_config
    from accord.evaluate import evaluate_run
    from accord.loop import train

    with tempfile.TemporaryDirectory(prefix="accord_peers_") as runs:
        cfg = load_config(args.config, [*args.overrides, f"runs_dir={runs}"])
        result = train(cfg, progress=False)
        rss = peak_rss_mib()  # of training alone
        greedy = None
        if args.eval_episodes > 0:
            greedy = evaluate_run(result.run.path.name, root=runs, episodes=args.eval_episodes)["policy"]["return_mean"]
    report(trainer="accord", frames=result.env_steps, wall_s=round(result.wall_s, 1), fps=round(result.fps, 1),
           peak_rss_mib=round(rss), seed=cfg.seed, num_envs=cfg.task.num_envs,
           return_train=result.return_mean, return_eval=greedy)


if __name__ == "__main__":
    main()
