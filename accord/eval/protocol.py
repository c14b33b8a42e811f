"""The evaluation protocol: what a run's quality means, measured the same way every time.

During training (``eval.interval`` env steps, and once more at the last step) the current policy
plays ``eval.episodes`` episodes on fixed eval seeds (``eval.seed``, apart from the training seeds),
**greedy and sampled** on the same episodes: the two can differ a lot (a sampled policy that
succeeds while its greedy version loops), and the user must see which one they would ship. The
best policy so far (by the better of the two modes) is kept as ``checkpoints/best.pt``. At the end
the **absolute metric**: ``best.pt`` re-evaluated on ``eval.final_factor`` times the episodes.

Results go to ``evals.jsonl`` and the ``evals`` index table (:mod:`accord.store.evals`) and, as
``eval_*`` / ``absolute_*`` fields of ``metrics.jsonl``, to TensorBoard and MLflow. Evaluation forks
the RNGs, so a run trains exactly the same with or without it.

The same hook runs the live baseline check (``baseline.name``, :mod:`accord.eval.baseline`) and
credit-drift tracking (``drift.interval``, :mod:`accord.eval.drift`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from accord.envs.base import VecEnv
from accord.envs.registry import make_env
from accord.evaluate import first_episodes
from accord.policy import Policy
from accord.store import append_flags, load_checkpoint, save_checkpoint
from accord.store.evals import MODES, append_eval, read_evals, truncate_evals

if TYPE_CHECKING:
    from accord.config import Config
    from accord.store import RunDir

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "best.pt"
_CHUNK_SEED_STRIDE = 7919  # eval seeds of successive env batches


def play_episodes(env: VecEnv, policy: Policy, episodes: int, deterministic: bool, seed: int
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns ``[episodes]`` (and success ``[episodes]`` where the task reports it) of the first episode
    of each env, over batches of ``env.num_envs`` envs seeded ``seed``, ``seed + 7919``, ... The same
    (env, seed, episodes) always gives the same episodes, so greedy and sampled meet the same starts."""
    returns, successes = [], []
    for k in range(math.ceil(episodes / env.num_envs)):
        ret, success = first_episodes(env, policy, seed + k * _CHUNK_SEED_STRIDE, deterministic)
        returns.append(ret.double().cpu())
        successes.append(None if success is None else success.double().cpu())
    r = torch.cat(returns)[:episodes].numpy()
    s = None if successes[0] is None else torch.cat(successes)[:episodes].numpy()
    return r, s


def summarize(returns: np.ndarray, success: np.ndarray | None, keep_returns: bool = True) -> dict[str, Any]:
    """Mean with its Student-t 95 % interval, std, success rate; the per-episode returns if asked."""
    from accord.eval.stats import t_ci  # here, not at the top: every run imports this module, scipy 0.13 s

    m, lo, hi = t_ci(returns)
    out: dict[str, Any] = {"episodes": int(returns.size), "return_mean": m, "ci": [lo, hi],
                           "return_std": float(returns.std(ddof=1)) if returns.size > 1 else 0.0}
    if success is not None and np.isfinite(success).any():
        out["success_rate"] = float(np.nanmean(success))
    if keep_returns:
        out["returns"] = [round(float(x), 5) for x in returns]
    return out


def evaluate_modes(cfg: Config, policy: Policy, episodes: int, seed: int) -> dict[str, dict[str, Any]]:
    """Greedy and sampled results of ``policy`` on the run's task (fresh env, closed after)."""
    task = cfg.task.model_copy()
    task.num_envs = min(episodes, cfg.eval.num_envs)
    env = make_env(task, cfg.runner.kind, cfg.runner.workers, cfg.train.device)
    was_training = policy.training
    policy.eval()
    try:
        policy.check_fits(env.spec)
        return {mode: summarize(*play_episodes(env, policy, episodes, mode == "greedy", seed)) for mode in MODES}
    finally:
        policy.train(was_training)
        env.close()


def ship_mode(record: dict[str, Any]) -> str:
    """The mode one would ship: the one with the higher mean return."""
    return max(MODES, key=lambda m: record[m]["return_mean"])


