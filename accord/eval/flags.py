"""Flags a run raises about its credit: a lazy agent, and reward hacking.

- **Lazy agent**: the team succeeds (success rate at least ``success_threshold``, or, for tasks
  without ``info["success"]``, a team return above the empty team's), yet one agent's measured
  contribution is confidently small: the whole 95 % interval of its ablation ``v(N) - v(N \\ {i})``
  lies below ``tolerance`` times the team's gain over the empty team. An interval that merely reaches
  below it (an agent doing a modest but real share) is not a flag. An agent that harms the team is
  flagged too.
- **Reward hacking**: over the last ``window`` log points the training return rises while the
  env's goal metric (``success_rate``, from ``info["success"]``) falls: both least-squares
  slopes significant (p < 0.05) and the fitted success rate down by at least ``min_drop``.

Flags are dicts with a ``flag`` kind, written one per line to ``runs/<name>/flags.jsonl``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from accord.eval.contribution import ContributionReport

LAZY, HACKING = "lazy_agent", "reward_hacking"


def mark_lazy(report: ContributionReport, tolerance: float, success_threshold: float) -> list[dict[str, Any]]:
    """Set ``lazy`` on the report's agents; return a flag per lazy agent."""
    gain = report.team_return - report.empty_return
    if report.success_rate is not None:
        succeeding = report.success_rate >= success_threshold
    else:
        succeeding = gain > 0 and report.team_return_ci[0] > report.empty_return
    flags = []
    for agent in report.agents:
        threshold = tolerance * max(gain, 0.0)
        agent.lazy = succeeding and agent.ablation_ci[1] < threshold
        if agent.lazy:
            flags.append({
                "flag": LAZY, "agent": agent.name, **report.source, "contribution": agent.ablation,
                "contribution_ci": list(agent.ablation_ci), "team_gain": gain,
                "success_rate": report.success_rate,
                "detail": f"{agent.name} adds {agent.ablation:.3g} (95% CI {agent.ablation_ci[0]:.3g} to "
                          f"{agent.ablation_ci[1]:.3g}) of the team's {gain:.3g} over the empty team; "
                          f"lazy: the whole interval is below {tolerance:g} x the team's gain = {threshold:.3g}",
            })
    return flags


def reward_hacking(returns: Sequence[float], goals: Sequence[float], min_drop: float,
                   alpha: float = 0.05) -> dict[str, float] | None:
    """Rising ``returns`` with falling ``goals`` over one window of log points, or None."""
    r, g = np.asarray(returns, dtype=float), np.asarray(goals, dtype=float)
    if len(r) < 3 or np.ptp(r) == 0 or np.ptp(g) == 0:
        return None
    from scipy import stats  # here, not at the top: every training run imports this module, and scipy.stats 1.1 s

    x = np.arange(len(r))
    fit_r, fit_g = stats.linregress(x, r), stats.linregress(x, g)
    drop = -fit_g.slope * (len(g) - 1)
    if fit_r.slope > 0 and fit_r.pvalue < alpha and fit_g.slope < 0 and fit_g.pvalue < alpha and drop >= min_drop:
        return {"return_rise": float(fit_r.slope * (len(r) - 1)), "success_drop": float(drop),
                "p_return": float(fit_r.pvalue), "p_success": float(fit_g.pvalue)}
    return None


class RewardHackingMonitor:
    """Watches metric records; returns a flag when hacking starts (once per episode of hacking)."""

    def __init__(self, window: int, min_drop: float, reward_key: str = "return_mean",
                 goal_key: str = "success_rate") -> None:
        self.min_drop, self.reward_key, self.goal_key = min_drop, reward_key, goal_key
        self.points: deque[tuple[float, float]] = deque(maxlen=window)
        self.active = False

    def observe(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        r, g = record.get(self.reward_key), record.get(self.goal_key)
        if r is None or g is None or not (np.isfinite(r) and np.isfinite(g)):
            return None
        self.points.append((float(r), float(g)))
        found = None
        if len(self.points) == self.points.maxlen:
            found = reward_hacking(*zip(*self.points, strict=True), min_drop=self.min_drop)
        starts = found is not None and not self.active
        self.active = found is not None
        if not starts:
            return None
        return {"flag": HACKING, "env_steps": record.get("env_steps"), "window": len(self.points), **found,
                "detail": f"training return rose by {found['return_rise']:.3g} while success rate fell by "
                          f"{found['success_drop']:.3g} over the last {len(self.points)} log points"}
