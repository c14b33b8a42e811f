"""What a run or a study is judged by: the evaluation protocol's absolute metric, per seed.

A *source* is a run or a study name under the run root. Each run's score is the mean return of its
absolute-metric record (``evals.jsonl``, kind ``absolute``: the best checkpoint on many episodes);
a run trained without the protocol gets one computed now from its latest checkpoint and stored.
``mode`` picks greedy or sampled actions; ``ship`` takes, for the whole source, the mode with the
higher mean (what one would ship).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accord.config import build_config
from accord.errors import AccordError
from accord.store import RunDir, latest_checkpoint, load_checkpoint
from accord.store.evals import MODES, append_eval, read_evals

MODE_CHOICES = ("ship", *MODES)


class SourceError(AccordError):
    """A run or study cannot be used as asked (missing, too few seeds, different tasks)."""


@dataclass
class Source:
    kind: str  # "run" or "study"
    name: str
    runs: list[RunDir]
    task: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def task_identity(run: RunDir) -> dict[str, Any]:
    cfg = run.load_config()
    task = cfg.get("task", {})
    return {"name": task.get("name"), "params": task.get("params", {})}


def resolve(root: str | Path, name: str) -> Source:
    """A run or a study (finished members only) by name or path."""
    from accord.study import Study, is_study

    if is_study(root, name):
        study = Study.open(root, name)
        runs = study.runs(finished_only=True)
        if not runs:
            raise SourceError(f"study {study.name} has no finished member run yet")
        src = Source("study", study.name, runs)
    else:
        run = RunDir.open(root, name)
        src = Source("run", run.name, [run])
    tasks = {repr(task_identity(r)) for r in src.runs}
    if len(tasks) > 1:
        raise SourceError(f"{src.label} mixes tasks: {', '.join(sorted(tasks))}")
    src.task = task_identity(src.runs[0])
    return src


def ensure_absolute(run: RunDir) -> dict[str, Any]:
    """The run's absolute-metric record; computed now from the latest checkpoint (and stored) if missing."""
    found = read_evals(run.path, "absolute")
    if found:
        return found[-1]
    from accord.eval.protocol import evaluate_modes, ship_mode
    from accord.policy import Policy

    cfg = build_config(run.load_config())
    ckpt = latest_checkpoint(run.checkpoints_dir)
    if ckpt is None:
        raise SourceError(f"run {run.name} has no checkpoint to evaluate")
    payload = load_checkpoint(ckpt)
    policy = Policy.from_checkpoint(payload, str(ckpt), cfg.train.device)
    ev = {"kind": "absolute", "env_steps": int(payload["algo"]["env_steps"]), "checkpoint": ckpt.name,
          **evaluate_modes(cfg, policy, cfg.eval.episodes * cfg.eval.final_factor, cfg.eval.seed + 1)}
    ev["ship"] = ship_mode(ev)
    return append_eval(run.path, ev)


@dataclass
class Scores:
    source: Source
    mode: str  # greedy or sampled, after resolving "ship"
    rows: list[dict[str, Any]]  # per run: run, seed, greedy, sampled, success_*, best, final, env_steps
    per_seed: np.ndarray  # [runs] mean return of `mode`
    episodes: np.ndarray  # per-episode returns of `mode` (all runs concatenated)
    success: np.ndarray | None  # [runs] success rate of `mode`, where reported


def scores(source: Source, mode: str = "ship") -> Scores:
    records = [ensure_absolute(r) for r in source.runs]
    if mode == "ship":
        mode = max(MODES, key=lambda m: float(np.mean([rec[m]["return_mean"] for rec in records])))
    rows = []
    for run, rec in zip(source.runs, records, strict=True):
        interval = read_evals(run.path, "interval")
        best = max(interval, key=lambda r: r[mode]["return_mean"], default=None)
        rows.append({"run": run.name, "seed": run.meta().get("seed"), "env_steps": rec["env_steps"],
                     "checkpoint": rec.get("checkpoint"),
                     **{m: rec[m]["return_mean"] for m in MODES},
                     **{f"{m}_ci": rec[m].get("ci") for m in MODES},
                     **{f"success_{m}": rec[m].get("success_rate") for m in MODES},
                     "final": interval[-1][mode]["return_mean"] if interval else None,
                     "best": best[mode]["return_mean"] if best else None,
                     "best_steps": best["env_steps"] if best else None})
    per_seed = np.array([rec[mode]["return_mean"] for rec in records], dtype=float)
    episodes = np.concatenate([np.asarray(rec[mode].get("returns", []), dtype=float) for rec in records])
    succ = [rec[mode].get("success_rate") for rec in records]
    success = None if any(s is None for s in succ) else np.array(succ, dtype=float)
    return Scores(source, mode, rows, per_seed, episodes, success)
