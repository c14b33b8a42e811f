"""Runners: step envs with a :class:`~accord.policy.Policy` and hand batches to a learner.

The seam between collection and learning is one call: ``learner.update(runner.collect())``. What a
runner collects follows the learner's ``collects``: a ``Rollout`` (on-policy) or an ``EpisodeChunk``
(finished episodes, off-policy).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from accord.envs.base import VecEnv
from accord.policy import Policy
from accord.runners.sync import EpisodeStats

logger = logging.getLogger(__name__)


class Runner(Protocol):
    stats: EpisodeStats

    def collect(self) -> Any:
        """Step the envs with the current policy; the batch the learner's ``update`` takes."""
        ...


class Learner(Protocol):
    """What the training loop needs from an algorithm (see ``accord/algos``)."""

    collects: str  # "rollout" | "episodes" | "hierarchical"
    policy: Policy  # the acting half; in-process runners share its modules
    rollout_len: int
    env_steps: int

    def update(self, batch: Any) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def make_runner(env: VecEnv, learner: Learner, seed: int, compile: bool | str = False) -> Runner:
    """The in-process runner that feeds ``learner`` what its ``update`` takes (``compile``: train.compile)."""
    if learner.collects == "hierarchical":
        from accord.runners.hierarchical import HierarchicalRunner

        return HierarchicalRunner(env, learner.policy, learner.rollout_len, seed)  # type: ignore[arg-type]
    return make_collector(env, learner.policy, learner.collects, learner.rollout_len, seed, compile)


def make_collector(env: VecEnv, policy: Policy, collects: str, rollout_len: int, seed: int,
                   compile: bool | str = False) -> Runner:
    """A runner stepping ``env`` with ``policy``: whole episodes (``collects="episodes"``) or rollouts."""
    if collects == "episodes":
        from accord.runners.episode import EpisodeRunner

        return EpisodeRunner(env, policy, rollout_len, seed)
    if compile is not False:
        from accord.runners.fused import FusedRunner, pure_task

        task = pure_task(env)
        if task is not None:  # acting and the task's step as one compiled program
            logger.info("collection: acting and env steps fused into one compiled program (runners/fused.py)")
            return FusedRunner(env, task, policy, rollout_len, seed, compile)
        logger.info("collection: acting and env steps compiled apart (the task has no pure_step, or a "
                    "layer checks or changes its steps: task.guard, a cost budget, messages, latency, streams)")
    from accord.runners.sync import SyncRunner

    return SyncRunner(env, policy, rollout_len, seed, compile)
