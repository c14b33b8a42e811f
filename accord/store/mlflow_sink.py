"""MLflow mirror of a run (``logging.mlflow: true``): params, metrics, checkpoints and other artifacts.

``metrics.jsonl`` stays the record; MLflow is a mirror for browsing and comparing runs. By default the
mirror is a file store next to the runs (``<runs_dir>/mlruns``), else any tracking URI
(``logging.mlflow_uri``). The accord run folder keeps the MLflow run id in ``mlflow.json``, so a resumed
run continues the same MLflow run; a run that turns MLflow on later (or points it at another store) gets
a new MLflow run, back-filled with its metric history.

Everything is sent from one background thread, so a slow or unreachable tracking server never stalls
or kills training: the first failure is one warning, later writes are skipped and counted, and
:meth:`MlflowSink.close` reports the count. mlflow itself is an optional extra, imported only here.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from accord.store.atomic import atomic_write_text
from accord.store.metrics import numeric_scalars

logger = logging.getLogger(__name__)

MLFLOW_FILE = "mlflow.json"
STORE_DIR = "mlruns"
INSTALL_HINT = "pip install 'accord[mlflow]'"
# Tracking URI schemes MLflow itself understands; plugins add theirs through the entry point group below.
BUILTIN_SCHEMES = ("file", "http", "https", "databricks", "databricks-uc", "uc", "sqlite", "postgresql",
                   "mysql", "mssql")
PLUGIN_GROUP = "mlflow.tracking_store"
# accord statuses -> MLflow run statuses.
RUN_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED", "running": "RUNNING"}
# MLflow limits (mlflow.utils.validation).
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_MAX_PARAM_LEN = 6000
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /]")
# How long close() waits for the last uploads before leaving them to the (daemon) sender thread.
CLOSE_TIMEOUT_S = 60.0


def mlflow_installed() -> bool:
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def mlflow_problems(enabled: bool, uri: str | None) -> list[str]:
    """Config-load checks of the ``logging`` section's MLflow keys, one line per problem."""
    problems = []
    if enabled and not mlflow_installed():
        problems.append(f"logging.mlflow: true needs the mlflow package; install it with {INSTALL_HINT}")
    if uri is not None:
        scheme = _scheme(uri)
        allowed = known_schemes()
        if scheme and scheme.split("+")[0] not in allowed:
            problems.append(f"logging.mlflow_uri: unknown scheme '{scheme}' in {uri!r}; allowed: a path or "
                            f"{', '.join(s + ':' for s in allowed)}")
    return problems


def known_schemes() -> list[str]:
    """MLflow's own tracking URI schemes plus those of installed tracking-store plugins."""
    from importlib.metadata import entry_points

    try:
        plugins = [ep.name for ep in entry_points(group=PLUGIN_GROUP)]
    except Exception:  # a broken plugin's metadata must not break config loading
        plugins = []
    return list(BUILTIN_SCHEMES) + sorted(set(plugins) - set(BUILTIN_SCHEMES))


def resolve_uri(uri: str | None, runs_root: str | os.PathLike[str]) -> str:
    """The tracking URI to use: ``None`` -> ``file:`` URI of ``<runs_root>/mlruns``; paths -> ``file:`` URIs."""
    if uri is None:
        return Path(runs_root, STORE_DIR).resolve().as_uri()
    if not _scheme(uri):
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"ppo": {"lr": 0.1}}`` -> ``{"ppo.lr": "0.1"}``; non-strings as JSON (true, null, [1, 2])."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            flat[name] = text[:_MAX_PARAM_LEN]
    return flat


def metric_key(key: str) -> str:
    """A metric name MLflow accepts (letters, digits, ``_ - . /`` and spaces)."""
    return _BAD_KEY_CHARS.sub("_", key)


