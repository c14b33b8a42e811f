"""SQLite index of runs, for listing and comparing runs without walking every folder.

The index is derived data: the run folders are the record, and :meth:`RunIndex.rebuild` recreates the
index from them if the database is lost or corrupt. WAL mode and a busy timeout let several training
processes update it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from accord.errors import RunStoreError
from accord.store.metrics import RETURN_KEY, MetricsLog
from accord.store.run import list_runs

logger = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite"
STATUSES = ("running", "finished", "interrupted", "failed")
_BUSY_TIMEOUT_S = 30.0
_COLUMNS = (
    "path",
    "task",
    "algorithm",
    "status",
    "env_steps",
    "last_return",
    "created",
    "updated",
    "seed",
    "pid",
    "host",
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY,
    path TEXT,
    task TEXT,
    algorithm TEXT,
    status TEXT CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    env_steps INTEGER NOT NULL DEFAULT 0,
    last_return REAL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    seed INTEGER,
    pid INTEGER,
    host TEXT
)
"""


class RunIndex:
    """The ``<root>/index.sqlite`` table of runs; use as a context manager or call :meth:`close`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / INDEX_FILE
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunStoreError(f"cannot create run root {self.root}: {e.strerror or e}") from e
        with self._guard():
            self._conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
        self._conn.row_factory = sqlite3.Row
        try:
            with self._guard(), self._conn:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute(_SCHEMA)
        except RunStoreError:
            self._conn.close()
            raise

    def upsert(self, name: str, **fields: Any) -> None:
        """Insert or update run ``name``; ``status="running"`` records this process's pid and host."""
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown run index fields {sorted(unknown)}; known: {list(_COLUMNS)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {fields['status']!r}")
        if fields.get("status") == "running":
            fields.setdefault("pid", os.getpid())
            fields.setdefault("host", socket.gethostname())
        now = _now()
        fields.setdefault("updated", now)
        row = {"name": name, "created": now, **fields}
        # Column names come from _COLUMNS only, so formatting them into SQL is safe.
        sql = (
            f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
            f"ON CONFLICT(name) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in fields)}"
        )
        with self._guard(), self._conn:
            self._conn.execute(sql, tuple(row.values()))

    def get(self, name: str) -> dict[str, Any] | None:
        """The row of run ``name``, or None."""
        with self._guard():
            row = self._conn.execute("SELECT * FROM runs WHERE name = ?", (name,)).fetchone()
        return dict(row) if row is not None else None

    def list(self) -> list[dict[str, Any]]:
        """All runs, newest first."""
        with self._guard():
            rows = self._conn.execute("SELECT * FROM runs ORDER BY created DESC, rowid DESC").fetchall()
        return [dict(r) for r in rows]

    def reconcile(self) -> list[str]:
        """Mark 'running' runs of this host whose process is gone as 'interrupted'; return their names."""
        host = socket.gethostname()
        with self._guard():
            rows = self._conn.execute("SELECT name, pid, host FROM runs WHERE status = 'running'").fetchall()
        # Runs on other hosts sharing this folder cannot be checked from here.
        stale = [r["name"] for r in rows if r["host"] in (None, host) and not _pid_alive(r["pid"])]
        for name in stale:
            self.upsert(name, status="interrupted")
        return stale

    @classmethod
    def rebuild(cls, root: str | os.PathLike[str]) -> RunIndex:
        """Recreate the index from the run folders under ``root`` (run.yaml + last metrics).

        Whether a run finished cannot be told from its files, so rebuilt runs show as 'interrupted'
        (resumable); a run that is still training sets itself back to 'running' on its next update.
        """
        root = Path(root)
        for suffix in ("", "-wal", "-shm"):
            try:
                (root / f"{INDEX_FILE}{suffix}").unlink(missing_ok=True)
            except OSError as e:
                raise RunStoreError(f"cannot remove old run index in {root}: {e.strerror or e}") from e
        index = cls(root)
        for run in list_runs(root):
            try:
                meta = run.meta()
                records = MetricsLog.read(run.path)
            except RunStoreError as e:
                logger.warning("not indexing %s: %s", run.path, e)
                continue
            returns = [r[RETURN_KEY] for r in records if r.get(RETURN_KEY) is not None]
            index.upsert(
                run.name,
                path=str(run.path.resolve()),
                task=meta.get("task"),
                algorithm=meta.get("algorithm"),
                seed=meta.get("seed"),
                status="interrupted",
                env_steps=records[-1]["env_steps"] if records else 0,
                last_return=returns[-1] if returns else None,
                created=meta.get("created", _now()),
            )
        return index

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn sqlite errors into RunStoreError that says what to do."""
        try:
            yield
        except sqlite3.OperationalError as e:  # locked past the timeout, read-only, disk full...
            raise RunStoreError(f"cannot use run index {self.path}: {e}") from e
        except sqlite3.DatabaseError as e:  # not a database, malformed image
            raise RunStoreError(
                f"run index {self.path} is corrupt ({e}); rebuild it from the run folders with "
                f"`accord runs --root {self.root} --rebuild`"
            ) from e


def _pid_alive(pid: int | None) -> bool:
    if pid is None or pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) sends CTRL_C there; assume alive rather than interrupt it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
