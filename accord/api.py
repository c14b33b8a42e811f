"""The Python API the CLI is a thin layer over: ``accord.train(...)`` returns what ``accord train`` prints.

    import accord

    report = accord.train("configs/spread_mappo.yaml", ["train.total_env_steps=200000"])
    print(report.greedy["return_mean"], report.random["return_mean"], report.flags)
    policy = accord.Policy.load(report.run.path)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.config import Config, load_config

if TYPE_CHECKING:
    from accord.eval.contribution import ContributionReport
    from accord.store import RunDir


@dataclass
class TrainReport:
    """One training run, evaluated: everything the ``accord train`` summary shows."""

    run: RunDir
    status: str  # finished | interrupted | already finished
    env_steps: int
    wall_s: float
    fps: float
    train_return: float  # mean team return of the last 100 training episodes (sampled actions)
    compile_s: float = 0.0  # of wall_s, compiling (train.compile, task.params.compile: accord.compile)
    greedy: dict[str, float] | None = None  # accord.evaluate.evaluate_policy of the greedy policy
    random: dict[str, float] | None = None  # a uniformly random policy on the same episodes
    contribution: ContributionReport | None = None
    flags: list[dict[str, Any]] = field(default_factory=list)  # lazy-agent and reward-hacking flags

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def train(config: str | Path | Config | None = None, overrides: Sequence[str] = (), *,
          resume: str | None = None, runs_dir: str | Path | None = None, eval_episodes: int = 256,
          contribution: bool = True, progress: bool = True) -> TrainReport:
    """Train a config (a YAML path, a :class:`Config`, or None for the defaults) with ``a.b=c`` overrides,
    or continue run ``resume``; then evaluate the greedy policy against a random one on
    ``eval_episodes`` episodes and measure each agent's contribution (as the config's
    ``credit.monitor`` asks). Evaluation runs only when training finished."""
    from accord.evaluate import evaluate_run
    from accord.loop import train as train_loop

    overrides = [*overrides, *([f"runs_dir={runs_dir}"] if runs_dir is not None else [])]
    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    if resume is not None:
        result = train_loop(cfg, resume=resume, overrides=overrides, progress=progress)
    else:
        result = train_loop(cfg, overrides=overrides, progress=progress)
    report = TrainReport(result.run, result.status, result.env_steps, result.wall_s, result.fps, result.return_mean,
                         result.compile_s)
    if not report.finished:
        return report
    if eval_episodes > 0:
        ev = evaluate_run(result.run.path, root=result.run.path.parent, episodes=eval_episodes, progress=progress)
        report.greedy, report.random = ev["policy"], ev["random"]
    report.contribution, report.flags = run_flags(result.run, contribution, progress)
    return report


def run_flags(run: RunDir, contribution: bool = True, progress: bool = False
              ) -> tuple[ContributionReport | None, list[dict[str, Any]]]:
    """A run's contribution report (if asked and its config enables one) and all its flags, stored."""
    from accord.config import build_config
    from accord.eval.contribution import report_run
    from accord.eval.flags import HACKING
    from accord.store import append_flags, read_flags

    report = None
    if contribution and build_config(run.load_config()).credit.monitor.contribution_episodes > 0:
        report = report_run(run.path, root=run.path.parent, progress=progress)
        append_flags(run.path, report.flags)
    hacking = [f for f in read_flags(run.path) if f["flag"] == HACKING]
    return report, hacking + (report.flags if report is not None else [])
