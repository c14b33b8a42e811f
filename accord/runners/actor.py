"""An actor of the decoupled runners: a copy of the :class:`~accord.policy.Policy` stepping its own envs.

Each batch it hands over is tagged with the policy version that produced it, so the learner can
measure the lag, drop batches that are too old and correct the rest (V-trace, or replay for
value-based learners). Runner ``async`` runs an actor in a local process, runner ``ray`` in a Ray
actor; the actor itself does not know which.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from accord.config import Config
from accord.envs.registry import make_env
from accord.policy import Policy
from accord.replay import EpisodeChunk
from accord.rollout import Rollout
from accord.runners import make_collector


@dataclass
class Tagged:
    """One batch from actor ``worker``, acted with the weights of learner version ``version``."""

    worker: int
    version: int
    data: Rollout | EpisodeChunk
    env_steps: int
    episodes: list[tuple[float, int, float]]  # newest finished episodes: (return, length, success)
    episode_count: int  # episodes finished during this batch (the rows may be fewer)


def actor_seed(seed: int, worker: int, incarnation: int) -> int:
    """The seed of actor ``worker``'s ``incarnation``-th start: a fresh stream each (re)start, never a rewound one."""
    return int(np.random.SeedSequence([seed, worker, incarnation]).generate_state(1)[0])


class ActorWorker:
    """Steps ``task.num_envs / runner.workers`` envs with its own policy copy, CPU, one torch thread."""

    def __init__(self, cfg: Config, record: dict[str, Any], collects: str, rollout_len: int, worker: int,
                 seed: int) -> None:
        torch.set_num_threads(1)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        task = cfg.task.model_copy(update={"num_envs": cfg.task.num_envs // cfg.runner.actors})
        self.worker = worker
        self.env = make_env(task, "sync", None, "cpu", runner=cfg.runner)
        self.policy = Policy.from_record(record, "cpu", "actor")
        self.collector = make_collector(self.env, self.policy, collects, rollout_len, seed)
        self._sent = 0

    def load(self, weights: dict[str, torch.Tensor], epsilon: float) -> None:
        """Act with the learner's newest weights from the next batch on."""
        self.policy.actor.load_state_dict(weights)
        self.policy.epsilon = epsilon

    def rollout(self, version: int) -> Tagged:
        data = self.collector.collect()
        if isinstance(data, Rollout):
            data = copy.deepcopy(data)  # the collector overwrites its batch on the next call
            steps = data.reward.numel()
        else:
            steps = data.env_steps
        stats = self.collector.stats
        count, self._sent = stats.episodes - self._sent, stats.episodes
        rows = list(stats.recent)[-count:] if count else []
        return Tagged(self.worker, version, data, steps, rows, count)

    def close(self) -> None:
        self.env.close()
