"""Run store: crash-safe writes, checkpoint integrity, metrics history and the run index."""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from accord.errors import CheckpointError, RunStoreError
from accord.store import (
    MetricsLog,
    RunDir,
    RunIndex,
    atomic_write_text,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from accord.store import checkpoint as checkpoint_module

# --- atomic writes ---------------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_atomic_write_keeps_old_file(tmp_path, monkeypatch, failing):
    target = tmp_path / "config.yaml"
    atomic_write_text(target, "old")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(RunStoreError, match=r"config\.yaml: No space left on device"):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # temp file removed


def test_atomic_write_into_missing_dir_is_a_run_store_error(tmp_path):
    with pytest.raises(RunStoreError, match="cannot write"):
        atomic_write_text(tmp_path / "missing" / "f.txt", "x")


# --- checkpoints -----------------------------------------------------------------------------


def _training_payload(env_steps: int = 1000) -> tuple[dict, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 4)).sum().backward()
    optim.step()
    payload = {
        "model": model.state_dict(),
        "optim": optim.state_dict(),
        "rng": rng_state(),
        "env_steps": env_steps,
        "extra": {"name": "mappo", "done": False, "best": None, "lr": 1e-3, "shape": (2, 3)},
    }
    return payload, model, optim


def test_checkpoint_round_trip_restores_model_optimizer_and_rng(tmp_path):
    payload, model, optim = _training_payload()
    path = save_checkpoint(checkpoint_path(tmp_path, 1000), payload)
    assert path.name == "ckpt_000000001000.pt"
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    loaded = load_checkpoint(path)
    assert loaded["env_steps"] == 1000 and loaded["extra"] == payload["extra"]
    fresh = torch.nn.Linear(4, 3)
    fresh.load_state_dict(loaded["model"])
    for a, b in zip(fresh.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    fresh_optim = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh_optim.load_state_dict(loaded["optim"])
    for a, b in zip(
        fresh_optim.state_dict()["state"].values(), optim.state_dict()["state"].values(), strict=True
    ):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])

    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]


def test_payload_with_unloadable_type_is_refused_at_save(tmp_path):
    with pytest.raises(TypeError, match=r"payload\['stats'\]\['mean'\] is a float64"):
        save_checkpoint(tmp_path / "c.pt", {"stats": {"mean": np.float64(1.0)}})


def _saved(tmp_path, env_steps: int = 100):
    return save_checkpoint(checkpoint_path(tmp_path, env_steps), {"w": torch.arange(1000.0)})


def test_flipped_byte_is_reported_corrupt(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"is corrupt \(checksum mismatch\); use an earlier checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep_fraction", [0.5, 0.01, 0.0])
def test_truncated_file_is_reported_corrupt(tmp_path, keep_fraction):
    path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(CheckpointError, match="is corrupt"):
        load_checkpoint(path)


def test_foreign_torch_file_is_not_an_accord_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="not an accord checkpoint"):
        load_checkpoint(path)


def test_random_bytes_are_not_an_accord_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="not an accord checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_newer_format_version_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "FORMAT_VERSION", 2)
    path = _saved(tmp_path)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="format version 2"):
        load_checkpoint(path)


def test_latest_checkpoint_skips_corrupt_newest(tmp_path, caplog):
    for steps in (100, 200, 3000):
        _saved(tmp_path, steps)
    newest = checkpoint_path(tmp_path, 3000)
    newest.write_bytes(newest.read_bytes()[:50])
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 200)
    assert "is corrupt" in caplog.text
    assert latest_checkpoint(tmp_path / "empty") is None


