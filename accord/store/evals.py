"""A run's evaluation results: ``evals.jsonl`` (the record) and an ``evals`` table in ``index.sqlite``.

Each line of ``evals.jsonl`` is one evaluation of one policy (``kind`` ``interval``: the current
policy during training; ``absolute``: the best checkpoint on many more episodes at the end;
``manual``: ``accord eval``), holding greedy and sampled results with their per-episode returns.
The index table is derived data for listing, one row per (run, kind, env_steps, mode).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from accord.errors import RunStoreError
from accord.store.index import INDEX_FILE
from accord.store.metrics import jsonable, read_jsonl

EVALS_FILE = "evals.jsonl"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS evals (
    run TEXT NOT NULL,
    kind TEXT NOT NULL,
    env_steps INTEGER NOT NULL,
    mode TEXT NOT NULL,
    episodes INTEGER,
    return_mean REAL,
    ci_low REAL,
    ci_high REAL,
    success_rate REAL,
    checkpoint TEXT,
    time TEXT NOT NULL,
    PRIMARY KEY (run, kind, env_steps, mode)
)
"""
MODES = ("greedy", "sampled")


def append_eval(run_dir: str | os.PathLike[str], record: Mapping[str, Any]) -> dict[str, Any]:
    """Append one evaluation record to the run's ``evals.jsonl`` and index it; return it as stored."""
    run_dir = Path(run_dir)
    stored = jsonable({**record, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    path = run_dir / EVALS_FILE
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(stored, allow_nan=False) + "\n")
    except OSError as e:
        raise RunStoreError(f"cannot append to {path}: {e.strerror or e}") from e
    _index(run_dir, stored)
    return stored


def read_evals(run_dir: str | os.PathLike[str], kind: str | None = None) -> list[dict[str, Any]]:
    """The run's evaluation records, oldest first (``kind`` filters)."""
    records = read_jsonl(Path(run_dir) / EVALS_FILE)
    return [r for r in records if kind is None or r.get("kind") == kind]


def truncate_evals(run_dir: str | os.PathLike[str], env_steps: int) -> None:
    """On resume: keep only interval evaluations up to the checkpoint's step (no duplicates)."""
    from accord.store.atomic import atomic_write_text

    path = Path(run_dir) / EVALS_FILE
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if r.get("kind") != "interval" or r["env_steps"] <= env_steps]
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))


def _index(run_dir: Path, record: Mapping[str, Any]) -> None:
    db = run_dir.parent / INDEX_FILE
    try:
        conn = sqlite3.connect(db, timeout=30.0)
        try:
            with conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                for mode in MODES:
                    res = record.get(mode)
                    if not res:
                        continue
                    ci = res.get("ci") or [None, None]
                    conn.execute("INSERT OR REPLACE INTO evals VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                 (run_dir.name, record["kind"], int(record["env_steps"]), mode,
                                  res.get("episodes"), res.get("return_mean"), ci[0], ci[1],
                                  res.get("success_rate"), record.get("checkpoint"), record["time"]))
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise RunStoreError(f"cannot index evaluation in {db}: {e}") from e


def indexed_evals(root: str | os.PathLike[str], run: str | None = None) -> list[dict[str, Any]]:
    """Rows of the ``evals`` index table (of one run, or all)."""
    db = Path(root) / INDEX_FILE
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30.0)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(_SCHEMA)
        sql, args = "SELECT * FROM evals", ()
        if run is not None:
            sql, args = sql + " WHERE run = ?", (run,)
        return [dict(r) for r in conn.execute(sql + " ORDER BY run, env_steps", args).fetchall()]
    except sqlite3.Error as e:
        raise RunStoreError(f"cannot read evaluations from {db}: {e}") from e
    finally:
        conn.close()
