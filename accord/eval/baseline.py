"""Baselines: a stored reference result, and alerts when a new run or study falls short of it.

``accord baseline set NAME RUN|STUDY`` stores ``<runs>/baselines/NAME.json``: the absolute metric
per seed (and per episode), its mean with a Student-t interval and IQM with a bootstrap interval,
the success rate where reported, and the learning-curve band across seeds (training return at each
log point: mean, std, min, max).

``accord baseline check NAME RUN|STUDY --tolerance 3%`` alerts when the candidate's mean falls below
the baseline's by more than the tolerance (a fraction of |baseline mean|) **and** the one-sided Welch
test supports it: H0 "candidate >= baseline - tolerance" rejected at ``alpha``. Under A/A the false
alarm rate is at most alpha (tests/test_stats_calibration.py). An alert is appended to
``<runs>/baselines/alerts.jsonl`` and the candidate runs' ``flags.jsonl``, the optional hook command
runs (alert JSON on stdin, ``ACCORD_ALERT_FILE`` naming a file holding it), and the command exits 1.

Live (``baseline.name`` in a run's config): at each log point the training return is compared with
the baseline's band at the same env steps (interpolated); a fall below the band's lower edge by more
than the tolerance sets ``baseline_alert`` in metrics and raises a ``baseline_regression`` flag.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from accord.errors import AccordError
from accord.eval import stats as st
from accord.eval.scores import resolve, scores
from accord.store import MetricsLog, append_flags, atomic_write_text
from accord.store.metrics import jsonable

BASELINES_DIR = "baselines"
ALERTS_FILE = "alerts.jsonl"
REGRESSION = "baseline_regression"


class BaselineError(AccordError):
    """A baseline is missing, malformed, or asked for with bad options."""


def parse_tolerance(text: str | float) -> float:
    """``3%`` -> 0.03; anything that is not a percentage between 0 and 100 is refused."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", str(text))
    if not m or not 0 <= float(m.group(1)) < 100:
        raise BaselineError(f"--tolerance: {text!r} is not a percentage; write e.g. 3%")
    return float(m.group(1)) / 100


