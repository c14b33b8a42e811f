"""The robustness suite: a stored policy under perturbations, paired with clean episodes.

``run_suite`` loads a checkpoint's :class:`~accord.policy.Policy` and the run's task config, plays
``episodes`` clean episodes, then the same episodes (same env seeds: env ``j`` of a batch of ``B`` is
reset from one seed, and only its first episode counts) under every perturbation and severity of a
suite. For each it reports the team return and success next to clean, the relative return drop
``(clean - perturbed) / |clean|`` and the success change, each with a 95 % paired-bootstrap interval
(:func:`accord.eval.stats.paired_bootstrap_ci`), names the worst case and, when the suite sets
thresholds, which ones are violated. Results go to ``<run>/suites/<time>.json`` (atomic) and a line
per suite run to ``<run>/suite.jsonl``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import Tensor

from accord.envs.base import Step, VecEnv
from accord.errors import ConfigError
from accord.evaluate import first_episodes
from accord.suite.perturb import PERTURBATIONS, SHIFTS, wrap

SUITES_DIR = "suites"
SUITE_LOG = "suite.jsonl"
MAX_BATCH = 256  # envs per evaluation batch; more episodes run in several batches of equal size


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thresholds(_Strict):
    max_drop: float | None = Field(None, ge=0, description="Largest allowed relative return drop.")
    max_success_drop: float | None = Field(None, ge=0, le=1, description="Largest allowed fall of the "
                                           "success rate (absolute).")


class Entry(Thresholds):
    kind: str | list[str] = Field(..., description="A perturbation, or a list of them composed.")
    name: str | None = None
    severities: list[float] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str | list[str]) -> str | list[str]:
        for k in [v] if isinstance(v, str) else v:
            if k not in PERTURBATIONS:
                raise ValueError(f"unknown perturbation '{k}'; allowed: {', '.join(PERTURBATIONS)}")
        return v

    @field_validator("severities")
    @classmethod
    def _range(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(not 0 < s <= 1 for s in v)):
            raise ValueError("severities must be a non-empty list of numbers in (0, 1]")
        return v

    @property
    def kinds(self) -> list[str]:
        return [self.kind] if isinstance(self.kind, str) else list(self.kind)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        mode = self.options.get("mode")
        return "+".join(self.kinds) + (f":{mode}" if mode else "")


class SuiteSpec(_Strict):
    episodes: int = Field(128, ge=2, description="Paired episodes per perturbation and severity.")
    seed: int = Field(12345, description="Env seed of the evaluation episodes (the same for every entry).")
    deterministic: bool = Field(True, description="Greedy actions (false: sampled).")
    severities: list[float] = Field(default_factory=lambda: [0.1, 0.3, 1.0])
    thresholds: Thresholds = Field(default_factory=Thresholds)
    perturbations: list[Entry]

    @field_validator("severities")
    @classmethod
    def _range(cls, v: list[float]) -> list[float]:
        return Entry._range(v)


DEFAULT_SUITE: dict[str, Any] = {
    "perturbations": [
        {"kind": "obs_noise"},
        {"kind": "dropout"},
        {"kind": "stale_obs"},
        {"kind": "delay_actions"},
        {"kind": "agent_failure", "options": {"mode": "frozen"}},
        {"kind": "agent_failure", "options": {"mode": "removed"}},
        {"kind": "random_teammate"},
        {"kind": "action_noise"},
        {"kind": "init_shift"},
        {"kind": "slow_steps", "severities": [0.1]},
        {"kind": "dropped_steps"},
    ]
}


def load_suite(source: str | Path | None = "default") -> SuiteSpec:
    """The built-in default suite, or a suite YAML file; any problem is a ConfigError (exit 2)."""
    if source in (None, "default"):
        data: Any = DEFAULT_SUITE
        where = "default suite"
    else:
        p = Path(source)
        if not p.is_file():
            raise ConfigError(f"suite file not found: {p} (use --suite default or a YAML file)")
        from accord.safe_yaml import load_file  # the one YAML reader (caps for hostile files)

        data = load_file(p) or {}
        where = str(p)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return SuiteSpec.model_validate(data)
    except ValidationError as e:
        msgs = ["{}: {}".format(".".join(map(str, err["loc"])) or "suite", err["msg"].removeprefix("Value error, "))
                for err in e.errors()]
        raise ConfigError(f"invalid suite {where}: " + "; ".join(msgs)) from None


# -- playing paired episodes ------------------------------------------------------------------------

@torch.no_grad()
def play_first_episodes(env: VecEnv, policy: Any, seed: int, deterministic: bool = True,
                        obs_moments: dict[str, list[Tensor]] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`accord.evaluate.first_episodes` as numpy; ``obs_moments`` collects per-feature sums of the
    observations of running episodes, for observation stds."""

    def observe(step: Step, running: Tensor) -> None:
        for m, x in step.obs.items():
            if x.is_floating_point():
                x64 = x[running].double().flatten(0, 1)
                acc = obs_moments.setdefault(m, [torch.zeros(x.shape[2:], dtype=torch.float64)] * 2 + [0])
                acc[0] = acc[0] + x64.sum(0).cpu()
                acc[1] = acc[1] + (x64**2).sum(0).cpu()
                acc[2] = acc[2] + x64.shape[0]

    ret, success = first_episodes(env, policy, seed, deterministic, observe=None if obs_moments is None else observe)
    succ = None if success is None else success.cpu().numpy()
    return ret.cpu().numpy().astype(float), (None if succ is None or np.isnan(succ).all() else np.nan_to_num(succ))


