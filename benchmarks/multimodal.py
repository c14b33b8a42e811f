"""Multimodal agents (issue 13): each arm's score over seeds, and each arm against a reference arm.

Train the arms as studies first (docs/benchmarks.md, "Multimodal agents (issue 13)" has the commands), e.g.

    accord train configs/multimodal_mappo.yaml --seeds 0-2 --study mm_full
    accord train configs/multimodal_mappo.yaml --seeds 0-2 --study mm_no_text 'model.drop_modalities=[text]'
    python benchmarks/multimodal.py mm_full mm_no_text mm_no_image mm_no_vector

Each seed's score is its absolute metric (the evaluation protocol's final evaluation of its best
checkpoint, accord.eval.scores), in the mode that arm does best with ("ship": greedy or sampled, the
mode kindest to an ablation). Prints one JSON line per arm: IQM over seeds with a 95 % percentile-bootstrap
interval, and IQM(arm) - IQM(reference) with its bootstrap interval; the reference is the first arm.

    python benchmarks/multimodal.py --throughput 20

times 20 training iterations (collect + PPO update) of configs/multimodal_mappo.yaml after one warm-up:
env steps per wall second and per CPU second of this process (the figure a free core would give on a
shared machine), and the bytes of one rollout (images stay uint8).
"""

from __future__ import annotations

import argparse
import json
import time

from accord.config import load_config
from accord.envs.registry import make_env
from accord.eval.scores import resolve, scores
from accord.eval.stats import iqm_difference_ci, iqm_stratified_ci
from accord.loop import build_learner


def throughput(iterations: int) -> dict[str, float]:
    cfg = load_config("configs/multimodal_mappo.yaml", [])
    env = make_env(cfg.task)
    learner, runner = build_learner(cfg, env)
    batch = runner.collect()
    learner.update(batch)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        learner.update(runner.collect())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps = iterations * cfg.ppo.rollout_len * cfg.task.num_envs
    image = sum(obs["image"].nbytes for obs in (batch.obs, batch.final_obs, batch.last_obs))
    return {"bench": "multimodal_throughput", "num_envs": cfg.task.num_envs, "rollout_len": cfg.ppo.rollout_len,
            "env_steps": steps, "train_steps_per_wall_s": round(steps / wall),
            "train_steps_per_cpu_s": round(steps / cpu),
            "rollout_bytes": batch.nbytes(), "rollout_image_bytes": image, "image_dtype": str(batch.obs["image"].dtype)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="*", help="studies (or runs); the first is the reference")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--throughput", type=int, default=0, metavar="ITERATIONS")
    args = parser.parse_args()
    if args.throughput:
        print(json.dumps(throughput(args.throughput)))
    ref = None
    for arm in args.arms:
        s = scores(resolve(args.runs_dir, arm), "ship")
        point, low, high = iqm_stratified_ci([s.per_seed])
        ref = s.per_seed if ref is None else ref
        diff, d_low, d_high = iqm_difference_ci(ref, s.per_seed)
        print(json.dumps({"arm": arm, "mode": s.mode, "seeds": [round(float(x), 3) for x in s.per_seed],
                          "iqm": round(point, 3), "ci95": [round(low, 3), round(high, 3)],
                          "minus_reference": round(diff, 3),
                          "minus_reference_ci95": [round(d_low, 3), round(d_high, 3)],
                          "success": None if s.success is None else [round(float(x), 3) for x in s.success]}))


if __name__ == "__main__":
    main()
