"""One run's folder: where its config, metrics, TensorBoard events, checkpoints and overrides live.

``run.yaml`` records the run's identity (task, algorithm, seed, creation time) apart from
``config.yaml``, so the run index can be rebuilt from the folders alone whatever the config schema is.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from accord.errors import CheckpointError, RunStoreError
from accord.store.atomic import atomic_write_text
from accord.store.metrics import METRICS_FILE, TB_DIR

CONFIG_FILE = "config.yaml"
META_FILE = "run.yaml"
OVERRIDES_FILE = "overrides.log"
CHECKPOINTS_DIR = "checkpoints"

_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

PathLike = str | os.PathLike[str]
logger = logging.getLogger(__name__)


class RunDir:
    """Paths and small files of one run folder ``<root>/<name>/``."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tb_dir(self) -> Path:
        return self.path / TB_DIR

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def overrides_path(self) -> Path:
        return self.path / OVERRIDES_FILE

    @classmethod
    def create(
        cls,
        root: PathLike,
        *,
        config_dict: Mapping[str, Any],
        task: str,
        algorithm: str,
        seed: int,
        name: str | None = None,
    ) -> RunDir:
        """Make a new run folder and write its config; an explicit ``name`` that exists is refused.

        The default name is ``<task>__<algorithm>__<seed>__<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... on a
        same-second clash).
        """
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunStoreError(f"cannot create run root {root}: {e.strerror or e}") from e
        path = _claim_default(root, task, algorithm, seed) if name is None else _claim(root, name)
        run = cls(path)
        meta = {
            "name": run.name,
            "task": task,
            "algorithm": algorithm,
            "seed": seed,
            "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
        try:
            run.checkpoints_dir.mkdir()
            run.save_config(config_dict)
            atomic_write_text(run.meta_path, yaml.safe_dump(meta, sort_keys=False))
        except OSError as e:
            shutil.rmtree(path, ignore_errors=True)
            raise RunStoreError(f"cannot create run folder {path}: {e.strerror or e}") from e
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # no half-made run left to confuse resume
            raise
        return run

    @classmethod
    def open(cls, root: PathLike, name_or_path: PathLike) -> RunDir:
        """An existing run, by name under ``root`` or by path; a miss lists the closest names."""
        for path in (Path(root) / name_or_path, Path(name_or_path)):
            if (path / CONFIG_FILE).is_file():
                return cls(path)
        wanted = str(name_or_path)
        if (Path(root) / wanted).is_dir():
            raise RunStoreError(f"{Path(root) / wanted} is not a run folder (it has no {CONFIG_FILE})")
        names = [run.name for run in list_runs(root)]
        if not names:
            raise RunStoreError(f"no run {wanted!r}: there are no runs in {root}")
        close = difflib.get_close_matches(Path(wanted).name, names, n=5, cutoff=0.4) or names[-5:]
        raise RunStoreError(f"no run {wanted!r} in {root}; closest existing runs: {', '.join(close)}")

    def load_config(self) -> dict[str, Any]:
        """The run's effective config: as started, with the overrides of its resumes."""
        return _read_yaml(self.config_path)

    def save_config(self, config_dict: Mapping[str, Any]) -> None:
        """Replace the run's effective config atomically (e.g. a resume that extends the run)."""
        try:
            atomic_write_text(self.config_path, yaml.safe_dump(dict(config_dict), sort_keys=False))
        except OSError as e:
            raise RunStoreError(f"cannot write {self.config_path}: {e.strerror or e}") from e

    def meta(self) -> dict[str, Any]:
        """The run's identity: name, task, algorithm, seed and creation time."""
        return _read_yaml(self.meta_path)

    def log_overrides(self, overrides: Sequence[str]) -> None:
        """Append the CLI overrides given at this start or resume, one timestamped line each."""
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        try:
            with open(self.overrides_path, "a", encoding="utf-8") as f:
                f.writelines(f"{stamp}\t{override}\n" for override in overrides)
        except OSError as e:
            raise RunStoreError(f"cannot append to {self.overrides_path}: {e.strerror or e}") from e

    def clean_temp_files(self) -> int:
        """Delete temp files a kill left mid-write (``.<name>.*.tmp``, accord.store.atomic) in the run
        folder and its checkpoints/; only call this when no process writes the run (a resume)."""
        removed = 0
        for folder in (self.path, self.checkpoints_dir):
            if not folder.is_dir():
                continue
            for p in folder.glob(".*.tmp"):
                try:
                    p.unlink()
                    removed += 1
                except OSError as e:
                    logger.warning("cannot delete stale temp file %s: %s", p, e.strerror or e)
        if removed:
            logger.warning("%s: deleted %d temp file(s) left by an interrupted write", self.name, removed)
        return removed

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def list_runs(root: PathLike) -> list[RunDir]:
    """Run folders (those holding a config) directly under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [RunDir(p) for p in sorted(root.iterdir()) if (p / CONFIG_FILE).is_file()]


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a run folder's name (empty, blank, a path, '..'), or None."""
    if not name.strip():
        return "a run name cannot be empty or blank"
    if not _VALID_NAME.match(name) or ".." in name:
        return (f"invalid run name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter "
                "or digit (no '/' or '..')")
    return None


def _claim(root: Path, name: str) -> Path:
    problem = name_problem(name)
    if problem:
        raise RunStoreError(problem)
    path = root / name
    try:
        path.mkdir()
    except FileExistsError:
        raise RunStoreError(
            f"run {name!r} already exists in {root}; choose another name or resume it"
        ) from None
    except OSError as e:
        raise RunStoreError(f"cannot create run folder {path}: {e.strerror or e}") from e
    return path


def _claim_default(root: Path, task: str, algorithm: str, seed: int) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = "__".join(_UNSAFE_CHARS.sub("-", str(part)).strip("-") for part in (task, algorithm, seed, stamp))
    path, attempt = root / base, 1
    while True:
        try:
            path.mkdir()  # mkdir is atomic, so parallel launches never share a folder
            return path
        except FileExistsError:
            attempt += 1
            path = root / f"{base}-{attempt}"
        except OSError as e:
            raise RunStoreError(f"cannot create run folder {path}: {e.strerror or e}") from e


def _read_yaml(path: Path) -> dict[str, Any]:
    from accord.safe_yaml import load_file  # the config reader: same caps for files in a run folder

    data = load_file(path, RunStoreError)
    if not isinstance(data, dict):
        raise RunStoreError(f"{path} should hold a mapping, found {type(data).__name__}")
    return data


def resolve_checkpoint(source: PathLike, checkpoint: PathLike | None = None, root: PathLike = "runs") -> Path:
    """The checkpoint file meant by ``source`` (a checkpoint file, a run folder or a run name under
    ``root``) and ``checkpoint`` (a path, a file name in the run, or an env-step count; default: the
    newest that verifies)."""
    from accord.store.checkpoint import checkpoint_path, latest_checkpoint, list_checkpoints

    if checkpoint is None and Path(source).is_file():
        return Path(source)
    run = RunDir.open(root, source)
    if checkpoint is None:
        found = latest_checkpoint(run.checkpoints_dir)
        if found is None:
            raise CheckpointError(f"run {run.name} has no usable checkpoint in {run.checkpoints_dir}")
        return found
    text = str(checkpoint)
    for path in (Path(text), run.checkpoints_dir / text):
        if path.is_file():
            return path
    if text.isdigit() and checkpoint_path(run.checkpoints_dir, int(text)).is_file():
        return checkpoint_path(run.checkpoints_dir, int(text))
    found_names = ", ".join(p.name for p in list_checkpoints(run.checkpoints_dir)) or "none"
    raise CheckpointError(f"no checkpoint '{text}' in run {run.name}; available: {found_names}")
