"""Stdlib-only helpers shared by the driver and the runners (the runners live in different venvs)."""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def peak_rss_mib() -> float:
    """Peak resident memory of this process plus the largest of its finished children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024  # Linux reports KiB


def emit(tag: str, fields: dict[str, Any]) -> None:
    """One ``TAG {json}`` line on stdout, so the driver finds it among the trainer's own output."""
    print(f"{tag} " + json.dumps(fields), flush=True)


def report(**fields: Any) -> None:
    """A run's measurements: the ``RESULT`` line."""
    emit("RESULT", fields)


def settings(**fields: Any) -> None:
    """A peer's configuration as its code reads it: the ``SETTINGS`` line."""
    emit("SETTINGS", fields)


def probe(reps: int = 5) -> float:
    """Calibration: the fastest of ``reps`` timings (s) of a fixed pure-Python workload, so a run's
    figures can be read against how fast the core was just before it."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        acc = 0
        for i in range(300_000):
            acc = (acc + i * i) % 1_000_003
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":  # the driver runs `python _measure.py` pinned to the benchmark's core
    emit("PROBE", {"probe_s": round(probe(), 4)})
    sys.exit(0)
