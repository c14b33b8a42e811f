"""One BenchMARL run (MAPPO on VMAS navigation by default) at BenchMARL's own defaults.

Runs inside the peer's venv (see ``peers.py``), so it imports nothing from accord. Only what a
headless, offline machine needs is changed: CSV logging instead of wandb, no rendering, no
checkpoints. Prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, report  # noqa: E402


def last_value(folder: Path, key: str) -> float | None:
    """Last logged value of ``key`` in BenchMARL's CSV logger output (one file per key)."""
    for f in folder.rglob(key.replace("/", "_") + ".csv"):
        rows = list(csv.reader(f.open()))
        if rows:
            return float(rows[-1][-1])
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="navigation", help="VMAS task name in BenchMARL's VmasTask")
    p.add_argument("--algorithm", default="mappo", choices=["mappo", "ippo", "qmix"])
    p.add_argument("--frames", type=int, default=120_000)
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    from benchmarl.algorithms import IppoConfig, MappoConfig, QmixConfig
    from benchmarl.environments import VmasTask
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    torch.set_num_threads(1)
    cfg = ExperimentConfig.get_from_yaml()
    cfg.max_n_frames = args.frames
    cfg.on_policy_n_envs_per_worker = args.num_envs
    cfg.off_policy_n_envs_per_worker = args.num_envs
    cfg.loggers, cfg.render, cfg.create_json = ["csv"], False, False
    cfg.checkpoint_interval, cfg.checkpoint_at_end = 0, False
    cfg.save_folder = tempfile.mkdtemp(prefix="benchmarl_")
    algo = {"mappo": MappoConfig, "ippo": IppoConfig, "qmix": QmixConfig}[args.algorithm].get_from_yaml()
    experiment = Experiment(
        task=VmasTask[args.task.upper()].get_from_yaml(), algorithm_config=algo,
        model_config=MlpConfig.get_from_yaml(), critic_model_config=MlpConfig.get_from_yaml(),
        seed=args.seed, config=cfg,
    )
    start = time.perf_counter()
    experiment.run()
    wall = time.perf_counter() - start
    folder = Path(cfg.save_folder)
    report(trainer="benchmarl", frames=args.frames, wall_s=round(wall, 1), fps=round(args.frames / wall, 1),
           peak_rss_mib=round(peak_rss_mib()), seed=args.seed, num_envs=args.num_envs,
           return_train=last_value(folder, "collection/reward/episode_reward_mean"),
           return_eval=last_value(folder, "eval/reward/episode_reward_mean"))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
