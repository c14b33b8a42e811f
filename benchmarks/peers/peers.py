"""Side by side: a peer trainer and accord on the same task, algorithm, frame budget and settings.

    python benchmarks/peers/peers.py navigation --seeds 3            # BenchMARL vs accord, MAPPO, VMAS
    python benchmarks/peers/peers.py navigation --num-envs 200
    python benchmarks/peers/peers.py lbf --frames 200000             # accord vs EPyMARL's reference figures

Each run is its own process pinned to one core (``taskset -c CORE``) with one torch thread; for each
seed the peer runs first, then accord, on the same core. The peer gets its own venv under
``--scratch`` (installed on first use, torch held at the CPU wheel by ``constraints-dev.txt``).
EPyMARL is not on the package registry, so for LBF its figures measured on this machine are the
reference (see ``README.md``). Prints per-run lines, then medians and accord/peer ratios; ``--out``
also writes them as JSON. The matched settings are listed in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The peer's packages, at the versions this comparison was set up with (they work with torch 2.13).
BENCHMARL_PACKAGES = ["benchmarl==1.5.2", "torchrl==0.11.1", "tensordict==0.11.0", "vmas==1.5.2"]


@dataclass(frozen=True)
class Reference:
    """A peer's figures measured once on this machine, for peers that cannot be installed here."""

    trainer: str
    fps: float
    wall_s: float
    returns: str


@dataclass(frozen=True)
class Benchmark:
    configs: dict[str, str]  # accord config by algorithm, relative to the repo root
    peer_script: str | None  # runner run with the peer venv's python, or None: reference figures
    eval_episodes: int  # greedy evaluation episodes at the end, as the peer's default
    references: dict[str, Reference] = field(default_factory=dict)  # by algorithm


BENCHMARKS = {
    "navigation": Benchmark({"mappo": "configs/vmas_navigation_mappo.yaml"}, "benchmarl_run.py", 10),
    "lbf": Benchmark({"mappo": "configs/lbf_8x8_mappo.yaml", "qmix": "configs/lbf_8x8_qmix.yaml"}, None, 100, {
        "mappo": Reference("epymarl", 522.0, 384.0, "0.025 at 150k steps (test return)"),
        "qmix": Reference("epymarl", 335.0, 597.0, "0.0 at 200k steps (test return)"),
    }),
}
FRAMES_PER_BATCH = 6_000  # BenchMARL's on_policy_collected_frames_per_batch, kept at any env count


def ensure_benchmarl(scratch: Path) -> Path:
    """The peer venv's python, creating the venv and installing BenchMARL on first use."""
    venv = scratch / "benchmarl-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing BenchMARL into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints-dev.txt"),
                        *BENCHMARL_PACKAGES], check=True)
    return python


def run(cmd: list[str], core: int, log: Path) -> dict:
    """Run ``cmd`` pinned to ``core`` with one thread; return its RESULT line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print("$", " ".join(cmd), flush=True)
    with log.open("a") as out:
        proc = subprocess.run(["taskset", "-c", str(core), *cmd], env=env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=out)
        out.write(proc.stdout)
    results = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results:
        sys.exit(f"run failed (exit {proc.returncode}); see {log}")
    print("  ", json.dumps(results[-1]), flush=True)
    return results[-1]


def median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", choices=sorted(BENCHMARKS))
    p.add_argument("--algorithm", default="mappo", help="navigation: mappo; lbf: mappo or qmix")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--frames", type=int, default=120_000, help="env steps (frames) per run")
    p.add_argument("--core", type=int, default=1)
    p.add_argument("--scratch", type=Path, default=Path("/tmp/peers"))
    p.add_argument("--config", help="accord config to use instead of the benchmark's")
    p.add_argument("--skip-peer", action="store_true", help="run accord only")
    p.add_argument("--out", type=Path, help="write all results as JSON here")
    args = p.parse_args()

    bench = BENCHMARKS[args.benchmark]
    if args.algorithm not in bench.configs:
        p.error(f"{args.benchmark} has algorithms {', '.join(bench.configs)}")
    args.scratch.mkdir(parents=True, exist_ok=True)
    log = args.scratch / f"{args.benchmark}.log"
    overrides = [f"task.num_envs={args.num_envs}", f"train.total_env_steps={args.frames}"]
    if bench.peer_script is not None:  # BenchMARL's batch stays 6,000 frames whatever the env count
        overrides.append(f"ppo.rollout_len={FRAMES_PER_BATCH // args.num_envs}")
    peer_python = None if bench.peer_script is None or args.skip_peer else ensure_benchmarl(args.scratch)

    config = args.config or bench.configs[args.algorithm]
    rows: dict[str, list[dict]] = {"peer": [], "accord": []}
    for seed in range(args.seeds):
        if peer_python is not None:
            rows["peer"].append(run([str(peer_python), str(HERE / bench.peer_script), "--frames", str(args.frames),
                                     "--num-envs", str(args.num_envs), "--seed", str(seed)], args.core, log))
        rows["accord"].append(run([sys.executable, str(HERE / "accord_run.py"), config, *overrides, f"seed={seed}",
                                   "--eval-episodes", str(bench.eval_episodes)],
                                  args.core, log))

    print(f"\n{args.benchmark}, {args.algorithm}, {args.num_envs} envs, {args.frames} frames, "
          f"{args.seeds} seed(s), core {args.core}; medians:")
    header = f"{'trainer':<10} {'frames/s':>9} {'wall s':>8} {'peak MiB':>9}  return (train / eval)"
    print(header)
    print("-" * len(header))
    summary = {}
    for runs in rows.values():
        if not runs:
            continue
        m = {k: median(runs, k) for k in ("fps", "wall_s", "peak_rss_mib", "return_train", "return_eval")}
        summary[runs[0]["trainer"]] = m
        ret = " / ".join("-" if m[k] is None else f"{m[k]:.3f}" for k in ("return_train", "return_eval"))
        print(f"{runs[0]['trainer']:<10} {m['fps']:>9.0f} {m['wall_s']:>8.1f} {m['peak_rss_mib']:>9.0f}  {ret}")
    ref = bench.references.get(args.algorithm)
    if ref is not None:
        summary[ref.trainer] = {"fps": ref.fps, "wall_s": ref.wall_s}
        print(f"{ref.trainer + '*':<10} {ref.fps:>9.0f} {ref.wall_s:>8.1f} {'-':>9}  {ref.returns}")
        print("* reference figures measured on this machine at its defaults (200k steps), not run here")
    peer = next((k for k in summary if k != "accord"), None)
    if peer is not None and "accord" in summary:
        print(f"\naccord / {peer}: frames/s x{summary['accord']['fps'] / summary[peer]['fps']:.1f}")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows,
                                        "medians": summary}, indent=1))


if __name__ == "__main__":
    main()
