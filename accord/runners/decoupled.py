"""The learner's side of decoupled collection (runner ``async`` and ``ray``): actors and a learner that
meet through a queue.

Actors (:mod:`accord.runners.actor`) act with a copy of the policy and hand over batches tagged
with the policy version that produced them. Each :meth:`DecoupledRunner.collect` publishes the
learner's newest weights, then takes one batch per actor from whichever actors deliver first:
a batch more than ``runner.max_lag`` versions old is dropped (and counted), the rest go to the
learner side by side (PPO corrects them with V-trace, value-based learners replay them). An actor
that dies is restarted with a fresh seed stream (:func:`~accord.runners.actor.actor_seed`), up to
``runner.max_restarts`` times per actor. Subclasses say only where actors run: ``_spawn``,
``_publish``, ``_receive``, ``close``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from accord.config import DECOUPLED, Config
from accord.errors import ConfigError, EnvError
from accord.replay import EpisodeChunk
from accord.rollout import Rollout
from accord.runners import Learner
from accord.runners.actor import Tagged, actor_seed
from accord.runners.sync import EpisodeStats

logger = logging.getLogger(__name__)

def decoupled_problems(cfg: Config, credit_method: Any) -> list[str]:
    """Config rules of runner async and ray: the learner must correct lag; envs split over actors."""
    from accord.algos import ALGORITHMS

    kind, problems = cfg.runner.kind, []
    try:
        learner = ALGORITHMS.resolve(cfg.algorithm)
    except ConfigError:
        learner = None  # reported by the algorithm rule
    if learner is not None and not getattr(learner, "corrects_lag", False):
        problems.append(f"runner.kind: '{kind}' needs a learner that corrects policy lag; algorithm "
                        f"'{cfg.algorithm}' does not (set corrects_lag = True on a learner that does); "
                        "use runner.kind=sync")
    elif learner is not None and learner.collects == "rollout":
        if credit_method is not None and not getattr(credit_method.fn, "corrects_lag", True):
            from accord.credit import CREDIT

            fits = [n for n, m in CREDIT.items() if "ppo" in m.algorithms and getattr(m.fn, "corrects_lag", False)]
            problems.append(f"credit.name: '{cfg.credit.name}' cannot correct policy lag (runner.kind={kind}); "
                            f"allowed: {', '.join(fits)}, or runner.kind=sync")
        if cfg.model.recurrent or cfg.model.critic_recurrent:
            key = "model.recurrent" if cfg.model.recurrent else "model.critic_recurrent"
            problems.append(f"{key}: not with runner.kind={kind} for ppo (the critic's memory would "
                            "jump between actors); use runner.kind=sync")
    if cfg.architecture == "hierarchical":
        problems.append(f"architecture: hierarchical runs with runner.kind=sync only (its manager and workers "
                        f"share one rollout); not {kind}")
    workers = cfg.runner.actors
    if cfg.task.num_envs % workers:
        problems.append(f"task.num_envs: {cfg.task.num_envs} does not split evenly over runner.workers={workers} "
                        "actors")
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            problems.append("runner.kind: 'ray' needs Ray: pip install 'accord[ray]'")
    return problems


def make_decoupled_runner(cfg: Config, learner: Learner) -> DecoupledRunner:
    assert cfg.runner.kind in DECOUPLED
    if cfg.runner.kind == "ray":
        from accord.runners.ray import RayRunner

        return RayRunner(cfg, learner)
    from accord.runners.asynchronous import AsyncRunner

    return AsyncRunner(cfg, learner)


class DecoupledRunner:
    """Publishes weights, takes tagged batches, drops the too old, restarts dead actors, keeps statistics."""

    def __init__(self, cfg: Config, learner: Learner) -> None:
        self.cfg, self.learner = cfg, learner
        self.workers = cfg.runner.actors
        self.device = learner.policy.device
        self.stats = EpisodeStats(1, torch.device("cpu"))  # fed with the episodes the actors finished
        self.version = 0  # learner updates since the actors started: the tag of the weights they get
        self.incarnations = [0] * self.workers  # starts of each actor (its seed stream's index)
        self.seeds: list[list[int]] = []  # [worker, incarnation, seed] of every start, for the record
        self.restarts = 0
        self._deaths = [0] * self.workers  # in this process, for runner.max_restarts
        self.started = False
        self._lags: list[int] = []
        self._dropped = self._dropped_steps = 0
        self._wait_s = self._learn_s = 0.0
        self._returned: float | None = None

    # -- what subclasses provide --------------------------------------------------------------
    def _spawn(self, worker: int, seed: int) -> None:
        raise NotImplementedError

    def _publish(self, version: int, weights: dict[str, torch.Tensor], epsilon: float) -> None:
        raise NotImplementedError

    def _receive(self) -> Tagged:
        """The next batch from any actor; restarts (via :meth:`_restart`) any actor found dead."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- the learner's side -------------------------------------------------------------------
    def collect(self) -> Rollout | EpisodeChunk:
        """One batch per actor (the first to arrive, not older than ``max_lag``), side by side."""
        now = time.perf_counter()
        if self._returned is not None:
            self._learn_s += now - self._returned
        if self.started:
            self.version += 1
        self._publish(self.version, *self._weights())
        if not self.started:
            self.started = True
            for w in range(self.workers):
                self._start(w)
        parts: list[Tagged] = []
        while len(parts) < self.workers:
            msg = self._receive()
            self.stats.extend(msg.episodes, msg.episode_count)
            lag = self.version - msg.version
            if lag > self.cfg.runner.max_lag:
                self._dropped += 1
                self._dropped_steps += msg.env_steps
                continue
            self._lags.append(lag)
            parts.append(msg)
        self._returned = time.perf_counter()
        self._wait_s += self._returned - now
        return self._combine([m.data for m in parts])

    def _combine(self, parts: list[Any]) -> Rollout | EpisodeChunk:
        if isinstance(parts[0], Rollout):
            return Rollout.cat(parts, self.device)
        episodes = [e if self.device.type == "cpu" else e.map(lambda _, x: x.to(self.device))
                    for p in parts for e in p.episodes]
        return EpisodeChunk(episodes, sum(p.env_steps for p in parts))

    def _weights(self) -> tuple[dict[str, torch.Tensor], float]:
        """The learner's acting weights on the CPU (actors act there) and its exploration epsilon."""
        policy = self.learner.policy
        return {k: v.detach().cpu() for k, v in policy.actor.state_dict().items()}, float(policy.epsilon)

    def _start(self, worker: int) -> None:
        seed = actor_seed(self.cfg.seed, worker, self.incarnations[worker])
        self.seeds.append([worker, self.incarnations[worker], seed])
        self._spawn(worker, seed)

    def _restart(self, worker: int, why: str) -> None:
        """A fresh actor with the next seed stream in place of one that died; fail after max_restarts."""
        self.incarnations[worker] += 1
        self.restarts += 1
        self._deaths[worker] += 1
        if self._deaths[worker] > self.cfg.runner.max_restarts:
            raise EnvError(f"actor {worker} died {self.cfg.runner.max_restarts + 1} times (last: {why}); "
                           "see runner.max_restarts")
        logger.warning("actor %d died (%s); restarted with a fresh seed stream", worker, why)
        self._start(worker)

    def metrics(self) -> dict[str, float]:
        """Lag distribution, drops, restarts and learner utilization since the last call (docs/metrics.md)."""
        out = {"runner/restarts": float(self.restarts), "runner/dropped_batches": float(self._dropped),
               "runner/dropped_env_steps": float(self._dropped_steps)}
        if self._lags:
            lags = torch.tensor(self._lags, dtype=torch.float32)
            out.update({"runner/lag_mean": float(lags.mean()), "runner/lag_p50": float(lags.quantile(0.5)),
                        "runner/lag_p90": float(lags.quantile(0.9)), "runner/lag_max": float(lags.max())})
        busy = self._learn_s + self._wait_s
        if busy > 0:
            out["runner/learner_util"] = self._learn_s / busy
        self._lags, self._wait_s, self._learn_s = [], 0.0, 0.0
        return out

    # -- checkpoint state: a resumed run's actors take the next seed streams ----------------------
    def state_dict(self) -> dict[str, Any]:
        return {"incarnations": list(self.incarnations), "restarts": self.restarts, "actor_seeds": self.seeds,
                "dropped_batches": self._dropped, "dropped_env_steps": self._dropped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stored = list(state.get("incarnations", []))
        if len(stored) == self.workers:  # a resume may change runner.workers: the new ones start fresh
            self.incarnations = [int(i) + 1 for i in stored]
        else:
            self.incarnations = [max(stored, default=-1) + 1] * self.workers
        self.restarts = int(state.get("restarts", 0))
        self.seeds = [list(s) for s in state.get("actor_seeds", [])]
        self._dropped = int(state.get("dropped_batches", 0))
        self._dropped_steps = int(state.get("dropped_env_steps", 0))
