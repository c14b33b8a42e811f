"""A run's flags: ``flags.jsonl``, one JSON object per raised flag (lazy agent, reward hacking, ...).

Appended as they are raised, during training or by ``accord contribution``, each once; each carries
the time it was written. Non-finite numbers become ``null``, as in ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from accord.errors import RunStoreError
from accord.store.metrics import jsonable, read_jsonl

FLAGS_FILE = "flags.jsonl"


_IDENTITY = ("flag", "agent", "checkpoint", "env_steps")  # what makes two flags the same finding


def _identity(flag: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(flag.get(k) for k in _IDENTITY)


def append_flags(run_dir: str | os.PathLike[str], flags: Iterable[Mapping[str, Any]]) -> None:
    """Append ``flags`` to the run's ``flags.jsonl`` (created on first use).

    A flag already in the file (same kind, agent, checkpoint and env steps) is not written again, so
    re-running ``accord contribution`` on a checkpoint or resuming a run does not repeat findings.
    """
    path = Path(run_dir) / FLAGS_FILE
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    seen = {_identity(f) for f in read_flags(run_dir)}
    lines = []
    for flag in flags:
        if _identity(flag) not in seen:
            seen.add(_identity(flag))
            lines.append(json.dumps(jsonable({**flag, "time": stamp}), allow_nan=False) + "\n")
    if not lines:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(lines)
    except OSError as e:
        raise RunStoreError(f"cannot append to {path}: {e.strerror or e}") from e


def read_flags(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The run's flags, oldest first (none if the file does not exist)."""
    return read_jsonl(Path(run_dir) / FLAGS_FILE)
