"""Hostile and broken input (issue 10 part 3): each class refused in one ``error:`` line, exit 2, nothing lost."""

from __future__ import annotations

import collections
import hashlib
import io
import shutil

import pytest
import torch

from accord import cli
from accord.store import RunDir, list_checkpoints
from accord.store.checkpoint import _HEADER_V1, _PREFIX, FORMAT_VERSION, MAGIC, load_checkpoint
from accord.store.metrics import MetricsLog

TINY = ["task.params.n_agents=2", "task.num_envs=4", "ppo.rollout_len=10", "ppo.epochs=1", "train.log_interval=40",
        "credit.monitor.contribution_episodes=0", "train.total_env_steps=80", "model.hidden=16"]
FLAGS = ["--no-progress", "--eval-episodes", "0"]


def run_cli(*args: str) -> tuple[int, str]:
    code, _, err = cli.run_captured(args)
    return code, err


def refused(code: int, err: str, *words: str) -> bool:
    lines = [x for x in err.splitlines() if x.strip()]
    return (code == 2 and "Traceback" not in err and bool(lines) and "error:" in lines[-1]
            and all(w in lines[-1] for w in words))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    code, err = run_cli("train", f"runs_dir={root}", "name=good", *TINY, *FLAGS)
    assert code == 0, err
    return root


@pytest.mark.parametrize("override, words", [
    ("ppo.lr=.inf", ["ppo.lr", "finite"]), ("ppo.lr=.nan", ["ppo.lr"]), ("q.lr=inf", ["q.lr", "finite"]),
    ("ppo.huber_delta=-1", ["ppo.huber_delta"]), ("task.num_envs=0", ["task.num_envs"]),
    ("name=", ["name"]), ("name=  ", ["name"]), ("name=a/b", ["name"]), ("name=..", ["name"]),
    ("train.device=cuda:7" if not torch.cuda.is_available() else "train.device=cuda:99", ["train.device"]),
    ("train.device=tpu", ["train.device", "tpu"]),
])
def test_bad_numbers_names_devices(override, words):
    assert refused(*run_cli("config", "show", override), *words)


def test_cli_ranges(good):
    assert refused(*run_cli("eval", "good", "--runs-dir", str(good), "--episodes", "0"), "--episodes")
    assert refused(*run_cli("train", "--eval-episodes", "-1", f"runs_dir={good}"), "--eval-episodes")


@pytest.mark.parametrize("override, key", [("task.num_envs=1000000000", "task.num_envs"),
                                           ("model.hidden=10000000", "model.hidden"),
                                           ("ppo.rollout_len=100000000", "ppo.rollout_len"),
                                           ("task.params.n_agents=100000", "n_agents")])
def test_memory_estimate_refuses(tmp_path, override, key):
    code, err = run_cli("train", f"runs_dir={tmp_path}", override, *FLAGS)
    assert refused(code, err, key, "GiB", "available"), err
    assert not any(tmp_path.iterdir())  # refused before the run folder was made


@pytest.mark.parametrize("name, data, words", [
    ("bin.yaml", bytes(range(256)), ["binary"]),
    ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), ["UTF-8"]),
    ("bomb.yaml", ("a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))).encode(),
     ["alias"]),
    ("deep.yaml", ("a: " + "[" * 5000 + "]" * 5000).encode(), ["deep"]),
    ("deepblock.yaml", "".join(" " * i + f"k{i}:\n" for i in range(150)).encode() + b" " * 150 + b"x: 1\n", ["deep"]),
])
def test_hostile_yaml(tmp_path, name, data, words):
    p = tmp_path / name
    p.write_bytes(data)
    assert refused(*run_cli("config", "show", str(p)), *words)


def test_utf16_with_bom_and_empty_file_read(tmp_path):
    (tmp_path / "u16.yaml").write_bytes("seed: 3\n".encode("utf-16"))
    (tmp_path / "empty.yaml").write_bytes(b"")
    assert run_cli("config", "show", str(tmp_path / "u16.yaml"))[0] == 0
    assert run_cli("config", "show", str(tmp_path / "empty.yaml"))[0] == 0