def read_link(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The MLflow run an accord run folder is linked to (``mlflow.json``), or None."""
    path = Path(run_dir) / MLFLOW_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        logger.warning("ignoring unreadable %s (%s); a new MLflow run will be started", path, e)
        return None
    return data if isinstance(data, dict) and "run_id" in data and "tracking_uri" in data else None


class MlflowSink:
    """Mirrors one accord run into one MLflow run; every call returns at once (a thread does the sending).

    ``backfill`` holds earlier records of the run (metrics.jsonl) to send first; it is only used when a
    new MLflow run is created, since a continued MLflow run already has them.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, uri: str | None, experiment: str | None,
                 params: Mapping[str, Any] | None, backfill: Iterable[Mapping[str, Any]] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.uri = resolve_uri(uri, self.run_dir.parent)
        task = (params or {}).get("task", {})
        self.experiment = experiment or (task.get("name") if isinstance(task, Mapping) else None) or "accord"
        self.params = flatten_params(params or {})
        link = read_link(self.run_dir)
        self.continued = link is not None and link["tracking_uri"] == self.uri
        if link is not None and not self.continued:
            logger.warning("%s: MLflow now logs to %s, not %s; starting a new MLflow run there",
                           self.run_dir.name, self.uri, link["tracking_uri"])
        self.run_id: str | None = link["run_id"] if self.continued else None
        self.failures = 0  # writes that failed or were skipped after the first failure
        self._error: str | None = None
        self._artifact_uri: str | None = None
        self._client: Any = None
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._closed = False
        self._queue.put(("start",))
        if not self.continued:
            for record in backfill:
                self.log_metrics(record)
        self._thread = threading.Thread(target=self._work, name=f"mlflow-{self.run_dir.name}", daemon=True)
        self._thread.start()

    # -- called by the training loop (never blocks on the network) --------------------------------

    def log_metrics(self, record: Mapping[str, Any], timestamp_ms: int | None = None) -> None:
        """Queue the numeric scalars of a record at step ``record['env_steps']``."""
        scalars = numeric_scalars(record)
        if scalars and not self._closed:
            self._queue.put(("metrics", int(record["env_steps"]), scalars, timestamp_ms or _now_ms()))

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None, *,
                     mirror: bool = False) -> None:
        """Queue an upload of a file or folder; ``mirror`` also deletes files under ``artifact_path``
        that are gone from the local file's folder (pruned checkpoints)."""
        if not self._closed:
            self._queue.put(("artifact", Path(path), artifact_path, mirror))

    def close(self, status: str = "finished", timeout: float = CLOSE_TIMEOUT_S) -> None:
        """End the MLflow run with the accord ``status`` and wait (up to ``timeout`` s) for the uploads."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(("end", RUN_STATUS.get(status, "FINISHED")))
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("MLflow (%s) is still sending after %.0f s; leaving %d queued writes unsent",
                           self.uri, timeout, self._queue.qsize())
        elif self.failures:
            logger.warning("MLflow: %d writes to %s failed or were skipped (first error: %s); metrics.jsonl "
                           "and checkpoints/ in %s have everything", self.failures, self.uri, self._error,
                           self.run_dir)

    # -- sender thread ----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                return
            if self._error is not None:
                self.failures += 1
                continue
            try:
                getattr(self, "_do_" + op[0])(*op[1:])
            except Exception as e:  # anything MLflow or the network raises: warn once, keep training
                self.failures += 1
                self._error = _one_line(e)
                logger.warning("MLflow logging to %s failed (%s); training goes on, further MLflow writes "
                               "are skipped and counted", self.uri, self._error)

    def _do_start(self) -> None:
        from mlflow.tracking import MlflowClient

        if _scheme(self.uri) == "file":
            # MLflow 3 keeps its file store only on request; it is the zero-setup default here.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is not None:
            run = client.get_run(self.run_id)
            client.update_run(self.run_id, status="RUNNING")
            old = run.data.params
            new = [(k, v) for k, v in self.params.items() if k not in old]
            self._log_params(client, new)
            for key, value in self.params.items():
                if key in old and old[key] != value:  # params are immutable in MLflow: note the override
                    client.set_tag(self.run_id, f"accord.override.{key}", value)
        else:
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                try:
                    exp_id = client.create_experiment(self.experiment)
                except Exception:  # another run created it meanwhile
                    exp = client.get_experiment_by_name(self.experiment)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
            run = client.create_run(exp_id, run_name=self.run_dir.name,
                                    tags={"accord.run": self.run_dir.name, "accord.run_dir": str(self.run_dir)})
            self.run_id = run.info.run_id
            self._log_params(client, list(self.params.items()))
            link = {"tracking_uri": self.uri, "experiment": self.experiment, "experiment_id": exp_id,
                    "run_id": self.run_id}
            atomic_write_text(self.run_dir / MLFLOW_FILE, json.dumps(link, indent=2) + "\n")
        self._artifact_uri = run.info.artifact_uri
        self._client = client

    def _log_params(self, client: Any, items: list[tuple[str, str]]) -> None:
        from mlflow.entities import Param

        for i in range(0, len(items), _PARAMS_PER_BATCH):
            client.log_batch(self.run_id, params=[Param(k, v) for k, v in items[i:i + _PARAMS_PER_BATCH]])

    def _do_metrics(self, step: int, scalars: dict[str, float], timestamp_ms: int) -> None:
        from mlflow.entities import Metric

        # Batch everything already queued behind this record into as few requests as possible.
        metrics = [Metric(metric_key(k), float(v), timestamp_ms, step) for k, v in scalars.items()]
        while len(metrics) < _METRICS_PER_BATCH:
            try:
                op = self._queue.queue[0]
            except IndexError:
                break
            if op is None or op[0] != "metrics":
                break
            _, step, scalars, timestamp_ms = self._queue.get_nowait()
            metrics += [Metric(metric_key(k), float(v), timestamp_ms, step) for k, v in scalars.items()]
        for i in range(0, len(metrics), _METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=metrics[i:i + _METRICS_PER_BATCH])

    def _do_artifact(self, path: Path, artifact_path: str | None, mirror: bool) -> None:
        try:
            if path.is_dir():
                self._client.log_artifacts(self.run_id, str(path), artifact_path)
            else:
                self._client.log_artifact(self.run_id, str(path), artifact_path)
        except FileNotFoundError:  # pruned before its turn came: a newer checkpoint is on its way
            logger.debug("MLflow: %s vanished before upload", path)
            return
        if mirror and artifact_path:
            self._prune(path.parent, artifact_path)

    def _prune(self, local_dir: Path, artifact_path: str) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        local = {p.name for p in local_dir.iterdir()}
        stale = [f.path for f in self._client.list_artifacts(self.run_id, artifact_path)
                 if not f.is_dir and Path(f.path).name not in local]
        if stale:
            repo = get_artifact_repository(self._artifact_uri)
            for name in stale:
                repo.delete_artifacts(name)

    def _do_end(self, status: str) -> None:
        self._client.set_terminated(self.run_id, status=status)


def log_artifacts(path: str | os.PathLike[str], artifact_path: str | None = None, *,
                  run_dir: str | os.PathLike[str] | None = None) -> bool:
    """Upload a file or folder (an export bundle, a report) to the MLflow run of an accord run.

    ``run_dir`` is the accord run folder; by default the nearest folder at or above ``path`` that holds
    ``mlflow.json``. Returns True when uploaded, False (with a warning on failure) when the run has no
    MLflow run or MLflow cannot be reached; it never raises for MLflow's sake.
    """
    path = Path(path)
    if run_dir is None:
        candidates = [path, *path.resolve().parents] if path.is_dir() else list(path.resolve().parents)
        run_dir = next((d for d in candidates if (d / MLFLOW_FILE).is_file()), None)
        if run_dir is None:
            logger.debug("no %s at or above %s: not logged to MLflow", MLFLOW_FILE, path)
            return False
    link = read_link(run_dir)
    if link is None:
        logger.debug("%s has no MLflow run: %s not logged", run_dir, path)
        return False
    if not path.exists():
        raise FileNotFoundError(f"cannot log {path} to MLflow: it does not exist")
    if not mlflow_installed():
        logger.warning("%s is linked to MLflow but mlflow is not installed (%s); %s not logged",
                       run_dir, INSTALL_HINT, path)
        return False
    try:
        from mlflow.tracking import MlflowClient

        if _scheme(link["tracking_uri"]) == "file":
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=link["tracking_uri"])
        if path.is_dir():
            client.log_artifacts(link["run_id"], str(path), artifact_path)
        else:
            client.log_artifact(link["run_id"], str(path), artifact_path)
    except Exception as e:
        logger.warning("MLflow: cannot log %s to run %s at %s (%s)", path, link["run_id"],
                       link["tracking_uri"], _one_line(e))
        return False
    return True


def mlflow_status_from_exception() -> str:
    """The accord status of a run whose metrics are closed now: from the exception being handled, if any."""
    exc = sys.exc_info()[0]
    if exc is None:
        return "finished"
    return "interrupted" if issubclass(exc, KeyboardInterrupt) else "failed"


def _scheme(uri: str) -> str:
    scheme = urlparse(uri).scheme
    return "" if len(scheme) == 1 else scheme  # 'C:\\runs' is a Windows path, not scheme 'c'


def _now_ms() -> int:
    return int(time.time() * 1000)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
