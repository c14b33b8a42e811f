"""Run store: each run is a folder of plain files, plus an SQLite index for listing runs.

``runs/<name>/`` holds ``config.yaml``, ``run.yaml`` (identity), ``metrics.jsonl``, ``tb/``,
``checkpoints/ckpt_<env_steps>.pt``, ``overrides.log``, ``flags.jsonl`` (raised flags) and, with
``logging.mlflow``, ``mlflow.json`` (the linked MLflow run); ``runs/index.sqlite`` lists the runs and
``runs/mlruns/`` is the default MLflow file store.
"""

from accord.store.atomic import atomic_write_bytes, atomic_write_text
from accord.store.checkpoint import (
    checkpoint_env_steps,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
    verify_checkpoint,
)
from accord.store.flags import FLAGS_FILE, append_flags, read_flags
from accord.store.index import STATUSES, RunIndex
from accord.store.metrics import RETURN_KEY, MetricsLog
from accord.store.run import RunDir, list_runs, resolve_checkpoint

__all__ = [
    "FLAGS_FILE",
    "RETURN_KEY",
    "STATUSES",
    "MetricsLog",
    "RunDir",
    "RunIndex",
    "append_flags",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_env_steps",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "list_runs",
    "load_checkpoint",
    "prune_checkpoints",
    "read_flags",
    "resolve_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "verify_checkpoint",
]
