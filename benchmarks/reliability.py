"""Reliability battery: kills with exact resumes, malformed inputs refused cleanly, env faults survived.

    python benchmarks/reliability.py                 # full: 20 kills, every malformed input, every fault
    python benchmarks/reliability.py --short         # what CI runs (tests/test_reliability.py)

Prints one JSON line, then a table. Each check counts as passed when:

- **kill**: ``accord train`` is SIGKILLed at a random moment after a checkpoint; the run is then
  resumed twice from that same checkpoint (the run and a copy of it). Passed when both resumes start
  at the checkpoint's step, the metric history has no duplicate and no gap, and the two resumes log
  identical numbers (apart from wall time and speed): the resume is exact.
- **malformed input** (configs, checkpoints, CLI args, suite files): exit code 2, the last stderr line
  starts with ``error:`` or argparse's ``usage``/``error``, no traceback, and the run store still lists
  the run as it was.
- **env fault** (raise, hang, NaN, wrong shape, quarantine): the run finishes with the fault counted in
  metrics.jsonl (recovered), or, for faults that cannot be survived, fails with exit 2 and one
  ``error:`` line naming the env and step, the run marked failed (clean failure).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from accord import cli  # noqa: E402
from accord.store import RunIndex, latest_checkpoint, list_runs  # noqa: E402
from accord.store.checkpoint import MAGIC  # noqa: E402

TINY = ["task.params.n_agents=2", "task.num_envs=8", "ppo.rollout_len=10", "ppo.epochs=1", "train.log_interval=400",
        "credit.monitor.contribution_episodes=0"]
FLAGS = ["--no-progress", "--eval-episodes", "0"]


def run_cli(*args: str) -> tuple[int, str]:
    """``accord ARGS`` in this process: (exit code, stderr); a bug counts as failed, the battery goes on."""
    code, _, err = cli.run_captured(args)
    return code, err


def clean_refusal(code: int, err: str) -> bool:
    lines = [x for x in err.splitlines() if x.strip()]
    return code == 2 and bool(lines) and ("error:" in lines[-1]) and "Traceback" not in err


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _numbers(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("wall_s", "fps")} for r in records]


# -- kills --------------------------------------------------------------------------------------------

def kills(n: int, work: Path, seed: int = 0) -> list[dict]:
    from training_process import start_training, wait_for_checkpoint

    rng = random.Random(seed)
    out = []
    for i in range(n):
        root = work / f"kill{i}"
        proc = start_training(root, *TINY, "train.total_env_steps=100000000")
        t0 = time.perf_counter()
        run = wait_for_checkpoint(root, proc, min_steps=800)
        time.sleep(rng.uniform(0.0, 1.5))  # a random moment: mid-update, mid-log, mid-checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        ckpt = latest_checkpoint(run / "checkpoints")
        ckpt_steps = int(ckpt.stem.split("_")[1])
        target = ckpt_steps + 1600
        twin_root = work / f"kill{i}_twin"
        shutil.copytree(root, twin_root)
        resumed = []
        for r in (root, twin_root):
            code, err = run_cli("train", "--resume", run.name, f"runs_dir={r}", f"train.total_env_steps={target}",
                                *FLAGS)
            resumed.append((code, err, _metrics(r / run.name)))
        steps = [rec["env_steps"] for rec in resumed[0][2]]
        grid = [s for s in steps if s < target]
        seamless = steps == sorted(set(steps)) and grid == list(range(400, (grid[-1] if grid else 0) + 1, 400))
        after = [rec for rec in resumed[0][2] if rec["env_steps"] > ckpt_steps]
        twin_after = [rec for rec in resumed[1][2] if rec["env_steps"] > ckpt_steps]
        exact = bool(after) and _numbers(after) == _numbers(twin_after)
        ok = all(c == 0 for c, _, _ in resumed) and seamless and exact and steps[-1] >= target
        out.append({"check": f"kill {i + 1} at {ckpt_steps}+ steps", "kind": "kill", "passed": ok,
                    "detail": f"resumed at {ckpt_steps}, seamless={seamless}, identical twin={exact}",
                    "wall_s": round(time.perf_counter() - t0, 2)})
    return out


# -- malformed inputs ---------------------------------------------------------------------------------

def malformed(work: Path, short: bool) -> list[dict]:
    root = work / "malformed"
    code, err = run_cli("train", f"runs_dir={root}", "name=good", *TINY, "train.total_env_steps=160", *FLAGS)
    assert code == 0, err
    ckpt = next((root / "good" / "checkpoints").glob("*.pt"))
    good_bytes = ckpt.read_bytes()
    suite = work / "suite.yaml"
    suite.write_text("episodes: 4\nseverities: [0.1]\nperturbations:\n  - kind: action_noise\n")
    bad = work / "bad"
    bad.mkdir()

    def write(name: str, data: bytes | str) -> str:
        p = bad / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(p)

    foreign = bad / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    cases: list[tuple[str, str, Callable[[], tuple[int, str]]]] = [
        ("config", "unknown key", lambda: run_cli("train", "ppo.lrr=1", f"runs_dir={root}")),
        ("config", "wrong type", lambda: run_cli("train", "ppo.epochs=ten", f"runs_dir={root}")),
        ("config", "incompatible choices", lambda: run_cli("train", "architecture=decentralized",
                                                           "ppo.critic=centralized", f"runs_dir={root}")),
        ("config", "missing file", lambda: run_cli("train", str(bad / "none.yaml"))),
        ("config", "invalid YAML", lambda: run_cli("train", write("bad.yaml", "task: [unclosed"))),
        ("config", "top level a list", lambda: run_cli("train", write("list.yaml", "- 1\n- 2\n"))),
        ("config", "unknown task", lambda: run_cli("train", "task.name=sprad", f"runs_dir={root}")),
        ("config", "bad override", lambda: run_cli("config", "show", "task.params.n_agents=2", "ppo=3")),
        ("checkpoint", "truncated", lambda: run_cli("suite", "good", "--root", str(root), "--suite", str(suite),
                                                    "--checkpoint", write("trunc.pt", good_bytes[:100]))),
        ("checkpoint", "flipped bytes", lambda: run_cli("suite", "good", "--root", str(root), "--suite", str(suite),
                                                        "--checkpoint", write("flip.pt", good_bytes[:-8] + bytes(8)))),
        ("checkpoint", "empty file", lambda: run_cli("suite", "good", "--root", str(root), "--suite", str(suite),
                                                     "--checkpoint", write("empty.pt", b""))),
        ("checkpoint", "another program's file", lambda: run_cli("suite", "good", "--root", str(root), "--suite",
                                                                 str(suite), "--checkpoint", str(foreign))),
        ("checkpoint", "no such checkpoint", lambda: run_cli("suite", "good", "--root", str(root), "--suite",
                                                             str(suite), "--checkpoint", "999")),
        ("cli", "unknown run", lambda: run_cli("eval", "nope", "--root", str(root))),
        ("cli", "unknown option", lambda: run_cli("eval", "good", "--root", str(root), "--bogus")),
        ("cli", "bad choice", lambda: run_cli("contribution", "good", "--root", str(root), "--replacement", "x")),
        ("cli", "non-integer episodes", lambda: run_cli("eval", "good", "--root", str(root), "--episodes", "ten")),
        ("cli", "too few suite episodes", lambda: run_cli("suite", "good", "--root", str(root), "--episodes", "1")),
        ("cli", "resume a missing run", lambda: run_cli("train", "--resume", "nope", f"runs_dir={root}")),
        ("suite", "unknown perturbation", lambda: run_cli("suite", "good", "--root", str(root), "--suite",
                                                          write("s1.yaml", "perturbations: [{kind: noise}]"))),
        ("suite", "severity out of range", lambda: run_cli("suite", "good", "--root", str(root), "--suite", write(
            "s2.yaml", "perturbations: [{kind: dropout, severities: [3]}]"))),
        ("suite", "missing suite file", lambda: run_cli("suite", "good", "--root", str(root), "--suite",
                                                        str(bad / "none.yaml"))),
    ]
    hostile = hostile_cases(work, root, good_bytes)
    cases = cases[::3] + hostile[::12] if short else cases + hostile
    ckpts_before = sorted(p.name for p in (root / "good" / "checkpoints").iterdir())
    out = []
    for group, name, fn in cases:
        t0 = time.perf_counter()
        code, err = fn()
        ok = clean_refusal(code, err)
        last = ([x for x in err.splitlines() if x.strip()] or [""])[-1]
        out.append({"check": f"{group}: {name}", "kind": "malformed", "passed": ok, "detail": last[:100],
                    "wall_s": round(time.perf_counter() - t0, 2)})
    with RunIndex(root) as index:  # the store is intact after all that
        intact = index.get("good")["status"] == "finished" and bool(_metrics(root / "good"))
    intact = intact and sorted(p.name for p in (root / "good" / "checkpoints").iterdir()) == ckpts_before
    out.append({"check": "run store intact after malformed inputs", "kind": "malformed", "passed": intact,
                "detail": "run 'good' still finished, metrics parse", "wall_s": 0.0})
    return out


def _numeric_keys() -> list[tuple[str, str, bool]]:
    """(key, int|float, has a lower bound) of every number in the config schema."""
    from pydantic import BaseModel

    from accord.config import Config

    out = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, prefix + name + ".")
            elif ann in (int, float, int | None, float | None) and name != "schema_version":
                bounded = any(hasattr(m, "ge") or hasattr(m, "gt") for m in field.metadata)
                out.append((prefix + name, "float" if ann in (float, float | None) else "int", bounded))

    walk(Config, "")
    return out


def hostile_cases(work: Path, root: Path, good_bytes: bytes) -> list[tuple[str, str, Callable[[], tuple[int, str]]]]:
    """Issue 10 part 3: generated systematically, each class refused in one line (exit 2)."""
    cases: list[tuple[str, str, Callable[[], tuple[int, str]]]] = []
    bad = work / "hostile"
    bad.mkdir(exist_ok=True)

    def show(*overrides: str) -> Callable[[], tuple[int, str]]:
        return lambda: run_cli("config", "show", *overrides)

    # numbers: non-finite, out of range, wrong type, for every numeric key of the schema
    for key, kind, bounded in _numeric_keys():
        bad_values = [".inf", ".nan", "abc"] if kind == "float" else ["1.5", "abc", ".inf"]
        if bounded:
            bad_values.append("-1")
        cases += [("hostile", f"number {key}={v}", show(f"{key}={v}")) for v in bad_values]
    # sizes that would exhaust memory: refused before any allocation or run folder
    for override in ("task.num_envs=1000000000", "model.hidden=10000000", "ppo.rollout_len=100000000",
                     "task.params.n_agents=100000", "q.rollout_len=100000000 algorithm=q credit.name=vdn"):
        cases.append(("hostile", f"memory {override}", lambda o=override: run_cli(
            "train", f"runs_dir={work / 'mem'}", *o.split(), *FLAGS)))
    # devices and run names
    for dev in ("cuda:7", "tpu", "cuda:-1", "meta", "gpu0"):
        cases.append(("hostile", f"device {dev}", show(f"train.device={dev}")))
    for name in ("", "  ", "a/b", "..", "../escape", "/abs", "x y"):
        cases.append(("hostile", f"run name {name!r}", show(f"name={name}")))

    # hostile or broken YAML
    def yaml_file(name: str, data: bytes) -> Callable[[], tuple[int, str]]:
        p = bad / name
        p.write_bytes(data)
        return lambda: run_cli("config", "show", str(p))

    bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + q] * 10)}]\n" for q, c in zip("abcdefgh", "bcdefghi", strict=True))
    yamls = {"binary garbage": bytes(range(256)) * 8, "random bytes": random.Random(1).randbytes(4096),
             "latin-1 bytes": "name: caf\xe9\n".encode("latin-1"), "bad UTF-16 body": b"\xff\xfe" + b"\x00\xd8" * 3,
             "alias bomb": bomb.encode(), "deep flow nesting": ("a: " + "[" * 10000 + "]" * 10000).encode(),
             "deep block nesting": "".join(" " * i + f"k{i}:\n" for i in range(200)).encode(),
             "2 MiB file": b"# " + b"x" * (2 << 20), "tab indentation": b"task:\n\tname: spread\n",
             "two documents": b"seed: 1\n---\nseed: 2\n", "top-level scalar": b"42\n",
             "python tag": b"seed: !!python/object/apply:os.system ['true']\n",
             "unclosed quote": b'name: "abc\n', "NUL in text": b"seed: 1\x00\n"}
    cases += [("hostile", f"yaml: {name}", yaml_file(f"y{i}.yaml", data))
              for i, (name, data) in enumerate(yamls.items())]

    # checkpoints: tampered at several offsets, truncated, disallowed objects, missing fields, other shapes
    def ckpt_case(name: str, data: bytes) -> Callable[[], tuple[int, str]]:
        p = bad / f"{name}.pt"
        p.write_bytes(data)
        return lambda: run_cli("contribution", "good", "--root", str(root), "--checkpoint", str(p))

    header = len(MAGIC) + 4 + 32 + 8
    for off in (0, 3, len(MAGIC), len(MAGIC) + 2, len(MAGIC) + 6, len(MAGIC) + 40, header, header + 50,
                len(good_bytes) // 2, len(good_bytes) - 1):
        flipped = bytearray(good_bytes)
        flipped[off] ^= 0xFF
        cases.append(("hostile", f"checkpoint byte {off} flipped", ckpt_case(f"flip{off}", bytes(flipped))))
    for cut in (1, header - 1, header + 1, len(good_bytes) // 3, len(good_bytes) - 1):
        cases.append(("hostile", f"checkpoint cut at {cut}", ckpt_case(f"cut{cut}", good_bytes[:cut])))

    def sealed(payload: object) -> bytes:
        buf = io.BytesIO()
        torch.save(payload, buf)
        body = buf.getvalue()
        return MAGIC + struct.pack(">I32sQ", 1, hashlib.sha256(body).digest(), len(body)) + body

    payload = torch.load(io.BytesIO(good_bytes[header:]), weights_only=True)
    for name, evil in (("a foreign class", argparse.Namespace(x=1)), ("a set", {1, 2}), ("a numpy array", np.zeros(3)),
                       ("a function", print)):
        cases.append(("hostile", f"checkpoint holding {name} (valid checksum)",
                      ckpt_case(f"evil{len(cases)}", sealed({**payload, "algo": evil}))))
    for field in ("policy", "algo"):
        cases.append(("hostile", f"checkpoint without '{field}'", ckpt_case(
            f"missing_{field}", sealed({k: v for k, v in payload.items() if k != field}))))

    # a run whose checkpoint has other shapes, and resumes that would change the network
    code, err = run_cli("train", f"runs_dir={root}", "name=three", *TINY, "task.params.n_agents=3",
                        "train.total_env_steps=80", *FLAGS)
    assert code == 0, err
    three = latest_checkpoint(root / "three" / "checkpoints")
    mixed = root.parent / "mixed"
    shutil.copytree(root / "good", mixed / "good")
    shutil.copy(three, mixed / "good" / "checkpoints" / "ckpt_000000000999.pt")
    for args in (["train", "--resume", "good", f"runs_dir={mixed}"], ["eval", "good", "--root", str(mixed)],
                 ["contribution", "good", "--root", str(mixed)]):
        extra = ["train.total_env_steps=100000", *FLAGS] if args[0] == "train" else []
        cases.append(("hostile", f"3-agent checkpoint: {args[0]}", lambda a=args + extra: run_cli(*a)))
    for override in ("model.hidden=128", "model.layers=3", "model.recurrent=true", "model.share_params=false",
                     "task.params.n_agents=3", "algorithm=q", "credit.name=individual",
                     "architecture=decentralized", "task.name=foraging"):
        cases.append(("hostile", f"resume changing {override}", lambda o=override: run_cli(
            "train", "--resume", "good", f"runs_dir={root}", o, "train.total_env_steps=100000", *FLAGS)))
    # corrupt files in a run folder
    broken = root.parent / "broken"
    shutil.copytree(root / "good", broken / "good")
    (broken / "good" / "config.yaml").write_bytes(b"\xff\xfe\x00 not yaml")
    for args in (["train", "--resume", "good", f"runs_dir={broken}"], ["eval", "good", "--root", str(broken)],
                 ["contribution", "good", "--root", str(broken)], ["suite", "good", "--root", str(broken)],
                 ["export", "good", "--root", str(broken), "--out", str(bad / "bundle")]):
        cases.append(("hostile", f"corrupt config.yaml: {args[0]}", lambda a=args: run_cli(*a)))
    garbage = root.parent / "garbage"
    shutil.copytree(root / "good", garbage / "good")
    (garbage / "good" / "metrics.jsonl").write_text('{"env_steps": 1}\nnot json\n{"env_steps": 2}\n')
    cases.append(("hostile", "corrupt metrics.jsonl line: resume", lambda: run_cli(
        "train", "--resume", "good", f"runs_dir={garbage}", "train.total_env_steps=100000", *FLAGS)))
    # CLI misuse
    for args in (["eval", "good", "--episodes", "0"], ["eval", "good", "--episodes", "-5"],
                 ["contribution", "good", "--episodes", "0"], ["suite", "good", "--episodes", "0"],
                 ["export", "good", "--out", str(bad / "b"), "--opset", "0"],
                 ["export", "good", "--out", str(bad / "b"), "--tolerance", "nan"],
                 ["export", "good", "--out", str(bad / "b"), "--tolerance", "-1"],
                 ["export", "good", "--out", str(bad / "b"), "--parity-obs", "0"],
                 ["train", "--eval-episodes", "-1"], ["eval"], ["frobnicate"], ["train", "--resume"],
                 ["eval", "good", "--episodes", "1e9x"], ["config", "show", "noequals"]):
        cases.append(("hostile", "cli: " + " ".join(args), lambda a=args: run_cli(*a, "--root", str(root))
                      if a[0] in ("eval", "contribution", "suite", "export") and len(a) > 1 else run_cli(*a)))
    return cases


# -- env faults ---------------------------------------------------------------------------------------

FAULTY = ["task.name=faulty", *TINY, "task.num_envs=4", "task.params.hang_prob=0", "task.params.raise_prob=0"]


def _fault_run(root: Path, *extra: str) -> tuple[int, str, list[dict]]:
    code, err = run_cli("train", f"runs_dir={root}", *FAULTY, "train.log_interval=200", *extra, *FLAGS)
    runs = list_runs(root)
    records = _metrics(runs[0].path) if runs and runs[0].metrics_path.is_file() else []
    return code, err, records


def faults(work: Path, short: bool) -> list[dict]:
    def recovered(counter: str, *extra: str) -> Callable[[Path], tuple[bool, str]]:
        def check(root: Path) -> tuple[bool, str]:
            code, err, rec = _fault_run(root, *extra)
            n = rec[-1].get(counter, 0) if rec else 0
            return code == 0 and n > 0, f"exit {code}, {counter}={n}"
        return check

    def clean_failure(*extra: str) -> Callable[[Path], tuple[bool, str]]:
        def check(root: Path) -> tuple[bool, str]:
            code, err, _ = _fault_run(root, *extra)
            last = ([x for x in err.splitlines() if x.strip()] or [""])[-1]
            (run,) = list_runs(root)
            with RunIndex(root) as index:
                failed = index.get(run.name)["status"] == "failed"
            ok = clean_refusal(code, err) and "step " in last and failed  # names the (env) step
            return ok, last[:100]
        return check

    def quarantine(root: Path) -> tuple[bool, str]:
        sys.path.insert(0, str(ROOT / "tests"))
        from test_faults import _flaky_env, _spread_env

        from accord.envs.pettingzoo import PettingZooVecEnv

        env = PettingZooVecEnv([_spread_env, _flaky_env, _spread_env, _spread_env], episode_limit=25,
                               faults={"retries": 1, "backoff_s": 0.0, "quarantine_after": 2})
        env.reset(seed=0)
        for _ in range(60):
            step = env.step(torch.zeros(4, 2, dtype=torch.long))
        q = step.info["quarantined"].tolist()
        return q == [0, 1, 0, 0] and bool(step.agent_mask[[0, 2, 3]].all()), f"quarantined={q}"

    cases: list[tuple[str, Callable[[Path], tuple[bool, str]]]] = [
        ("raises in 5% of steps, retried", recovered("env_retries", "train.total_env_steps=800",
                                                     "task.params.raise_prob=0.05", "runner.retries=3",
                                                     "runner.backoff_s=0.001")),
        ("hangs past the timeout, restarted", recovered("env_timeouts", "train.total_env_steps=800",
                                                        "task.params.hang_prob=0.03", "task.params.hang_s=0.3",
                                                        "runner.step_timeout_s=0.05", "runner.max_restarts=100")),
        ("raises every step, retries exhausted: restarts, then fails", clean_failure(
            "train.total_env_steps=800", "task.params.raise_prob=1", "runner.retries=1", "runner.backoff_s=0.001",
            "runner.max_restarts=2")),
        ("NaN reward with the guard off: update rolled back", recovered(
            "nonfinite_updates", "train.total_env_steps=400", "task.guard=false", "task.params.nan_steps=[7]")),
        ("NaN reward with the guard on: clean failure", clean_failure(
            "train.total_env_steps=400", "task.params.nan_steps=[7]")),
        ("NaN every step, guard off: fails after max_nonfinite", clean_failure(
            "train.total_env_steps=800", "task.guard=false", "task.params.nan_prob=1", "train.max_nonfinite=2")),
        ("one env copy keeps raising: quarantined, others go on", quarantine),
        ("raises in 20% of steps, retried", recovered("env_retries", "train.total_env_steps=400",
                                                      "task.params.raise_prob=0.2", "runner.retries=5",
                                                      "runner.backoff_s=0.001", "task.params.fault_seed=3")),
        ("raises, no retries: env restarted", recovered("env_restarts", "train.total_env_steps=400",
                                                        "task.params.raise_prob=0.02", "runner.max_restarts=100",
                                                        "task.params.fault_seed=5")),
        ("NaN reward at two steps, guard off: both rolled back", recovered(
            "nonfinite_updates", "train.total_env_steps=400", "task.guard=false", "task.params.nan_steps=[3,25]")),
        ("NaN in 30% of steps, guard on: clean failure", clean_failure(
            "train.total_env_steps=400", "task.params.nan_prob=0.3")),
        ("hangs every step, restarts exhausted: clean failure", clean_failure(
            "train.total_env_steps=400", "task.params.hang_prob=1", "task.params.hang_s=0.3",
            "runner.step_timeout_s=0.05", "runner.max_restarts=1")),
        ("raises every step, no restarts allowed: clean failure", clean_failure(
            "train.total_env_steps=400", "task.params.raise_prob=1", "runner.max_restarts=0")),
    ]
    if short:
        cases = [cases[0], cases[2], cases[3], cases[6]]
    out = []
    for i, (name, fn) in enumerate(cases):
        t0 = time.perf_counter()
        ok, detail = fn(work / f"fault{i}")
        out.append({"check": name, "kind": "env fault", "passed": ok, "detail": detail,
                    "wall_s": round(time.perf_counter() - t0, 2)})
    return out


def battery(short: bool = False, kill_count: int | None = None, work: Path | None = None) -> dict:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="accord-reliability-") as tmp:
        work = work or Path(tmp)
        t0 = time.perf_counter()
        checks = kills(1 if short else 20 if kill_count is None else kill_count, work) if kill_count != 0 else []
        checks += malformed(work, short) + faults(work, short)
        summary = {}
        for kind in ("kill", "malformed", "env fault"):
            mine = [c for c in checks if c["kind"] == kind]
            summary[kind.replace(" ", "_")] = {"passed": sum(c["passed"] for c in mine), "total": len(mine)}
        return {"benchmark": "reliability", "short": short, **summary,
                "all_passed": all(c["passed"] for c in checks), "wall_s": round(time.perf_counter() - t0, 1),
                "checks": checks}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", action="store_true", help="the CI subset")
    p.add_argument("--kills", type=int, help="kill/resume cycles (default 20, 1 with --short)")
    args = p.parse_args()
    result = battery(args.short, args.kills)
    print(json.dumps({k: v for k, v in result.items() if k != "checks"}))
    rows = [(c["kind"], c["check"], "ok" if c["passed"] else "FAIL", c["wall_s"], c["detail"])
            for c in result["checks"]]
    print(cli._table(rows, ("kind", "check", "result", "wall_s", "detail")))
    return 0 if result["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
