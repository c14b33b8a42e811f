"""docs/bring-your-own-env.md end to end: a user's ParallelEnv named package.module:Name, from the CLI."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from accord import cli

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "bring-your-own-env.md"
PREFIX = "PYTHONPATH=examples accord "

# Runs every command in one interpreter (importing torch once), as `accord ARGS...` would; prints exit codes.
DRIVER = """
import json, sys
from accord import cli
codes = []
for args in json.loads(sys.argv[1]):
    try:
        cli.main(args)
    except SystemExit as e:
        codes.append(e.code)
print("EXIT CODES", json.dumps(codes))
"""


def doc_commands() -> list[list[str]]:
    """The `accord` commands of the page's 'Train, extend, evaluate' section, as argument lists."""
    section = DOC.read_text().split("## Train, extend, evaluate")[1].split("## ")[0]
    return [shlex.split(line[len(PREFIX):]) for line in section.splitlines() if line.startswith(PREFIX)]


def shrink(args: list[str], runs: Path) -> list[str]:
    """The same command, made test-sized: fewer steps and episodes, a temporary run store."""
    steps = {"20000": "400", "40000": "800"}
    args = [re.sub(r"(train\.total_env_steps=)(\d+)", lambda m: m.group(1) + steps[m.group(2)], a) for a in args]
    args = ["8" if prev == "--episodes" else a for prev, a in zip(["", *args[:-1]], args, strict=True)]
    args = [a.replace("train.log_interval=4000", "train.log_interval=200") for a in args]
    if args[0] == "export":
        args = [str(runs.parent / "bundle") if a == "bundles/cover" else a for a in args]
        args += ["--parity-obs", "200", "--latency-calls", "50"]
    if args[0] == "train" and "--resume" not in args:
        args += ["credit.monitor.contribution_episodes=8"]
    if args[0] == "train":
        args += ["--eval-episodes", "8"]
    return [*args, "--runs-dir", str(runs)]


@pytest.mark.slow  # one interpreter start (torch, scipy, tensorboard) dominates: ~15 s on 2 busy cores
def test_the_pages_commands_train_extend_and_evaluate_a_user_env(tmp_path):
    commands = doc_commands()
    assert [c[0] for c in commands] == ["train", "train", "eval", "export"]
    assert "task.name=mytasks:CoverEnv" in commands[0]
    runs = tmp_path / "runs"
    argv = [shrink(c, runs) for c in commands] + [["train", "--resume", "cover", "--runs-dir", str(runs)]]
    env = {"PYTHONPATH": f"{REPO}:{REPO / 'examples'}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argv)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert proc.stdout.rstrip().endswith("EXIT CODES [0, 0, 0, 0, 0]"), proc.stdout + proc.stderr
    out = proc.stdout
    assert "success rate" in out.split("stored in")[0]  # the task reports success: shown next to the return
    assert re.search(r"env steps\s+800", out)  # the extended run went on to the new total
    assert "total_env_steps: 800" in (runs / "cover" / "config.yaml").read_text()  # and recorded it
    assert "train.total_env_steps=800" in (runs / "cover" / "overrides.log").read_text()
    assert "run cover already finished at 800 env steps; extend it with train.total_env_steps=1600" in out
    # No tty: one plain progress line per log point (400 steps, log every 200), no \r redraws.
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cover: ")]
    assert [ln.split(" env steps")[0] for ln in lines] == ["cover: 200/400", "cover: 400/400", "cover: 600/800",
                                                          "cover: 800/800"]
    assert "\r" not in proc.stderr and "eval (8 episodes, greedy policy and random): 16 episodes" in proc.stderr
    greedy = float(re.search(r"policy\s+(-?[\d.]+)", out.split("EXIT CODES")[0].split("eval")[-1]).group(1))

    # The exported team plays the user's raw env with numpy + onnxruntime alone, scoring what eval scored.
    example = subprocess.run([sys.executable, str(REPO / "examples" / "onnx_team.py"), str(tmp_path / "bundle"),
                              "--episodes", "8", "--json", "--check-imports"], capture_output=True, text=True,
                             timeout=120, env=env, cwd=tmp_path)
    played = json.loads(example.stdout)
    assert example.returncode == 0 and played["imported"] == [], example.stdout + example.stderr
    assert abs(played["return_mean"] - greedy) < 1e-3


def test_an_unknown_module_is_one_error_line_with_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "task.name=nosuchmod:Foo"])
    assert e.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ["error: invalid config: task.name: cannot import 'nosuchmod:Foo' (No module named 'nosuchmod')"]
