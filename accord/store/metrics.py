"""A run's metric history: ``metrics.jsonl`` is the record, TensorBoard and MLflow mirrors for viewing.

One JSON object per line, flushed as written, so a killed run loses at most its last, half-written line;
readers drop that line with a warning. Non-finite numbers become ``null`` so every line stays valid JSON
for any parser. On resume, :meth:`MetricsLog.truncate_after` cuts history back to the checkpoint so the
resumed run neither duplicates nor skips steps.

The sinks follow the run's ``logging`` config section: TensorBoard (``tb/``) unless turned off, MLflow
(:mod:`accord.store.mlflow_sink`) when turned on, which also receives the checkpoints given to
:meth:`MetricsLog.log_checkpoint`.
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

    from accord.config import LoggingConfig
    from accord.store.mlflow_sink import MlflowSink

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
# The metric a run listing shows as the run's latest return.
RETURN_KEY = "return_mean"


class MetricsLog:
    """Appends metric records of one run; use as a context manager or call :meth:`close`.

    ``logging`` (the config's ``logging`` section) picks the mirrors; without it only TensorBoard, as
    ``tensorboard`` says. ``params`` is the resolved config (a plain dict), logged as MLflow params.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, tensorboard: bool = True,
                 logging: LoggingConfig | None = None, params: Mapping[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.tb_dir = self.run_dir / TB_DIR
        self._tensorboard = logging.tensorboard if logging is not None else tensorboard
        self._logging = logging
        self._params = params
        self._file: TextIO | None = None
        self._writer: SummaryWriter | None = None
        self._purge_step: int | None = None
        self._mlflow: MlflowSink | None = None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (must hold ``env_steps``) and mirror its numeric scalars to TensorBoard."""
        if "env_steps" not in record:
            raise ValueError(f"metric record needs 'env_steps': {dict(record)!r}")
        clean = {str(k): jsonable(v) for k, v in record.items()}
        line = json.dumps(clean, allow_nan=False) + "\n"
        sink = self._mlflow_sink()  # started before the append, so its back-fill does not hold this record
        try:
            f = self._open()
            f.write(line)
            f.flush()
        except OSError as e:
            self._close_file()  # the next write reopens and cuts off any partial line
            raise RunStoreError(f"cannot append to {self.path}: {e.strerror or e}") from e
        if self._tensorboard:
            self._mirror(clean)
        if sink is not None:
            sink.log_metrics(clean)

    def log_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """A checkpoint was written (and old ones pruned): mirror it to MLflow under ``checkpoints/``."""
        sink = self._mlflow_sink()
        if sink is not None:
            sink.log_artifact(path, "checkpoints", mirror=True)

    @property
    def mlflow_failures(self) -> int:
        """MLflow writes that failed or were skipped after a failure (0 without MLflow)."""
        return self._mlflow.failures if self._mlflow is not None else 0

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run this run is mirrored to, once known."""
        return self._mlflow.run_id if self._mlflow is not None else None

    @staticmethod
    def read(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """All records of a run; a torn last line (killed writer) is dropped with a warning."""
        return read_jsonl(Path(run_dir) / METRICS_FILE)

    def truncate_after(self, env_steps: int) -> int:
        """Keep only records with ``env_steps <= env_steps`` (atomically); return how many were dropped."""
        self._close_file()  # the rewrite replaces the file; an open handle would append to the old one
        self._close_writer()
        records = self.read(self.run_dir)
        kept = [r for r in records if isinstance(r.get("env_steps"), int) and r["env_steps"] <= env_steps]
        atomic_write_text(self.path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
        # TensorBoard hides events at or after this step from earlier event files.
        self._purge_step = env_steps + 1
        return len(records) - len(kept)

    def close(self, status: str | None = None) -> None:
        """Close the file, flush TensorBoard events and end the MLflow run with the accord ``status``
        (finished, interrupted, failed; default: from the exception being handled, if any)."""
        self._close_file()
        self._close_writer()
        if self._mlflow is not None:
            from accord.store.mlflow_sink import mlflow_status_from_exception

            self._mlflow.close(status or mlflow_status_from_exception())
            self._mlflow = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> TextIO:
        if self._file is None:
            self._drop_torn_tail()
            self._file = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        return self._file

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _mlflow_sink(self) -> MlflowSink | None:
        """The MLflow mirror, started at the first write or checkpoint (after any resume truncation)."""
        if self._mlflow is None and self._logging is not None and self._logging.mlflow:
            from accord.store.mlflow_sink import MlflowSink

            self._mlflow = MlflowSink(self.run_dir, uri=self._logging.mlflow_uri,
                                      experiment=self._logging.mlflow_experiment, params=self._params,
                                      backfill=self.read(self.run_dir))
        return self._mlflow

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
        scalars = numeric_scalars(record)
        if not scalars:
            return
        if self._writer is None:
            # Imported here: tensorboard is slow to import and only needed once something is logged.
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.tb_dir), purge_step=self._purge_step)
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, global_step=step)


def numeric_scalars(record: Mapping[str, Any]) -> dict[str, int | float]:
    """The numbers of a (jsonable) record other than ``env_steps`` and booleans: what the mirrors plot."""
    return {k: v for k, v in record.items()
            if k != "env_steps" and isinstance(v, (int, float)) and not isinstance(v, bool)}


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
    complete = [(number, line) for number, line in enumerate(lines[:-1], start=1) if line.strip()]
    records = []
    for i, (number, line) in enumerate(complete):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a {type(record).__name__}, not a record")
        except ValueError as e:  # JSONDecodeError is a ValueError
            if i == len(complete) - 1:  # the last line: a crash mid-write (or garbage after it), dropped
                logger.warning("dropping corrupt last line %d of %s (%s); 1 line dropped", number, path, e)
                read_jsonl.dropped += 1  # type: ignore[attr-defined]
                break
            raise RunStoreError(f"{path} line {number} is not a valid JSON record ({e}); fix or delete "
                                "that line") from None
        records.append(record)
    return records


read_jsonl.dropped = 0  # type: ignore[attr-defined]  # corrupt last lines dropped in this process