def metric_fields(record: dict[str, Any], prefix: str) -> dict[str, float]:
    """Scalars of an eval record for ``metrics.jsonl`` (and so TensorBoard and MLflow)."""
    out = {}
    for mode in MODES:
        res = record[mode]
        out[f"{prefix}_{mode}_return"] = res["return_mean"]
        if "success_rate" in res:
            out[f"{prefix}_{mode}_success"] = res["success_rate"]
    return out


class EvalProtocol:
    """The training loop's evaluation hook: :meth:`on_log` at each log point, :meth:`finish` at the end."""

    def __init__(self, cfg: Config, run: RunDir, env_steps: int = 0) -> None:
        self.cfg, self.run = cfg, run
        ev = cfg.eval
        self.enabled = ev.interval > 0 and cfg.train.total_env_steps >= ev.interval
        self.next_eval = (env_steps // ev.interval + 1) * ev.interval if self.enabled else math.inf
        self.best_score, self.best_steps = -math.inf, None
        if env_steps > 0:  # resuming: history after the checkpoint is gone, the best so far is kept
            truncate_evals(run.path, env_steps)
            for r in read_evals(run.path, "interval"):
                self._track_best(r)
        self.drift = None
        if cfg.drift.interval > 0:
            from accord.eval.drift import DriftMonitor

            self.drift = DriftMonitor(cfg, run.path)
        self.baseline = None
        if cfg.baseline.name:
            from accord.eval.baseline import LiveBaselineCheck

            self.baseline = LiveBaselineCheck(cfg.baseline.name, run.path.parent, cfg.baseline.tolerance,
                                              cfg.baseline.hook)

    def _track_best(self, record: dict[str, Any]) -> bool:
        score = max(record[m]["return_mean"] for m in MODES)
        if score > self.best_score:
            self.best_score, self.best_steps = score, record["env_steps"]
            return True
        return False

    def on_log(self, record: dict[str, Any], policy: Policy, algorithm: str) -> dict[str, Any]:
        """Extra metric fields for this log record: an evaluation when one is due, the baseline check."""
        steps = int(record["env_steps"])
        extra: dict[str, Any] = {}
        if self.enabled and (steps >= self.next_eval or steps >= self.cfg.train.total_env_steps):
            self.next_eval = (steps // self.cfg.eval.interval + 1) * self.cfg.eval.interval
            ev = {"kind": "interval", "env_steps": steps,
                  **evaluate_modes(self.cfg, policy, self.cfg.eval.episodes, self.cfg.eval.seed)}
            if self._track_best(ev):
                save_checkpoint(self.run.checkpoints_dir / BEST_CHECKPOINT, {
                    "algorithm": algorithm, "algo": {"env_steps": steps}, "policy": policy.record(),
                    "eval": {m: ev[m]["return_mean"] for m in MODES}})
            ev["best"] = self.best_steps == steps
            append_eval(self.run.path, ev)
            extra.update(metric_fields(ev, "eval"))
        if self.drift is not None:
            fields, flags = self.drift.observe(steps, policy)
            extra.update(fields)
            if flags:
                append_flags(self.run.path, flags)
        if self.baseline is not None:
            fields, flag = self.baseline.observe({**record, **extra})
            extra.update(fields)
            if flag is not None:
                append_flags(self.run.path, [flag])
                logger.warning("%s: %s", self.run.name, flag["detail"])
        return extra

    def finish(self, env_steps: int) -> dict[str, Any] | None:
        """The absolute metric: the best checkpoint on ``final_factor`` x the episodes; metric fields."""
        best = self.run.checkpoints_dir / BEST_CHECKPOINT
        if not self.enabled or not best.is_file():
            return None
        payload = load_checkpoint(best)
        policy = Policy.from_checkpoint(payload, str(best), self.cfg.train.device)
        episodes = self.cfg.eval.episodes * self.cfg.eval.final_factor
        ev = {"kind": "absolute", "env_steps": int(payload["algo"]["env_steps"]), "checkpoint": BEST_CHECKPOINT,
              **evaluate_modes(self.cfg, policy, episodes, self.cfg.eval.seed + 1)}
        ev["ship"] = ship_mode(ev)
        append_eval(self.run.path, ev)
        return {"env_steps": env_steps, **metric_fields(ev, "absolute")}


def absolute_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's latest absolute-metric record, or None."""
    found = read_evals(run_dir, "absolute")
    return found[-1] if found else None