def test_task_constructor_error_is_one_line(tmp_path):
    assert refused(*run_cli("train", f"runs_dir={tmp_path}", "task.params.n_agents=abc", *FLAGS), "spread", "TypeError")
    assert refused(*run_cli("config", "show", "task.params.nope=1"), "task.params.nope")


class Foreign:
    """Not a tensor: weights_only loading must refuse to build it."""


def _write_raw_checkpoint(path, payload) -> None:
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    path.write_bytes(_PREFIX.pack(MAGIC, FORMAT_VERSION) + _HEADER_V1.pack(hashlib.sha256(body).digest(), len(body))
                     + body)


def test_checkpoint_with_disallowed_objects_refused(tmp_path, good):
    bad = tmp_path / "ckpt_000000000001.pt"
    _write_raw_checkpoint(bad, {"algo": Foreign(), "counts": collections.Counter(a=1)})
    with pytest.raises(Exception, match="refused: the file holds objects that are not plain tensors"):
        load_checkpoint(bad)
    assert refused(*run_cli("contribution", "good", "--runs-dir", str(good), "--checkpoint", str(bad)), "refused")


def test_checkpoint_missing_fields_and_other_shape(tmp_path, good):
    root = tmp_path / "runs"
    shutil.copytree(good, root)
    run = RunDir(root / "good")
    (ckpt,) = list_checkpoints(run.checkpoints_dir)[-1:]
    payload = load_checkpoint(ckpt)
    del payload["rng"]
    _write_raw_checkpoint(run.checkpoints_dir / "ckpt_000000000999.pt", payload)
    assert refused(*run_cli("train", "--resume", "good", f"runs_dir={root}", "train.total_env_steps=2000", *FLAGS),
                   "rng")
    # a checkpoint of a 3-agent run in a 2-agent run
    code, err = run_cli("train", f"runs_dir={root}", "name=three", *TINY, "task.params.n_agents=3", *FLAGS)
    assert code == 0, err
    other = list_checkpoints(root / "three" / "checkpoints")[-1]
    shutil.copy(other, run.checkpoints_dir / "ckpt_000000000999.pt")
    code, err = run_cli("train", "--resume", "good", f"runs_dir={root}", "train.total_env_steps=2000", *FLAGS)
    assert refused(code, err, "3 agents", "this config 2"), err
    assert refused(*run_cli("eval", "good", "--runs-dir", str(root), "--episodes", "2"), "3 agents")


def test_resume_cannot_change_the_network(good):
    before = (good / "good" / "config.yaml").read_text()
    code, err = run_cli("train", "--resume", "good", f"runs_dir={good}", "model.hidden=128", *FLAGS)
    assert refused(code, err, "model.hidden cannot change on resume (16 in the run, 128 given)"), err
    assert refused(*run_cli("train", "--resume", "good", f"runs_dir={good}", "task.params.n_agents=3"), "n_agents")
    assert (good / "good" / "config.yaml").read_text() == before


def test_corrupt_run_files(tmp_path, good):
    root = tmp_path / "runs"
    shutil.copytree(good, root)
    metrics = root / "good" / "metrics.jsonl"
    n = len(MetricsLog.read(root / "good"))
    metrics.write_text(metrics.read_text() + '{"env_steps": 9\n')  # a crash mid-write, newline and all
    assert len(MetricsLog.read(root / "good")) == n  # dropped with a warning, not refused
    assert run_cli("runs", "--runs-dir", str(root))[0] == 0
    (root / "good" / "config.yaml").write_bytes(b"\xff\xfe\x00garbage")
    for args in (["train", "--resume", "good", f"runs_dir={root}"], ["eval", "good", "--runs-dir", str(root)],
                 ["contribution", "good", "--runs-dir", str(root)]):
        assert refused(*run_cli(*args), "config.yaml"), args


def test_stale_temp_files_cleaned_on_resume(tmp_path, good):
    root = tmp_path / "runs"
    shutil.copytree(good, root)
    run = RunDir(root / "good")
    junk = [run.checkpoints_dir / ".ckpt_000000000120.pt.abc123.tmp", run.path / ".config.yaml.xyz.tmp"]
    for p in junk:
        p.write_bytes(b"half")
    code, err = run_cli("train", "--resume", "good", f"runs_dir={root}", "train.total_env_steps=120", *FLAGS)
    assert code == 0, err
    assert not any(p.exists() for p in junk)
