"""logging.mlflow mirrors a run into MLflow: params, metrics at env_steps, checkpoints, resume, failures."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

import pytest

from accord.config import load_config
from accord.errors import ConfigError
from accord.loop import train
from accord.store import MetricsLog
from accord.store.mlflow_sink import MLFLOW_FILE, flatten_params, log_artifacts, mlflow_installed, resolve_uri

if mlflow_installed():
    from mlflow.tracking import MlflowClient

needs_mlflow = pytest.mark.skipif(not mlflow_installed(), reason="needs pip install 'accord[mlflow]'")

TINY = ["task.params.n_agents=2", "task.num_envs=8", "ppo.rollout_len=10", "ppo.epochs=1",
        "train.log_interval=500"]


@pytest.fixture(autouse=True)
def _file_store(monkeypatch):
    # MLflow 3 opens file stores only on request; the sink asks for it too, the test's own client here.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def _train(root: Path, *extra: str):
    return train(load_config(None, [f"runs_dir={root}", *TINY, *extra]), progress=False)


def _link(run_dir: Path) -> dict:
    return json.loads((run_dir / MLFLOW_FILE).read_text())


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return [m.step for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))]


@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory):
    """One 2000-step run logged to the default store, <runs_dir>/mlruns."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    root = tmp_path_factory.mktemp("mlflow") / "runs"
    result = _train(root, "train.total_env_steps=2000", "logging.mlflow=true")
    yield root, result
    mp.undo()