def baseline_path(root: str | Path, name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise BaselineError(f"invalid baseline name {name!r}: use letters, digits, '.', '_' and '-'")
    return Path(root) / BASELINES_DIR / f"{name}.json"


def list_baselines(root: str | Path) -> list[str]:
    d = Path(root) / BASELINES_DIR
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def load_baseline(root: str | Path, name: str) -> dict[str, Any]:
    path = baseline_path(root, name)
    if not path.is_file():
        known = list_baselines(root)
        raise BaselineError(f"no baseline {name!r} in {Path(root) / BASELINES_DIR}; existing: "
                            f"{', '.join(known) if known else 'none (create one with `accord baseline set`)'}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BaselineError(f"cannot read baseline {path}: {e}") from e


def curve_band(runs: list) -> dict[str, list[float]]:
    """Training return across runs at each logged env step (steps every run reached)."""
    curves = []
    for run in runs:
        recs = [r for r in MetricsLog.read(run.path) if r.get("return_mean") is not None]
        curves.append({int(r["env_steps"]): float(r["return_mean"]) for r in recs})
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    vals = np.array([[c[s] for s in steps] for c in curves], dtype=float).reshape(len(curves), len(steps))
    if not steps:
        return {"env_steps": [], "mean": [], "std": [], "min": [], "max": [], "n": len(curves)}
    return {"env_steps": steps, "mean": vals.mean(0).tolist(),
            "std": (vals.std(0, ddof=1) if len(curves) > 1 else np.zeros(len(steps))).tolist(),
            "min": vals.min(0).tolist(), "max": vals.max(0).tolist(), "n": len(curves)}


def _metric_summary(per_seed: np.ndarray, episodes: np.ndarray | None) -> dict[str, Any]:
    m, lo, hi = st.t_ci(per_seed if per_seed.size > 1 or episodes is None else episodes)
    iq, ilo, ihi = st.iqm_stratified_ci([per_seed])
    out = {"per_seed": per_seed.tolist(), "mean": m, "ci": [lo, hi], "iqm": iq, "iqm_ci": [ilo, ihi]}
    if episodes is not None:
        out["episodes"] = [round(float(x), 5) for x in episodes]
    return out


def set_baseline(root: str | Path, name: str, source_name: str, mode: str = "ship") -> dict[str, Any]:
    path = baseline_path(root, name)
    src = resolve(root, source_name)
    sc = scores(src, mode)
    record = {"name": name, "source": src.name, "kind": src.kind, "task": src.task, "mode": sc.mode,
              "runs": [r["run"] for r in sc.rows],
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "metrics": {"return": _metric_summary(sc.per_seed, sc.episodes)},
              "curve": curve_band(src.runs)}
    if sc.success is not None:
        record["metrics"]["success_rate"] = _metric_summary(sc.success, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(jsonable(record), indent=1))
    return record


def regression_p(base: np.ndarray, cand: np.ndarray, delta: float) -> np.ndarray:
    """One-sided Welch p-value of "mean(cand) < mean(base) - delta" (last axis: samples; batched)."""
    base, cand = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    if base.ndim == 1 and np.ptp(base) == 0 and np.ptp(cand) == 0:
        return np.asarray(0.0 if cand.mean() + delta < base.mean() else 1.0)
    with warnings.catch_warnings():  # near-identical samples (collapsed policies): scipy warns, result stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ttest_ind(cand + delta, base, axis=-1, equal_var=False, alternative="less").pvalue


def check(root: str | Path, name: str, source_name: str, tolerance: float, alpha: float = 0.05,
          hook: str | None = None) -> dict[str, Any]:
    """Check a run or study against baseline ``name``; store and announce an alert if one is raised."""
    base = load_baseline(root, name)
    src = resolve(root, source_name)
    if src.task != base["task"]:
        raise BaselineError(f"{src.label} is on task {src.task}, baseline {name} on {base['task']}")
    sc = scores(src, base["mode"])
    b_ret = base["metrics"]["return"]
    by_seed = len(b_ret["per_seed"]) >= 2 and sc.per_seed.size >= 2
    checks = []
    pairs = [("return", np.asarray(b_ret["per_seed"]) if by_seed else np.asarray(b_ret.get("episodes", [])),
              sc.per_seed if by_seed else sc.episodes)]
    if by_seed and "success_rate" in base["metrics"] and sc.success is not None:
        pairs.append(("success_rate", np.asarray(base["metrics"]["success_rate"]["per_seed"]), sc.success))
    for metric, b, c in pairs:
        if b.size < 2 or c.size < 2:
            raise BaselineError(f"{metric}: a statistical check needs at least 2 samples per side "
                                f"(baseline {b.size}, candidate {c.size})")
        delta = tolerance * abs(float(b.mean()))
        p = float(regression_p(b, c, delta))
        dev = (float(c.mean()) - float(b.mean())) / max(abs(float(b.mean())), 1e-12)
        checks.append({"metric": metric, "unit": "seeds" if by_seed else "episodes", "baseline_mean": float(b.mean()),
                       "candidate_mean": float(c.mean()), "deviation": dev, "p": p,
                       "alert": bool(p < alpha and dev < -tolerance)})
    result = {"baseline": name, "candidate": src.name, "kind": src.kind, "mode": base["mode"],
              "tolerance": tolerance, "alpha": alpha, "checks": checks,
              "alert": any(c["alert"] for c in checks),
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if result["alert"]:
        raise_alert(root, result, src.runs, hook)
    return result


def raise_alert(root: str | Path, alert: dict[str, Any], runs: list, hook: str | None) -> None:
    d = Path(root) / BASELINES_DIR
    d.mkdir(parents=True, exist_ok=True)
    line = json.dumps(jsonable(alert), allow_nan=False)
    with open(d / ALERTS_FILE, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    worst = min(alert["checks"], key=lambda c: c["deviation"])
    for run in runs:
        append_flags(run.path, [{"flag": REGRESSION, "baseline": alert["baseline"], **worst,
                                 "detail": f"{worst['metric']} {worst['candidate_mean']:.3f} is "
                                           f"{-100 * worst['deviation']:.1f}% below baseline {alert['baseline']} "
                                           f"({worst['baseline_mean']:.3f}), beyond the {100 * alert['tolerance']:.1f}"
                                           f"% tolerance (p = {worst['p']:.3g})"}])
    if hook:
        run_hook(hook, line)


def run_hook(hook: str, payload: str) -> int:
    """Run the alert hook (a shell command): the alert JSON on stdin and in $ACCORD_ALERT_FILE."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(payload)
    try:
        proc = subprocess.run(hook, shell=True, input=payload, text=True, capture_output=True, timeout=60,
                              env={**os.environ, "ACCORD_ALERT_FILE": f.name})
        return proc.returncode
    except subprocess.TimeoutExpired:
        return 124
    finally:
        os.unlink(f.name)


class LiveBaselineCheck:
    """During training: the training return against the baseline's curve band at the same env steps."""

    def __init__(self, name: str, root: str | Path, tolerance: float, hook: str | None = None) -> None:
        from accord.errors import ConfigError

        try:
            base = load_baseline(root, name)
        except BaselineError as e:
            raise ConfigError(f"baseline.name: {e}") from None
        self.name, self.tolerance, self.hook, self.root = name, tolerance, hook, root
        curve = base["curve"]
        self.steps = np.asarray(curve["env_steps"], dtype=float)
        self.low = np.asarray(curve["min"], dtype=float)
        self.mean = np.asarray(curve["mean"], dtype=float)
        self.active = False

    def observe(self, record: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any] | None]:
        value, steps = record.get("return_mean"), float(record["env_steps"])
        if value is None or not np.isfinite(value) or self.steps.size == 0 or not \
                self.steps[0] <= steps <= self.steps[-1]:
            return {}, None
        low = float(np.interp(steps, self.steps, self.low))
        mean = float(np.interp(steps, self.steps, self.mean))
        margin = self.tolerance * abs(mean)
        below = value < low - margin
        fields = {"baseline_gap": value - low, "baseline_alert": float(below)}
        starts = below and not self.active
        self.active = below
        if not starts:
            return fields, None
        flag = {"flag": REGRESSION, "baseline": self.name, "env_steps": int(steps), "value": value,
                "band_low": low, "band_mean": mean, "tolerance": self.tolerance,
                "detail": f"training return {value:.3f} at {int(steps)} env steps is below baseline {self.name}'s "
                          f"band ({low:.3f}) by more than {100 * self.tolerance:.1f}% of |{mean:.3f}|"}
        if self.hook:
            run_hook(self.hook, json.dumps(jsonable(flag)))
        return fields, flag
