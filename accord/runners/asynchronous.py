"""Runner ``async``: actors in local processes, one env batch each, feeding the learner through pipes.

The learner publishes weights into shared memory under a version number (a seqlock: no lock that a
killed actor could hold); each actor takes the newest weights before every batch. Each actor has its
own pipe to the learner, so an actor killed mid-send breaks only its own pipe, and the queue is
bounded by the pipes: an actor starts its next batch only once the learner has taken the last one
(its acknowledgement), so at most one batch per actor waits. An actor that dies (killed, out of
memory) is restarted; an error inside an actor stops the run with that error. Actors exit when the
learner's process is gone, so a killed run leaves no orphans.
"""

from __future__ import annotations

import contextlib
import pickle
import time
from multiprocessing import parent_process
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

from accord.config import Config
from accord.errors import EnvError
from accord.runners import Learner
from accord.runners.actor import ActorWorker, Tagged
from accord.runners.decoupled import DecoupledRunner
from accord.runners.subproc import _context

_POLL_S = 0.5


def _newest_weights(actor: ActorWorker, known: int | None, shared: dict[str, torch.Tensor], version: Any,
                    epsilon: Any) -> int | None:
    """Load the published weights if newer than ``known``; retry if the learner wrote meanwhile."""
    while True:
        v = version.value
        if v == known:
            return known
        if v >= 0:  # -1 while the learner writes
            actor.load(shared, epsilon.value)
            if version.value == v:
                return v
        time.sleep(0.001)


def _actor_main(cfg: Config, record: dict[str, Any], collects: str, rollout_len: int, worker: int, seed: int,
                shared: dict[str, torch.Tensor], version: Any, epsilon: Any, stop: Any, conn: Connection) -> None:
    """An actor process: newest weights, one batch, to the learner (pickled: no shared memory to outlive us)."""
    parent = parent_process()
    try:
        actor = ActorWorker(cfg, record, collects, rollout_len, worker, seed)
        known = None
        while not stop.value and (parent is None or parent.is_alive()):
            known = _newest_weights(actor, known, shared, version, epsilon)
            conn.send_bytes(pickle.dumps(actor.rollout(known)))
            conn.recv_bytes()  # the learner took it
    except (BrokenPipeError, EOFError):
        return  # the learner closed our pipe: the run is over
    except Exception as e:  # noqa: BLE001 - reported to the learner as one line, then this actor ends
        text = str(e).strip().splitlines()
        with contextlib.suppress(OSError):  # the learner may have stopped already (another actor's error)
            conn.send_bytes(pickle.dumps((worker, f"{type(e).__name__}: {text[0] if text else ''}")))


class AsyncRunner(DecoupledRunner):
    def __init__(self, cfg: Config, learner: Learner) -> None:
        super().__init__(cfg, learner)
        self.ctx = _context()
        weights, eps = self._weights()
        self.shared = {k: v.clone().share_memory_() for k, v in weights.items()}
        self.shared_version = self.ctx.Value("q", -1, lock=False)
        self.shared_eps = self.ctx.Value("d", eps, lock=False)
        self.stop = self.ctx.Value("b", 0, lock=False)
        self.procs: list[Any] = [None] * self.workers
        self.conns: list[Any] = [None] * self.workers
        self._record = learner.policy.record()

    def _spawn(self, worker: int, seed: int) -> None:
        mine, theirs = self.ctx.Pipe()
        p = self.ctx.Process(target=_actor_main, daemon=True, name=f"accord-actor-{worker}", args=(
            self.cfg, self._record, self.learner.collects, self.learner.rollout_len, worker, seed, self.shared,
            self.shared_version, self.shared_eps, self.stop, theirs))
        p.start()
        theirs.close()
        self.procs[worker], self.conns[worker] = p, mine

    def _publish(self, version: int, weights: dict[str, torch.Tensor], epsilon: float) -> None:
        self.shared_version.value = -1
        for k, v in weights.items():
            self.shared[k].copy_(v)
        self.shared_eps.value = epsilon
        self.shared_version.value = version

    def _receive(self) -> Tagged:
        while True:
            ready = set(wait([*self.conns, *(p.sentinel for p in self.procs)], timeout=_POLL_S))
            for w in range(self.workers):
                conn, proc = self.conns[w], self.procs[w]
                if conn in ready:
                    try:
                        msg = pickle.loads(conn.recv_bytes())
                    except (EOFError, OSError):  # died (mid-send, maybe): its pipe is closed or cut
                        self._replace(w)
                        continue
                    if isinstance(msg, tuple):  # (worker, error): the env or policy raised inside the actor
                        raise EnvError(f"actor {msg[0]}: {msg[1]}")
                    with contextlib.suppress(OSError):  # died right after sending: the next wait finds it
                        conn.send_bytes(b"")  # taken: the actor may start its next batch
                    return msg
                if proc.sentinel in ready and not conn.poll():
                    self._replace(w)

    def _replace(self, worker: int) -> None:
        proc = self.procs[worker]
        proc.kill()
        proc.join()
        self.conns[worker].close()
        self._restart(worker, f"exit code {proc.exitcode}")

    def close(self) -> None:
        self.stop.value = 1
        for conn in self.conns:
            if conn is not None:
                conn.close()  # an actor blocked sending gets a broken pipe and ends
        for p in self.procs:
            if p is not None:
                p.join(timeout=2 * _POLL_S + 1)
                if p.is_alive():
                    p.kill()
                    p.join()
