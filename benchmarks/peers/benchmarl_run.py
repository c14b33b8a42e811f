"""One BenchMARL run (MAPPO on VMAS navigation by default) at BenchMARL's own defaults.

Runs inside the peer's venv (see ``peers.py``), so it imports nothing from accord. Only what a
headless, offline machine needs is changed: CSV logging instead of wandb, no rendering, no
checkpoints; and the env count (``--num-envs``; the batch stays BenchMARL's frames per batch).
Prints one ``RESULT {json}`` line, or with ``--settings`` the config as BenchMARL loaded it.
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
from _measure import peak_rss_mib, report, settings  # noqa: E402


def logged(folder: Path, key: str) -> list[list[float]]:
    """Every (step, value) of ``key`` in BenchMARL's CSV logger output (one file per key)."""
    for f in folder.rglob(key.replace("/", "_") + ".csv"):
        return [[float(r[0]), float(r[-1])] for r in csv.reader(f.open()) if r]
    return []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default="navigation", help="VMAS task name in BenchMARL's VmasTask")
    p.add_argument("--algorithm", default="mappo", choices=["mappo", "ippo", "qmix"])
    p.add_argument("--frames", type=int, default=120_000)
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", action="store_true", help="print the config and exit")
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
    task, model = VmasTask[args.task.upper()].get_from_yaml(), MlpConfig.get_from_yaml()
    if args.settings:
        settings(task_name=args.task, task=task.config, frames=cfg.max_n_frames,
                 num_envs=cfg.on_policy_n_envs_per_worker,
                 frames_per_batch=cfg.on_policy_collected_frames_per_batch,
                 minibatch_size=cfg.on_policy_minibatch_size, n_minibatch_iters=cfg.on_policy_n_minibatch_iters,
                 num_cells=list(model.num_cells), activation=model.activation_class.__name__.lower(),
                 lr=cfg.lr, adam_eps=cfg.adam_eps, gamma=cfg.gamma,
                 max_grad_norm=cfg.clip_grad_val if cfg.clip_grad_norm else None,
                 evaluation_interval=cfg.evaluation_interval, evaluation_episodes=cfg.evaluation_episodes,
                 **{k: getattr(algo, k) for k in ("share_param_critic", "clip_epsilon", "entropy_coef", "critic_coef",
                                                  "loss_critic_type", "lmbda", "use_tanh_normal")})
        return
    experiment = Experiment(task=task, algorithm_config=algo, model_config=model,
                            critic_model_config=MlpConfig.get_from_yaml(), seed=args.seed, config=cfg)
    start = time.perf_counter()
    experiment.run()
    wall, trained_at = time.perf_counter() - start, time.time()
    folder = Path(cfg.save_folder)
    curve = logged(folder, "collection/reward/episode_reward_mean")
    evals = logged(folder, "eval/reward/episode_reward_mean")
    report(trainer="benchmarl", frames=args.frames, wall_s=round(wall, 1), fps=round(args.frames / wall, 1),
           trained_at=trained_at, peak_rss_mib=round(peak_rss_mib()), seed=args.seed, num_envs=args.num_envs,
           return_train=curve[-1][1] if curve else None, return_eval=evals[-1][1] if evals else None,
           return_note="mean over agents; train: last batch's episodes, eval: BenchMARL's deterministic eval",
           curve=curve, eval_curve=evals)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