def test_prune_keeps_newest(tmp_path):
    for steps in (5, 40, 300, 2000):
        _saved(tmp_path, steps)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    removed = prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["ckpt_000000000005.pt", "ckpt_000000000040.pt"]
    assert list_checkpoints(tmp_path) == [checkpoint_path(tmp_path, 300), checkpoint_path(tmp_path, 2000)]
    assert (tmp_path / "notes.txt").exists()


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_nan_and_inf_are_written_as_valid_json(tmp_path):
    with MetricsLog(tmp_path, tensorboard=False) as log:
        log.write({"env_steps": 1, "loss": float("nan"), "grad": float("inf"), "ret": torch.tensor(2.5)})

    def reject(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    line = (tmp_path / "metrics.jsonl").read_text().splitlines()[0]
    assert json.loads(line, parse_constant=reject) == {"env_steps": 1, "loss": None, "grad": None, "ret": 2.5}


def test_metrics_record_needs_env_steps(tmp_path):
    with MetricsLog(tmp_path, tensorboard=False) as log, pytest.raises(ValueError, match="env_steps"):
        log.write({"loss": 1.0})


def test_torn_last_line_is_dropped_and_repaired(tmp_path, caplog):
    with MetricsLog(tmp_path, tensorboard=False) as log:
        for steps in (10, 20, 30):
            log.write({"env_steps": steps, "x": 1.0})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"env_steps": 40, "x": 1.')  # killed mid-write
    with caplog.at_level(logging.WARNING):
        assert [r["env_steps"] for r in MetricsLog.read(tmp_path)] == [10, 20, 30]
    assert "torn last line" in caplog.text
    with MetricsLog(tmp_path, tensorboard=False) as log:  # a resumed writer cuts the fragment off
        log.write({"env_steps": 40, "x": 2.0})
    assert [r["env_steps"] for r in MetricsLog.read(tmp_path)] == [10, 20, 30, 40]


def test_truncate_after_resumes_without_duplicates(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for steps in (10, 20, 30, 40, 50):
        log.write({"env_steps": steps})
    assert log.truncate_after(30) == 2
    log.write({"env_steps": 40})
    log.close()
    assert [r["env_steps"] for r in MetricsLog.read(tmp_path)] == [10, 20, 30, 40]


def test_metrics_are_mirrored_to_tensorboard(tmp_path):
    with MetricsLog(tmp_path) as log:
        log.write({"env_steps": 100, "return_mean": 1.5, "phase": "train"})
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


# --- run folders -----------------------------------------------------------------------------


def _make_run(root, seed=0, name=None, steps=(100, 200), ret=1.0) -> RunDir:
    run = RunDir.create(
        root,
        config_dict={"schema_version": 1, "algo": {"lr": 3e-4}},
        task="spread",
        algorithm="mappo",
        seed=seed,
        name=name,
    )
    with MetricsLog(run.path, tensorboard=False) as log:
        for s in steps:
            log.write({"env_steps": s, "return_mean": ret})
    return run


def test_run_dir_create_open_and_overrides(tmp_path):
    run = _make_run(tmp_path)
    assert run.name.startswith("spread__mappo__0__")
    assert yaml.safe_load(run.config_path.read_text()) == {"schema_version": 1, "algo": {"lr": 3e-4}}
    assert run.checkpoints_dir.is_dir()
    assert RunDir.create(tmp_path, config_dict={}, task="spread", algorithm="mappo", seed=0).name != run.name
    assert RunDir.open(tmp_path, run.name).path == run.path
    assert RunDir.open(tmp_path / "elsewhere", run.path).load_config()["schema_version"] == 1

    run.log_overrides(["algo.lr=1e-4", "seed=3"])
    run.log_overrides(["total_steps=2e6"])
    lines = run.overrides_path.read_text().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["algo.lr=1e-4", "seed=3", "total_steps=2e6"]


def test_run_dir_refuses_existing_name_and_suggests_on_miss(tmp_path):
    _make_run(tmp_path, name="spread-baseline")
    with pytest.raises(RunStoreError, match="already exists"):
        _make_run(tmp_path, name="spread-baseline")
    with pytest.raises(RunStoreError, match="closest existing runs: spread-baseline"):
        RunDir.open(tmp_path, "spread-basline")
    with pytest.raises(RunStoreError, match="invalid run name"):
        _make_run(tmp_path, name="../escape")


# --- index -----------------------------------------------------------------------------------


def test_index_upsert_get_list(tmp_path):
    with RunIndex(tmp_path) as index:
        index.upsert("a", task="spread", algorithm="mappo", status="running", seed=0)
        index.upsert("b", task="spread", algorithm="qmix", status="running", seed=1)
        index.upsert("a", env_steps=500, last_return=2.5, status="finished")
        row = index.get("a")
        assert row["status"] == "finished" and row["env_steps"] == 500 and row["task"] == "spread"
        assert row["pid"] == os.getpid()
        assert [r["name"] for r in index.list()] == ["b", "a"]
        assert index.get("missing") is None
        with pytest.raises(ValueError, match="status"):
            index.upsert("a", status="done")
        with pytest.raises(ValueError, match="unknown"):
            index.upsert("a", colour="red")


def test_reconcile_marks_dead_runs_interrupted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with RunIndex(tmp_path) as index:
        index.upsert("dead", status="running", pid=dead.pid)
        index.upsert("alive", status="running")
        assert index.reconcile() == ["dead"]
        assert index.get("dead")["status"] == "interrupted"
        assert index.get("alive")["status"] == "running"


def test_corrupt_index_is_reported_and_rebuilt(tmp_path):
    run = _make_run(tmp_path, seed=7, steps=(100, 200, 300), ret=4.0)
    RunIndex(tmp_path).close()
    (tmp_path / "index.sqlite").write_bytes(os.urandom(8192))
    with pytest.raises(RunStoreError, match="corrupt.*--rebuild"):
        RunIndex(tmp_path)
    with RunIndex.rebuild(tmp_path) as index:
        [row] = index.list()
    assert row["name"] == run.name and row["seed"] == 7 and row["algorithm"] == "mappo"
    assert row["env_steps"] == 300 and row["last_return"] == 4.0 and row["status"] == "interrupted"


def test_a_flag_is_written_once(tmp_path):
    from accord.store import append_flags, read_flags

    lazy = {"flag": "lazy_agent", "agent": "a", "checkpoint": "ckpt_1.pt", "env_steps": 1, "detail": "x"}
    append_flags(tmp_path, [lazy, lazy])
    append_flags(tmp_path, [lazy, {**lazy, "checkpoint": "ckpt_2.pt"}, {**lazy, "agent": "b"}])
    assert [(f["agent"], f["checkpoint"]) for f in read_flags(tmp_path)] == [
        ("a", "ckpt_1.pt"), ("a", "ckpt_2.pt"), ("b", "ckpt_1.pt")]