def _obs_std(moments: Mapping[str, list[Any]]) -> dict[str, Tensor]:
    out = {}
    for m, (s, sq, n) in moments.items():
        mean = s / max(n, 1)
        out[m] = (sq / max(n, 1) - mean**2).clamp_min(0).sqrt().float().clamp_min(1e-6)
    return out


def _batches(episodes: int) -> tuple[int, int]:
    n = math.ceil(episodes / MAX_BATCH)
    return n, math.ceil(episodes / n)


def _drop(c: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    clean = c.mean(axis)
    return (clean - p.mean(axis)) / np.maximum(np.abs(clean), 1e-8)


def _diff(c: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    return p.mean(axis) - c.mean(axis)


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def evaluate_suite(cfg: Any, policy: Any, suite: SuiteSpec, episodes: int | None = None,
                   progress: Callable[[str], None] | None = None, bar: bool = False) -> dict[str, Any]:
    """Run ``suite`` for ``policy`` on the task of ``cfg`` (a validated Config); the result as plain data."""
    from accord.envs.registry import make_env

    episodes = episodes or suite.episodes
    n_batches, per_batch = _batches(episodes)
    seeds = [suite.seed + 100_003 * k for k in range(n_batches)]
    task = cfg.task.model_copy(update={"num_envs": per_batch})
    t0 = time.perf_counter()

    def build(params: dict[str, Any] | None = None) -> VecEnv:
        t = task if params is None else task.model_copy(update={"params": params})
        return make_env(t, cfg.runner.kind, cfg.runner.workers, cfg.train.device)

    def play(env: VecEnv, wrap_fn: Callable[[VecEnv, int], VecEnv] | None = None,
             moments: dict[str, list[Any]] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        rets, succs = [], []
        for k, seed in enumerate(seeds):
            e = env if wrap_fn is None else wrap_fn(env, seed + k)
            r, s = play_first_episodes(e, policy, seed, suite.deterministic, moments)
            rets.append(r)
            succs.append(s)
        return np.concatenate(rets), (None if any(s is None for s in succs) else np.concatenate(succs))

    base = build()
    try:
        policy.check_fits(base.spec, "suite")  # one line for a checkpoint of another shape
        moments: dict[str, list[Any]] = {}
        clean_ret, clean_succ = play(base, moments=moments)
        obs_std = _obs_std(moments)
        items = [(e, s) for e in suite.perturbations for s in (e.severities or suite.severities)]
        results = []
        iterator: Any = items
        if bar:
            from tqdm import tqdm

            iterator = tqdm(items, desc="suite", unit="case", dynamic_ncols=True)
        for entry, sev in iterator:
            started = time.perf_counter()
            row: dict[str, Any] = {"perturbation": entry.label, "kinds": entry.kinds, "severity": sev,
                                   "options": entry.options}
            env, own = base, False
            if "init_shift" in entry.kinds:
                shift = SHIFTS.get(cfg.task.name)
                if shift is None:
                    row["skipped"] = (f"task '{cfg.task.name}' has no init_shift mapping "
                                      f"(supported: {', '.join(SHIFTS)})")
                    results.append(row)
                    if progress and not bar:
                        progress(f"{entry.label} s={sev}: skipped ({row['skipped']})")
                    continue
                env, own = build(shift(dict(cfg.task.params), sev)), True
                row["params"] = shift(dict(cfg.task.params), sev)
            try:
                kinds = [(k, entry.options) for k in entry.kinds]
                ret, succ = play(env, lambda e, s, kinds=kinds, sev=sev: wrap(e, kinds, sev, s, obs_std))
            finally:
                if own:
                    env.close()
            row.update(_compare(clean_ret, clean_succ, ret, succ))
            row["wall_s"] = round(time.perf_counter() - started, 3)
            row["violations"] = _violations(row, entry, suite.thresholds)
            results.append(row)
            if progress and not bar:
                progress(f"{entry.label} s={sev}: return {row['return_mean']:.3f} (clean "
                         f"{row['clean_return_mean']:.3f}), drop {_pct(row['drop'])} "
                         f"[{_pct(row['drop_ci'][0])}, {_pct(row['drop_ci'][1])}]")
    finally:
        base.close()
    scored = [r for r in results if "drop" in r]
    worst = max(scored, key=lambda r: r["drop"], default=None)
    violations = [v for r in results for v in r.get("violations", [])]
    by_sev: dict[float, dict[str, Any]] = {}
    for r in scored:
        if r["severity"] not in by_sev or r["drop"] > by_sev[r["severity"]]["drop"]:
            by_sev[r["severity"]] = r
    return {
        "episodes": int(len(clean_ret)), "seed": suite.seed, "deterministic": suite.deterministic,
        "clean": {"return_mean": _r(clean_ret.mean()), "return_std": _r(clean_ret.std(ddof=1)),
                  "success_rate": None if clean_succ is None else _r(clean_succ.mean())},
        "obs_std": {m: [round(float(x), 5) for x in s.flatten()[:64]] for m, s in obs_std.items()},
        "results": results,
        "worst": None if worst is None else {"perturbation": worst["perturbation"], "severity": worst["severity"],
                                             "drop": worst["drop"], "drop_ci": worst["drop_ci"]},
        "worst_by_severity": {str(k): {"perturbation": r["perturbation"], "drop": r["drop"], "drop_ci": r["drop_ci"]}
                              for k, r in sorted(by_sev.items())},
        "thresholds": suite.thresholds.model_dump(),
        "gated": any(_limits(e, suite.thresholds) != (None, None) for e in suite.perturbations),
        "passed": not violations,
        "violations": violations,
        "wall_s": round(time.perf_counter() - t0, 3),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _compare(c_ret: np.ndarray, c_succ: np.ndarray | None, p_ret: np.ndarray, p_succ: np.ndarray | None
             ) -> dict[str, Any]:
    from accord.eval.stats import paired_bootstrap_ci  # here: training imports this package, scipy 0.13 s

    row: dict[str, Any] = {
        "return_mean": _r(p_ret.mean()), "clean_return_mean": _r(c_ret.mean()),
        "delta": _r(_diff(c_ret, p_ret)), "delta_ci": [_r(x) for x in paired_bootstrap_ci(c_ret, p_ret, _diff)],
        "drop": _r(float(_drop(c_ret, p_ret))),
        "drop_ci": [_r(x) for x in paired_bootstrap_ci(c_ret, p_ret, _drop)],
    }
    if c_succ is not None and p_succ is not None:
        row.update({"success_rate": _r(p_succ.mean()), "clean_success_rate": _r(c_succ.mean()),
                    "success_delta": _r(_diff(c_succ, p_succ)),
                    "success_delta_ci": [_r(x) for x in paired_bootstrap_ci(c_succ, p_succ, _diff)]})
    return row


def _limits(entry: Entry, default: Thresholds) -> tuple[float | None, float | None]:
    return (entry.max_drop if entry.max_drop is not None else default.max_drop,
            entry.max_success_drop if entry.max_success_drop is not None else default.max_success_drop)


def _violations(row: dict[str, Any], entry: Entry, default: Thresholds) -> list[str]:
    max_drop, max_sd = _limits(entry, default)
    out = []
    where = f"{row['perturbation']} at severity {row['severity']}"
    if max_drop is not None and row["drop"] is not None and row["drop"] > max_drop:
        out.append(f"{where}: return drop {_pct(row['drop'])} exceeds max_drop {_pct(max_drop)}")
    if max_sd is not None and row.get("success_delta") is not None and -row["success_delta"] > max_sd:
        out.append(f"{where}: success rate fell by {-row['success_delta']:.3f}, more than max_success_drop "
                   f"{max_sd:.3f}")
    return out


# -- run store ----------------------------------------------------------------------------------------

def _checkpoint_steps(path: Path) -> int | None:
    try:
        return int(path.stem.split("_")[1])
    except (IndexError, ValueError):
        return None


def run_suite(run: str | Path, root: str | Path = "runs", checkpoint: str | Path | None = None,
              suite: SuiteSpec | str | Path | None = "default", episodes: int | None = None,
              progress: Callable[[str], None] | None = None, bar: bool = False, store: bool = True,
              suite_source: str | None = None) -> dict[str, Any]:
    """Run a suite on one checkpoint of a stored run (latest by default), store and return the result."""
    from accord.config import build_config
    from accord.policy import Policy
    from accord.store import RunDir, resolve_checkpoint

    spec = suite if isinstance(suite, SuiteSpec) else load_suite(suite)
    run_dir = RunDir.open(root, run)
    cfg = build_config(run_dir.load_config())
    path = resolve_checkpoint(run_dir.path, checkpoint)
    policy = Policy.load(path, device=cfg.train.device)
    result = evaluate_suite(cfg, policy, spec, episodes, progress, bar)
    result = {"run": run_dir.name, "checkpoint": path.name, "env_steps": _checkpoint_steps(path),
              "task": cfg.task.name, "algorithm": cfg.algorithm,
              "suite": suite_source or (str(suite) if not isinstance(suite, SuiteSpec) else "custom"),
              "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **result}
    if store:
        store_result(run_dir.path, result)
    return result


def store_result(run_path: Path, result: dict[str, Any]) -> Path:
    """``<run>/suites/<time>.json`` (atomic) and one summary line in ``<run>/suite.jsonl``."""
    from accord.store import atomic_write_text
    from accord.store.metrics import jsonable

    folder = Path(run_path) / SUITES_DIR
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}.json"
    atomic_write_text(path, json.dumps(jsonable(result), indent=1) + "\n")
    summary = {k: result.get(k) for k in ("time", "checkpoint", "env_steps", "suite", "episodes", "worst",
                                          "passed", "wall_s")}
    summary["clean_return_mean"] = result["clean"]["return_mean"]
    summary["violations"] = len(result["violations"])
    summary["file"] = f"{SUITES_DIR}/{path.name}"
    with open(Path(run_path) / SUITE_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(jsonable(summary)) + "\n")
    return path


def degradation_table(result: dict[str, Any]) -> str:
    """The printed table: one row per perturbation and severity, worst case last."""
    rows = []
    for r in result["results"]:
        if "skipped" in r:
            rows.append((r["perturbation"], r["severity"], "skipped", "", "", "", ""))
            continue
        succ = "-" if r.get("success_rate") is None else (
            f"{r['success_rate']:.3f} ({r['success_delta']:+.3f} [{r['success_delta_ci'][0]:+.3f}, "
            f"{r['success_delta_ci'][1]:+.3f}])")
        rows.append((r["perturbation"], r["severity"], f"{r['return_mean']:.3f}",
                     f"{r['delta']:+.3f} [{r['delta_ci'][0]:+.3f}, {r['delta_ci'][1]:+.3f}]",
                     f"{_pct(r['drop'])} [{_pct(r['drop_ci'][0])}, {_pct(r['drop_ci'][1])}]", succ,
                     "FAIL" if r.get("violations") else ""))
    header = ("perturbation", "severity", "return", "vs clean [95% CI]", "drop [95% CI]", "success (vs clean)",
              "gate")
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_lines(result: dict[str, Any]) -> list[str]:
    clean = result["clean"]
    succ = "" if clean["success_rate"] is None else f", success {clean['success_rate']:.3f}"
    out = [f"run {result['run']}, {result['checkpoint']} ({result['env_steps']} env steps), suite "
           f"{result['suite']}: {result['episodes']} paired episodes (seed {result['seed']}), clean return "
           f"{clean['return_mean']:.3f} +- {clean['return_std']:.3f}{succ}"]
    w = result["worst"]
    if w is not None:
        out.append(f"worst: {w['perturbation']} at severity {w['severity']}: return drop {_pct(w['drop'])} "
                   f"[{_pct(w['drop_ci'][0])}, {_pct(w['drop_ci'][1])}]")
    per = result.get("worst_by_severity") or {}
    if len(per) > 1:
        out.append("worst per severity: " + ", ".join(f"{k}: {v['perturbation']} {_pct(v['drop'])}"
                                                      for k, v in per.items()))
    if result["gated"]:
        out.append("gate: passed" if result["passed"] else f"gate: FAILED ({len(result['violations'])} violations)")
        out += [f"  {v}" for v in result["violations"]]
    out.append(f"took {result['wall_s']:.1f}s")
    return out


def progress_printer(stream: Any = None) -> Callable[[str], None]:
    stream = stream or sys.stderr

    def emit(line: str) -> None:
        print(f"suite: {line}", file=stream, flush=True)

    return emit
