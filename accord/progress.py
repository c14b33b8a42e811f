"""What a long command shows while it works: a tqdm bar on a terminal, plain lines elsewhere.

Progress goes to stderr, so stdout carries only results (tables, ``--json``). When stderr is not a
terminal (a log file, CI, a pipe) or the bar is turned off, training prints one plain line per log
point and every other phase one line when it ends, instead of a flood of ``\\r`` redraws.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from tqdm import tqdm


def interactive() -> bool:
    """Whether a redrawn bar can be shown (stderr is a terminal)."""
    return sys.stderr.isatty()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class TrainProgress:
    """Env steps of a training run out of ``total``: a bar (``bar=True`` on a terminal), else log lines."""

    def __init__(self, name: str, total: int, initial: int, bar: bool = True) -> None:
        self.name, self.total = name, total
        self.bar = tqdm(total=total, initial=min(initial, total), unit="step", unit_scale=True,
                        dynamic_ncols=True, desc=name[:40], smoothing=0.1) if bar and interactive() else None

    def update(self, steps: int) -> None:
        """``steps`` more env steps; the bar stops at ``total`` (the last iteration may overshoot it)."""
        if self.bar is not None:
            self.bar.update(max(0, min(steps, self.total - self.bar.n)))

    def log(self, record: Mapping[str, Any]) -> None:
        """A metric log point: the bar shows its return (the bar's own rate is the speed), or one line."""
        ret, compiling = record.get("return_mean", float("nan")), record.get("compile_s", 0.0)
        if self.bar is not None:
            self.bar.set_postfix(ret=f"{ret:.2f}", **({"compiled": f"{compiling:.0f}s"} if compiling else {}))
            return
        _say(f"{self.name}: {record['env_steps']:,}/{self.total:,} env steps, {record['fps']:,.0f} steps/s, "
             f"return {ret:.3f}, elapsed {_clock(record['wall_s'])}"
             + (f" (of which compiling {compiling:.1f} s)" if compiling else ""))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def phase(label: str, total: int | None, unit: str) -> Iterator[Callable[[int], None]]:
    """Progress of a finite phase (eval episodes, contribution coalitions); yields ``advance(n)``.

    A bar on a terminal; otherwise one line when the phase ends (none if it fails).
    """
    bar = tqdm(total=total, desc=label, unit=unit, dynamic_ncols=True, leave=False) if interactive() else None
    start, done = time.perf_counter(), 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if bar is not None:
            bar.update(n)

    try:
        yield advance
    finally:
        if bar is not None:
            bar.close()
    _say(f"{label}: {done} {unit}{'' if done == 1 else 's'} in {time.perf_counter() - start:.1f} s")