@needs_mlflow
def test_params_metrics_and_checkpoint_reach_the_default_file_store(mlflow_run):
    root, result = mlflow_run
    assert result.status == "finished"
    link = _link(result.run.path)
    assert link["tracking_uri"] == (root / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=link["tracking_uri"])
    run = client.get_run(link["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "spread"  # default: the task name
    assert run.info.run_name == result.run.name and run.info.status == "FINISHED"
    params = run.data.params
    assert params["task.name"] == "spread" and params["ppo.rollout_len"] == "10"
    assert params["train.total_env_steps"] == "2000" and params["logging.mlflow"] == "true"
    assert params["task.params.n_agents"] == "2" and params["runner.workers"] == "null"

    records = MetricsLog.read(result.run.path)
    assert [r["env_steps"] for r in records] == [560, 1040, 1520, 2000]
    assert _steps(client, link["run_id"], "fps") == [560, 1040, 1520, 2000]
    history = {m.step: m.value for m in client.get_metric_history(link["run_id"], "policy_loss")}
    assert history == pytest.approx({r["env_steps"]: r["policy_loss"] for r in records})
    # null (no finished episode yet) is not a number, so it is not plotted.
    assert _steps(client, link["run_id"], "return_mean") == [r["env_steps"] for r in records
                                                             if r["return_mean"] is not None]

    artifacts = [f.path for f in client.list_artifacts(link["run_id"], "checkpoints")]
    assert artifacts == ["checkpoints/ckpt_000000002000.pt"]
    assert (result.run.path / "tb").is_dir()  # TensorBoard is still written alongside


@needs_mlflow
def test_log_artifacts_uploads_into_the_runs_mlflow_run(mlflow_run, tmp_path):
    _, result = mlflow_run
    bundle = result.run.path / "export"
    bundle.mkdir()
    (bundle / "policy.pt").write_bytes(b"weights")
    (bundle / "card.md").write_text("# policy\n")
    assert log_artifacts(bundle, "export")  # the run is found from the bundle's location
    link = _link(result.run.path)
    client = MlflowClient(tracking_uri=link["tracking_uri"])
    assert sorted(f.path for f in client.list_artifacts(link["run_id"], "export")) == [
        "export/card.md", "export/policy.pt"]
    elsewhere = tmp_path / "report.txt"
    elsewhere.write_text("x")
    assert not log_artifacts(elsewhere)  # not inside a run linked to MLflow: nothing to do
    assert log_artifacts(elsewhere, "reports", run_dir=result.run.path)
    assert [f.path for f in client.list_artifacts(link["run_id"], "reports")] == ["reports/report.txt"]


@needs_mlflow
def test_export_sends_the_bundle_to_the_runs_mlflow_run(mlflow_run, tmp_path):
    from accord.export import export_run

    root, result = mlflow_run
    export_run(result.run.name, tmp_path / "bundle", root=root, parity_obs=50, latency_calls=20)
    link = _link(result.run.path)
    client = MlflowClient(tracking_uri=link["tracking_uri"])
    uploaded = {f.path for f in client.list_artifacts(link["run_id"], "export/bundle")}
    assert {"export/bundle/manifest.json", "export/bundle/agent_0.onnx"} <= uploaded


@needs_mlflow
def test_resume_continues_the_same_mlflow_run(tmp_path):
    root = tmp_path / "runs"
    first = _train(root, "train.total_env_steps=1000", "train.keep_checkpoints=1", "logging.mlflow=true",
                   f"logging.mlflow_uri={tmp_path / 'store'}", "logging.mlflow_experiment=resume-test")
    run_id = _link(first.run.path)["run_id"]
    resumed = train(load_config(None, [f"runs_dir={root}"]), resume=first.run.name,
                    overrides=["train.total_env_steps=2000"], progress=False)
    assert resumed.env_steps == 2000
    link = _link(first.run.path)
    assert link["run_id"] == run_id and link["experiment"] == "resume-test"
    client = MlflowClient(tracking_uri=(tmp_path / "store").as_uri())
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert _steps(client, run_id, "fps") == [560, 1040, 1520, 2000]
    assert run.data.params["train.total_env_steps"] == "1000"  # params are immutable in MLflow ...
    assert run.data.tags["accord.override.train.total_env_steps"] == "2000"  # ... so overrides are tags
    # Pruned checkpoints are pruned in MLflow too (keep_checkpoints=1).
    assert [f.path for f in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/ckpt_000000002000.pt"]


@needs_mlflow
def test_turning_mlflow_on_at_resume_backfills_the_history(tmp_path):
    root = tmp_path / "runs"
    first = _train(root, "train.total_env_steps=1000")
    assert not (first.run.path / MLFLOW_FILE).exists()
    train(load_config(None, [f"runs_dir={root}"]), resume=first.run.name,
          overrides=["train.total_env_steps=1600", "logging.mlflow=true"], progress=False)
    link = _link(first.run.path)
    client = MlflowClient(tracking_uri=link["tracking_uri"])
    assert _steps(client, link["run_id"], "fps") == [560, 1040, 1520, 1600]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_mlflow
def test_unreachable_tracking_server_warns_once_and_training_goes_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast instead of minutes of retries
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    caplog.set_level(logging.WARNING, logger="accord.store.mlflow_sink")
    result = _train(tmp_path / "runs", "train.total_env_steps=1000", "logging.mlflow=true",
                    f"logging.mlflow_uri=http://127.0.0.1:{_closed_port()}")
    assert result.status == "finished" and result.env_steps == 1040  # 80 env steps per iteration
    assert [r["env_steps"] for r in MetricsLog.read(result.run.path)] == [560, 1040]
    assert not (result.run.path / MLFLOW_FILE).exists()
    failed = [r.message for r in caplog.records if "failed (" in r.message]
    assert len(failed) == 1 and "training goes on" in failed[0]
    summary = [r.message for r in caplog.records if "failed or were skipped" in r.message]
    # start, 2 metric records, the final checkpoint and the end of the run: all counted.
    assert len(summary) == 1 and summary[0].startswith("MLflow: 5 writes")


def test_missing_mlflow_fails_config_load_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(ConfigError) as err:
        load_config(None, ["logging.mlflow=true"])
    message = str(err.value)
    assert "\n" not in message and "logging.mlflow" in message and "pip install 'accord[mlflow]'" in message
    load_config(None, [])  # off by default: no mlflow needed


@needs_mlflow
def test_bad_tracking_uri_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match=r"logging.mlflow_uri: unknown scheme 'htp'"):
        load_config(None, ["logging.mlflow=true", "logging.mlflow_uri=htp://localhost:5000"])
    for ok in ("http://localhost:5000", "file:///tmp/mlruns", "sqlite:///mlflow.db", "some/dir", "databricks"):
        load_config(None, ["logging.mlflow=true", f"logging.mlflow_uri={ok}"])


def test_flatten_params_and_resolve_uri(tmp_path):
    flat = flatten_params({"a": {"b": 1, "c": {}, "d": [1, 2]}, "e": None, "f": True, "g": "x"})
    assert flat == {"a.b": "1", "a.c": "{}", "a.d": "[1, 2]", "e": "null", "f": "true", "g": "x"}
    assert resolve_uri(None, tmp_path) == (tmp_path / "mlruns").as_uri()
    assert resolve_uri(str(tmp_path / "s"), "runs") == (tmp_path / "s").as_uri()
    assert resolve_uri("http://h:5000", "runs") == "http://h:5000"
