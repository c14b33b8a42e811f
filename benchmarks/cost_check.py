"""The cost meter of a run against an independent measurement: its ONNX export (docs/cost.md).

    OMP_NUM_THREADS=1 accord train configs/spread_mappo.yaml train.total_env_steps=20000 --runs-dir /tmp/cost
    OMP_NUM_THREADS=1 python benchmarks/cost_check.py RUN --runs-dir /tmp/cost

Exports the run (``accord.export.export_run``: parity, then its own latency measurement of torch and
onnxruntime on recorded observations) and prints, per agent, the meter's figures from ``cost.json``
next to the export's: parameters and FLOPs (export counts them again), weight bytes against the bytes
of the graph's initializers, latency p50/p99 against the export's torch and onnxruntime timings.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import onnx
from onnx import numpy_helper

from accord.cost import read_costs
from accord.export import export_run
from accord.store import RunDir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--latency-calls", type=int, default=1000)
    args = p.parse_args()
    run = RunDir.open(args.runs_dir, args.run)
    out = Path(tempfile.mkdtemp(prefix="cost_check_")) / "bundle"
    manifest = export_run(run.path, out, latency_calls=args.latency_calls).manifest
    print("| agent | params meter / export | FLOPs meter / export | weight bytes meter / ONNX initializers | "
          "latency p50 (us) meter / export torch / export onnxruntime | p99 meter / torch / onnxruntime |")
    print("|---|---|---|---|---|---|")
    for cost, agent in zip(read_costs(run.path), manifest["agents"], strict=True):
        graph = onnx.load(str(out / agent["graph"])).graph
        weights = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
        lat = agent["latency"]
        print(f"| {cost['agent']} | {cost['params']} / {agent['params']} | {cost['flops']} / {agent['flops']} | "
              f"{cost['weight_bytes']} / {weights} | {cost['latency_p50_us']:.0f} / {lat['torch']['p50_us']:.0f} / "
              f"{lat['onnxruntime']['p50_us']:.0f} | {cost['latency_p99_us']:.0f} / {lat['torch']['p99_us']:.0f} / "
              f"{lat['onnxruntime']['p99_us']:.0f} |")
    print(json.dumps({"bundle": str(out)}))


if __name__ == "__main__":
    main()
