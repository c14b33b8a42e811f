"""Runner ``ray``: the actors of :mod:`accord.runners.actor` as Ray actors, on this machine or a cluster.

``runner.address`` null starts Ray here (``runner.workers`` CPUs, no dashboard); ``auto`` or
``host:port`` joins an existing cluster (``ray start --head`` on one machine, ``ray start
--address=...`` on the others; docs/scale.md). Each actor keeps one rollout in flight; new weights
go into the object store once per learner update and every actor fetches them with its next
rollout. Actors are spread over the cluster's nodes. An actor that dies is replaced by a new one
with a fresh seed stream: Ray's own restart would rebuild it from its original arguments, replaying
the seeds it already used.
"""

from __future__ import annotations

import socket
from typing import Any

import torch

from accord.config import Config
from accord.errors import ConfigError, EnvError
from accord.runners import Learner
from accord.runners.actor import ActorWorker, Tagged
from accord.runners.decoupled import DecoupledRunner


class _RayActor:
    """The Ray-side shell of an :class:`ActorWorker`: takes (version, weights, epsilon), returns a batch."""

    def __init__(self, cfg: Config, record: dict[str, Any], collects: str, rollout_len: int, worker: int,
                 seed: int) -> None:
        self.actor = ActorWorker(cfg, record, collects, rollout_len, worker, seed)
        self.known: int | None = None

    def rollout(self, published: tuple[int, dict[str, torch.Tensor], float]) -> Tagged:
        version, weights, epsilon = published
        if version != self.known:
            self.actor.load(weights, epsilon)
            self.known = version
        return self.actor.rollout(version)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def connect(address: str | None, workers: int) -> bool:
    """Start Ray here (``address`` null) or join a cluster; True when this process started it."""
    import ray

    if ray.is_initialized():
        return False
    if address not in (None, "auto"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise ConfigError(f"runner.address: cannot reach a Ray cluster at {address} ({e}); start one with "
                              "`ray start --head`, or use runner.address=auto or null (Ray on this machine)"
                              ) from None
    try:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return True
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except ConnectionError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"runner.address: cannot connect to Ray at {address} ({first})") from None
    return False


class RayRunner(DecoupledRunner):
    def __init__(self, cfg: Config, learner: Learner) -> None:
        import ray

        super().__init__(cfg, learner)
        self.owns_ray = connect(cfg.runner.address, self.workers)
        self.remote = ray.remote(num_cpus=1, max_restarts=0)(_RayActor)
        self.actors: list[Any] = [None] * self.workers
        self.inflight: dict[Any, int] = {}  # rollout future -> worker
        self.published: Any = None
        self._record = learner.policy.record()

    def _spawn(self, worker: int, seed: int) -> None:
        self.actors[worker] = self.remote.options(scheduling_strategy="SPREAD").remote(
            self.cfg, self._record, self.learner.collects, self.learner.rollout_len, worker, seed)
        self._submit(worker)

    def _submit(self, worker: int) -> None:
        self.inflight[self.actors[worker].rollout.remote(self.published)] = worker

    def _publish(self, version: int, weights: dict[str, torch.Tensor], epsilon: float) -> None:
        import ray

        self.published = ray.put((version, weights, epsilon))

    def _receive(self) -> Tagged:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

        while True:
            (ready,), _ = ray.wait(list(self.inflight), num_returns=1)
            worker = self.inflight.pop(ready)
            try:
                msg = ray.get(ready)
            except RayTaskError as e:  # the env or policy raised inside the actor
                cause = e.cause if e.cause is not None else e
                text = str(cause).strip().splitlines()
                raise EnvError(f"actor {worker}: {type(cause).__name__}: {text[0] if text else ''}") from None
            except (ActorDiedError, ActorUnavailableError, RayActorError) as e:
                self._restart(worker, type(e).__name__)
                continue
            self._submit(worker)
            return msg

    def nodes(self) -> set[str]:
        """The Ray nodes the actors run on."""
        import ray

        return set(ray.get([a.node.remote() for a in self.actors]))

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for a in self.actors:
            if a is not None:
                ray.kill(a)
        self.inflight.clear()
        if self.owns_ray:
            ray.shutdown()
