"""Credit drift: does who-does-the-work change while a run trains?

Every ``drift.interval`` log points the current policy's contribution report is measured
(:func:`accord.eval.contribution.contribution_report`: ablation and Shapley values on
``drift.episodes`` episodes per coalition, sampled actions) and appended to
``runs/<name>/contribution.jsonl``. Per agent, the tracked quantity is the correlation of its
contribution with team success (tasks reporting ``info["success"]``), else its share of the team's
Shapley value. A ``credit_drift`` flag is raised (once per agent) when it moves more than
``drift.threshold`` away from the agent's first measurement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.store.metrics import jsonable, read_jsonl

if TYPE_CHECKING:
    from accord.config import Config
    from accord.eval.contribution import ContributionReport
    from accord.policy import Policy

CONTRIBUTION_FILE = "contribution.jsonl"
DRIFT = "credit_drift"


def tracked(report: ContributionReport) -> dict[str, float | None]:
    """Per agent: correlation with success where known, else share of the summed Shapley values."""
    total = sum(abs(a.shapley) for a in report.agents) or 1.0
    return {a.name: (a.success_corr if report.success_rate is not None else a.shapley / total)
            for a in report.agents}


class DriftMonitor:
    def __init__(self, cfg: Config, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.logs = 0
        history = read_jsonl(self.run_dir / CONTRIBUTION_FILE)
        self.reference: dict[str, float] = {}
        for rec in history:
            for name, v in rec["tracked"].items():
                if v is not None:
                    self.reference.setdefault(name, v)
        self.flagged: set[str] = set()

    def observe(self, steps: int, policy: Policy) -> tuple[dict[str, float], list[dict[str, Any]]]:
        self.logs += 1
        if self.cfg.drift.interval <= 0 or self.logs % self.cfg.drift.interval:
            return {}, []
        from accord.envs.registry import make_env
        from accord.eval.contribution import contribution_report

        task = self.cfg.task.model_copy()
        task.num_envs = self.cfg.drift.episodes
        env = make_env(task, self.cfg.runner.kind, self.cfg.runner.workers, self.cfg.train.device)
        mon = self.cfg.credit.monitor
        try:
            rep = contribution_report(env, policy, seed=self.cfg.eval.seed + 2, replacement=mon.replacement,
                                      noop_action=mon.noop_action, deterministic=False,
                                      permutations=mon.shapley_permutations)
        finally:
            env.close()
        values = tracked(rep)
        rec = {"env_steps": steps, "tracked": values, "success_rate": rep.success_rate,
               "agents": [{"agent": a.name, "ablation": a.ablation, "shapley": a.shapley,
                           "success_corr": a.success_corr} for a in rep.agents]}
        with open(self.run_dir / CONTRIBUTION_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(jsonable(rec), allow_nan=False) + "\n")
        fields = {f"contribution_{a.name}": a.shapley for a in rep.agents}
        flags = []
        what = "correlation with success" if rep.success_rate is not None else "share of credit"
        for name, v in values.items():
            if v is None:
                continue
            ref = self.reference.setdefault(name, v)
            if abs(v - ref) > self.cfg.drift.threshold and name not in self.flagged:
                self.flagged.add(name)
                flags.append({"flag": DRIFT, "agent": name, "env_steps": steps, "reference": ref, "value": v,
                              "detail": f"{name}'s {what} moved from {ref:.3f} to {v:.3f} "
                                        f"(threshold {self.cfg.drift.threshold})"})
        return fields, flags
