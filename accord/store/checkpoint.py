"""Checkpoint files: a checksummed ``torch.save`` payload that is only ever loaded with ``weights_only``.

Layout: ``MAGIC | format version (u32) | sha256(body) | len(body) (u64) | body``. The magic tells our
files apart from any other ``.pt`` file and the checksum catches corrupt or truncated files before torch
parses them, so a bad file gives a one-line error naming it instead of a pickle traceback. Loading never
unpickles arbitrary objects, so opening a checkpoint from someone else cannot run their code.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import random
import re
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.errors import CheckpointError, RunStoreError
from accord.store.atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

MAGIC = b"ACCORD-CHECKPOINT\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(f">{len(MAGIC)}sI")  # magic, version: the same in every format version
_HEADER_V1 = struct.Struct(">32sQ")  # sha256 of body, body length
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")

# Exactly what weights_only loading accepts; subclasses such as numpy.float64 would save but not load.
_LEAF_TYPES = (int, float, bool, str, type(None))
_MAP_TYPES = (dict, OrderedDict)
_SEQ_TYPES = (list, tuple)

PathLike = str | os.PathLike[str]


def checkpoint_path(directory: PathLike, env_steps: int) -> Path:
    """``<directory>/ckpt_<env_steps>.pt``, zero-padded so a directory listing sorts by progress."""
    return Path(directory) / f"ckpt_{env_steps:012d}.pt"


def save_checkpoint(path: PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically with magic, version and checksum; raise TypeError on unloadable types."""
    _check_payload(payload, "payload")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = _PREFIX.pack(MAGIC, FORMAT_VERSION) + _HEADER_V1.pack(hashlib.sha256(body).digest(), len(body))
    path = Path(path)
    atomic_write_bytes(path, header + body)
    return path


def load_checkpoint(path: PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify and load a checkpoint; any problem with the file raises CheckpointError."""
    path = Path(path)
    body = _read_body(path)
    try:
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as e:
        text = str(e)
        if isinstance(e, pickle.UnpicklingError) and ("Unsupported global" in text or "weights_only" in text
                                                      or "Unsupported operand" in text):
            raise CheckpointError(
                f"checkpoint {path} refused: the file holds objects that are not plain tensors "
                "(tampered or foreign); nothing in it was run"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} passed its checksum but torch cannot load it ({_first_line(e)}); "
            "it was probably written with an incompatible torch version"
        ) from e


def verify_checkpoint(path: PathLike) -> None:
    """Check magic, version and checksum without deserializing; raise CheckpointError if bad."""
    _read_body(Path(path))


def list_checkpoints(directory: PathLike) -> list[Path]:
    """Checkpoint files in ``directory``, oldest (fewest env steps) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_env_steps(path: PathLike) -> int:
    """The env-step count in a checkpoint's file name (``ckpt_<env_steps>.pt``)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise CheckpointError(f"{path} is not named like a checkpoint (ckpt_<env_steps>.pt)")
    return int(match.group(1))


def latest_checkpoint(directory: PathLike) -> Path | None:
    """Newest checkpoint that verifies; corrupt newer ones (e.g. from a crash) are skipped with a warning."""
    for path in reversed(list_checkpoints(directory)):
        try:
            verify_checkpoint(path)
        except CheckpointError as e:
            logger.warning("skipping unusable checkpoint: %s", e)
            continue
        return path
    return None


def prune_checkpoints(directory: PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints; return the deleted paths."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    stale = list_checkpoints(directory)[:-keep]
    for path in stale:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise RunStoreError(f"cannot delete old checkpoint {path}: {e.strerror or e}") from e
    return stale


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy-global and ``random`` states, as types that survive weights_only."""
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {
            "version": py_version,
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured, so a resumed run draws the same random numbers."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["internal"].tolist()), py_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        # A resume on fewer GPUs restores the ones that exist.
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"][: torch.cuda.device_count()]])


def _read_body(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):  # empty, or cut off inside the magic
            raise _corrupt(path, "truncated")
        raise CheckpointError(f"not an accord checkpoint: {path}")
    if len(data) < _PREFIX.size:
        raise _corrupt(path, "truncated")
    _, version = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version} but this accord reads version "
            f"{FORMAT_VERSION}; load it with the accord version that wrote it"
        )
    if len(data) < _PREFIX.size + _HEADER_V1.size:
        raise _corrupt(path, "truncated")
    digest, length = _HEADER_V1.unpack_from(data, _PREFIX.size)
    body = data[_PREFIX.size + _HEADER_V1.size :]
    if len(body) != length:
        raise _corrupt(path, f"size mismatch: {len(body)} body bytes, expected {length}")
    if hashlib.sha256(body).digest() != digest:
        raise _corrupt(path, "checksum mismatch")
    return body


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _corrupt(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is corrupt ({reason}); use an earlier checkpoint in {path.parent}"
    )


def _check_payload(value: Any, where: str) -> None:
    """Fail at save time rather than at resume: only these types load under weights_only."""
    if type(value) in _MAP_TYPES:
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where} has a {type(key).__name__} key; checkpoint keys must be str or int")
            _check_payload(item, f"{where}[{key!r}]")
    elif type(value) in _SEQ_TYPES:
        for i, item in enumerate(value):
            _check_payload(item, f"{where}[{i}]")
    elif not (isinstance(value, torch.Tensor) or type(value) in _LEAF_TYPES):
        raise TypeError(
            f"{where} is a {type(value).__name__}; checkpoints hold only tensors, int, float, bool, str, "
            "None and dicts/lists/tuples of them"
        )
