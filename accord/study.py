"""Studies: one config, many seeds, one process per seed, stored as a named group of runs.

``accord train CONFIG --seeds 0-9 --parallel 2`` creates ``<runs_dir>/<study>/study.yaml`` (config,
overrides, seeds, member runs) and trains each seed as an ordinary run named ``<study>__s<seed>``
in its own process (``python -m accord.cli train ...``), at most ``parallel`` at once; each child's
output goes to ``<study>/logs/s<seed>.log``. Member runs are normal runs (``accord runs``, resume,
eval all work on them); ``accord train --resume STUDY`` resumes every member that did not finish
and starts the ones that never started.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from accord.errors import ConfigError, RunStoreError
from accord.store import RunDir, RunIndex, atomic_write_text
from accord.store.run import CONFIG_FILE

STUDY_FILE = "study.yaml"
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_seeds(text: str) -> list[int]:
    """``0-9``, ``0,3,7`` or ``0-4,10`` -> sorted distinct seeds."""
    seeds: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError(f"--seeds: '{text}' is not a seed list; use e.g. 0-9, 0,3,7 or 0-4,10")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ConfigError(f"--seeds: range '{part}' runs backwards")
        seeds.update(range(lo, hi + 1))
    return sorted(seeds)


def is_study(root: str | Path, name: str | Path) -> bool:
    return (Path(root) / name / STUDY_FILE).is_file() or (Path(name) / STUDY_FILE).is_file()


@dataclass
class Study:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def root(self) -> Path:
        return self.path.parent

    def data(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load((self.path / STUDY_FILE).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise RunStoreError(f"cannot read {self.path / STUDY_FILE}: {e}") from e
        if not isinstance(data, dict) or "members" not in data:
            raise RunStoreError(f"{self.path / STUDY_FILE} is not a study file")
        return data

    def write(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.path / STUDY_FILE, yaml.safe_dump(data, sort_keys=False))

    def members(self) -> list[dict[str, Any]]:
        return list(self.data()["members"])

    def runs(self, finished_only: bool = False) -> list[RunDir]:
        """Member runs that exist (and finished, if asked)."""
        out = []
        for m in self.members():
            path = self.root / m["run"]
            if (path / CONFIG_FILE).is_file() and (not finished_only or m.get("status") == "finished"):
                out.append(RunDir(path))
        return out

    @classmethod
    def create(cls, root: str | Path, name: str, config: str | None, overrides: list[str], seeds: list[int]
               ) -> Study:
        if not _VALID.match(name):
            raise ConfigError(f"invalid study name {name!r}: use letters, digits, '.', '_' and '-'")
        path = Path(root) / name
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            raise RunStoreError(f"{path} already exists; choose another --study name or resume it with "
                                f"`accord train --resume {name}`") from None
        study = cls(path)
        study.write({"name": name, "config": None if config is None else str(Path(config).resolve()),
                     "overrides": list(overrides), "seeds": seeds,
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "members": [{"seed": s, "run": f"{name}__s{s}", "status": "pending"} for s in seeds]})
        return study

    @classmethod
    def open(cls, root: str | Path, name: str | Path) -> Study:
        for path in (Path(root) / name, Path(name)):
            if (path / STUDY_FILE).is_file():
                return cls(path)
        raise RunStoreError(f"no study {str(name)!r} in {root}")


def list_studies(root: str | Path) -> list[Study]:
    root = Path(root)
    if not root.is_dir():
        return []
    return [Study(p) for p in sorted(root.iterdir()) if (p / STUDY_FILE).is_file()]


def _command(study: Study, data: dict[str, Any], member: dict[str, Any]) -> list[str]:
    base = [sys.executable, "-m", "accord.cli", "train"]
    root = f"runs_dir={study.root}"
    run_path = study.root / member["run"]
    if (run_path / "checkpoints").is_dir() and any((run_path / "checkpoints").glob("ckpt_*.pt")):
        return [*base, "--resume", member["run"], root, "--no-progress", "--eval-episodes", "0"]
    if run_path.exists():  # started, but died before its first checkpoint: start over
        import shutil

        shutil.rmtree(run_path)
    cfg = [data["config"]] if data.get("config") else []
    return [*base, *cfg, *data["overrides"], f"seed={member['seed']}", f"name={member['run']}", root,
            "--no-progress", "--eval-episodes", "0"]


def run_study(study: Study, parallel: int = 1, echo: bool = True) -> list[dict[str, Any]]:
    """Train every member that has not finished, ``parallel`` processes at once; return the members."""
    data = study.data()
    logs = study.path / "logs"
    logs.mkdir(exist_ok=True)
    todo = [m for m in data["members"] if m.get("status") != "finished"]
    running: list[tuple[dict[str, Any], subprocess.Popen, Any]] = []
    started = time.perf_counter()

    def update(member: dict[str, Any], **fields: Any) -> None:
        fresh = study.data()
        for m in fresh["members"]:
            if m["run"] == member["run"]:
                m.update(fields)
        study.write(fresh)

    try:
        while todo or running:
            while todo and len(running) < max(parallel, 1):
                member = todo.pop(0)
                log = open(logs / f"s{member['seed']}.log", "a", encoding="utf-8")  # noqa: SIM115
                proc = subprocess.Popen(_command(study, data, member), stdout=log, stderr=subprocess.STDOUT)
                update(member, status="running")
                running.append((member, proc, log))
                if echo:
                    print(f"[{time.perf_counter() - started:6.0f}s] seed {member['seed']}: started "
                          f"({member['run']})", flush=True)
            time.sleep(0.5)
            for item in list(running):
                member, proc, log = item
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                running.remove(item)
                status = {0: "finished", 130: "interrupted"}.get(code, "failed")
                update(member, status=status, exit_code=code)
                if echo:
                    where = logs / f"s{member['seed']}.log"
                    print(f"[{time.perf_counter() - started:6.0f}s] seed {member['seed']}: {status}"
                          + ("" if code == 0 else f" (exit {code}; see {where})"), flush=True)
    except KeyboardInterrupt:
        for member, proc, log in running:
            proc.wait()  # children got the same Ctrl-C: they checkpoint and exit 130
            log.close()
            update(member, status="interrupted", exit_code=proc.returncode)
        raise
    data = study.data()
    data["wall_s"] = round(float(data.get("wall_s", 0.0)) + time.perf_counter() - started, 1)
    study.write(data)
    with RunIndex(study.root):  # make sure the index exists for `accord runs`
        pass
    return data["members"]
