"""A run's metric history: ``metrics.jsonl`` is the record, TensorBoard a mirror for viewing.

One JSON object per line, flushed as written, so a killed run loses at most its last, half-written line;
readers drop that line with a warning. Non-finite numbers become ``null`` so every line stays valid JSON
for any parser. On resume, :meth:`MetricsLog.truncate_after` cuts history back to the checkpoint so the
resumed run neither duplicates nor skips steps.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from accord.errors import RunStoreError
from accord.store.atomic import atomic_write_text

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
# The metric a run listing shows as the run's latest return.
RETURN_KEY = "return_mean"


class MetricsLog:
    """Appends metric records of one run; use as a context manager or call :meth:`close`."""

    def __init__(self, run_dir: str | os.PathLike[str], *, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.tb_dir = self.run_dir / TB_DIR
        self._tensorboard = tensorboard
        self._file: TextIO | None = None
        self._writer: SummaryWriter | None = None
        self._purge_step: int | None = None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (must hold ``env_steps``) and mirror its numeric scalars to TensorBoard."""
        if "env_steps" not in record:
            raise ValueError(f"metric record needs 'env_steps': {dict(record)!r}")
        clean = {str(k): jsonable(v) for k, v in record.items()}
        line = json.dumps(clean, allow_nan=False) + "\n"
        try:
            f = self._open()
            f.write(line)
            f.flush()
        except OSError as e:
            self._close_file()  # the next write reopens and cuts off any partial line
            raise RunStoreError(f"cannot append to {self.path}: {e.strerror or e}") from e
        if self._tensorboard:
            self._mirror(clean)

    @staticmethod
    def read(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """All records of a run; a torn last line (killed writer) is dropped with a warning."""
        return read_jsonl(Path(run_dir) / METRICS_FILE)

    def truncate_after(self, env_steps: int) -> int:
        """Keep only records with ``env_steps <= env_steps`` (atomically); return how many were dropped."""
        self.close()  # the rewrite replaces the file; an open handle would append to the old one
        records = self.read(self.run_dir)
        kept = [r for r in records if r["env_steps"] <= env_steps]
        atomic_write_text(self.path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
        # TensorBoard hides events at or after this step from earlier event files.
        self._purge_step = env_steps + 1
        return len(records) - len(kept)

    def close(self) -> None:
        """Close the file and flush TensorBoard events to disk."""
        self._close_file()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> TextIO:
        if self._file is None:
            self._drop_torn_tail()
            self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        return self._file

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _drop_torn_tail(self) -> None:
        """Cut a half-written last line so the next record does not get glued onto it."""
        try:
            with open(self.path, "rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    logger.warning("dropping torn last line of %s (the writer was interrupted)", self.path)
                    f.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    def _mirror(self, record: dict[str, Any]) -> None:
        step = record["env_steps"]
        scalars = {
            k: v
            for k, v in record.items()
            if k != "env_steps" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if not scalars:
            return
        if self._writer is None:
            # Imported here: tensorboard is slow to import and only needed once something is logged.
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.tb_dir), purge_step=self._purge_step)
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, global_step=step)


def jsonable(value: Any) -> Any:
    """Plain JSON value: NaN/inf -> None, 0-d tensors and numpy scalars -> Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):
        return jsonable(value.item())
    raise TypeError(f"metric value {value!r} of type {type(value).__name__} is not a number, str or list")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file (none if it does not exist); a torn last line is dropped with a warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RunStoreError(f"cannot read {path}: {e.strerror or e}") from e
    lines = text.split("\n")
    if lines[-1]:  # every complete record ends with a newline
        logger.warning("dropping torn last line of %s (the writer was interrupted)", path)
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RunStoreError(f"{path} line {number} is not valid JSON ({e}); fix or delete that line") from e
    return records
