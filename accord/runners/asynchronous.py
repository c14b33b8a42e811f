"""Runner ``async``: actors in local processes, one env batch each, feeding the learner through a queue.

The learner publishes weights into shared memory (one copy, a version number and a lock); each actor
takes the newest weights before every batch and puts the tagged batch into a bounded queue (two
batches per actor: collection runs at most that far ahead). An actor that dies (killed, out of
memory) is restarted; an error inside an actor stops the run with that error. Actors exit when the
learner's process is gone, so a killed run leaves no orphans.
"""

from __future__ import annotations

import pickle
import queue
from multiprocessing import parent_process
from typing import Any

import torch

from accord.config import Config
from accord.errors import EnvError
from accord.runners import Learner
from accord.runners.actor import ActorWorker, Tagged
from accord.runners.decoupled import DecoupledRunner
from accord.runners.subproc import _context

_POLL_S = 0.5


def _actor_main(cfg: Config, record: dict[str, Any], collects: str, rollout_len: int, worker: int, seed: int,
                shared: dict[str, torch.Tensor], version: Any, epsilon: Any, lock: Any, out: Any, stop: Any) -> None:
    """An actor process: newest weights, one batch, into the queue (pickled: no shared memory to outlive us)."""
    out.cancel_join_thread()  # exit even if the learner never takes what is left in the queue
    parent = parent_process()
    try:
        actor = ActorWorker(cfg, record, collects, rollout_len, worker, seed)
        known = None
        while not stop.is_set() and (parent is None or parent.is_alive()):
            with lock:
                if version.value != known:
                    known = version.value
                    actor.load(shared, epsilon.value)
            msg = pickle.dumps(actor.rollout(known))
            while not stop.is_set():
                try:
                    out.put(msg, timeout=_POLL_S)
                    break
                except queue.Full:
                    if parent is not None and not parent.is_alive():
                        return
    except Exception as e:  # noqa: BLE001 - reported to the learner as one line, then this actor ends
        text = str(e).strip().splitlines()
        out.put(pickle.dumps((worker, f"{type(e).__name__}: {text[0] if text else ''}")))


class AsyncRunner(DecoupledRunner):
    def __init__(self, cfg: Config, learner: Learner) -> None:
        super().__init__(cfg, learner)
        self.ctx = _context()
        self.queue = self.ctx.Queue(maxsize=2 * self.workers)
        self.stop = self.ctx.Event()
        weights, eps = self._weights()
        self.shared = {k: v.clone().share_memory_() for k, v in weights.items()}
        self.shared_version = self.ctx.Value("q", -1, lock=False)
        self.shared_eps = self.ctx.Value("d", eps, lock=False)
        self.lock = self.ctx.Lock()
        self.procs: list[Any] = [None] * self.workers
        self._record = learner.policy.record()

    def _spawn(self, worker: int, seed: int) -> None:
        p = self.ctx.Process(target=_actor_main, daemon=True, name=f"accord-actor-{worker}", args=(
            self.cfg, self._record, self.learner.collects, self.learner.rollout_len, worker, seed, self.shared,
            self.shared_version, self.shared_eps, self.lock, self.queue, self.stop))
        p.start()
        self.procs[worker] = p

    def _publish(self, version: int, weights: dict[str, torch.Tensor], epsilon: float) -> None:
        with self.lock:
            for k, v in weights.items():
                self.shared[k].copy_(v)
            self.shared_eps.value = epsilon
            self.shared_version.value = version

    def _receive(self) -> Tagged:
        while True:
            for w, p in enumerate(self.procs):
                if not p.is_alive():
                    p.join()
                    self._restart(w, f"exit code {p.exitcode}")
            try:
                msg = pickle.loads(self.queue.get(timeout=_POLL_S))
            except queue.Empty:
                continue
            if isinstance(msg, tuple):  # (worker, error): the env or policy raised inside the actor
                raise EnvError(f"actor {msg[0]}: {msg[1]}")
            return msg

    def close(self) -> None:
        self.stop.set()
        for p in self.procs:
            if p is not None:
                p.join(timeout=2 * _POLL_S + 1)
                if p.is_alive():
                    p.kill()
                    p.join()
        self.queue.close()
        self.queue.cancel_join_thread()
