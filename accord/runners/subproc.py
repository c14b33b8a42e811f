"""PettingZoo envs in worker processes, batched into one VecEnv.

Slow Python envs dominate training time; running slices of the batch in worker processes steps them
in parallel. Each worker runs a :class:`~accord.envs.pettingzoo.PettingZooVecEnv` over its slice (so
the batching code exists once) and sends numpy arrays back through a pipe; for the same seeds and
actions the outputs are identical to an in-process ``PettingZooVecEnv``.

Workers are started with the ``forkserver`` context (``spawn`` where that is missing), never
``fork``, which is unsafe once torch has started threads. The factories are therefore pickled:
use module-level functions or ``functools.partial`` of them, not lambdas or closures (note that
PettingZoo's ``<env>.parallel_env`` is itself a closure; wrap it in a module-level function).

A worker that dies or does not answer within ``step_timeout_s`` is restarted with fresh episodes; that
step reports its envs as ``truncated`` with ``info["worker_restart"] = 1`` and, as ``final_obs``, the
last observation received before the crash. After ``max_restarts`` restarts an :class:`EnvError` is
raised instead.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import pickle
import signal
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
import torch
from pettingzoo import ParallelEnv
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.envs.pettingzoo import Arrays, PettingZooVecEnv, TeamReward, step_from_arrays
from accord.errors import AccordError, ConfigError, EnvError

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 120.0  # building envs in a fresh process can take far longer than a step
_HINT = "run the same factories in PettingZooVecEnv to see the env's own error, or check memory limits"


def _context() -> BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])  # restarts then skip re-importing torch and the envs
        return ctx
    return mp.get_context("spawn")


def _worker(
    conn: Connection,
    factories: Sequence[Callable[[], ParallelEnv]],
    team_reward: TeamReward,
    episode_limit: int | None,
    faults: dict[str, Any] | None = None,
) -> None:
    """Serve ``("reset", seed)`` / ``("step", actions)`` / ``("close", None)`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    env = None
    try:
        env = PettingZooVecEnv(factories, team_reward=team_reward, episode_limit=episode_limit, faults=faults)
        conn.send(("ok", (env.spec, env.name)))
        while True:
            cmd, arg = conn.recv()
            if cmd == "close":
                break
            conn.send(("ok", env.reset_arrays(arg) if cmd == "reset" else env.step_arrays(arg)))
    except EOFError:
        pass  # the parent is gone
    except Exception as e:  # report it: the parent re-raises user errors, wraps the rest
        conn.send(("error", (e if isinstance(e, AccordError) else None, traceback.format_exc())))
    finally:
        if env is not None:
            env.close()


@dataclass
class _Worker:
    index: int
    start: int  # first env index (inclusive)
    stop: int  # last env index (exclusive)
    factories: list[Callable[[], ParallelEnv]]
    process: BaseProcess | None = None
    conn: Connection | None = None
    last: Arrays | None = None  # latest arrays received, for final_obs after a crash

    @property
    def label(self) -> str:
        return f"worker {self.index} (envs {self.start}-{self.stop - 1})"


def _stop(w: _Worker, grace_s: float) -> None:
    """Give the worker ``grace_s`` to exit, then kill it."""
    if w.conn is not None:
        w.conn.close()
    if w.process is not None:
        w.process.join(timeout=grace_s)
        if w.process.is_alive():
            w.process.kill()
            w.process.join(timeout=5.0)
    w.conn, w.process = None, None


def _shutdown(workers: list[_Worker]) -> None:
    """Finalizer (close, garbage collection or interpreter exit): stop every worker."""
    for w in workers:
        if w.conn is not None:
            with contextlib.suppress(OSError):  # already dead
                w.conn.send(("close", None))
    for w in workers:
        _stop(w, grace_s=1.0)


def _concat(parts: list[Arrays]) -> Arrays:
    """Concatenate per-worker arrays along the env axis; info keys missing in a part become zeros."""
    keys = dict.fromkeys(k for p in parts for k in p)
    out = {}
    for k in keys:
        like = next(p[k] for p in parts if k in p)
        out[k] = np.concatenate(
            [p[k] if k in p else np.zeros((len(p["reward"]), *like.shape[1:]), like.dtype) for p in parts]
        )
    return out


class SubprocVecEnv:
    """A :class:`~accord.envs.base.VecEnv` whose PettingZoo envs live in ``workers`` processes.

    Same arguments and outputs as :class:`~accord.envs.pettingzoo.PettingZooVecEnv`; ``workers``
    defaults to the CPU count (at most one per env). ``restarts`` counts worker restarts so far.
    """

    def __init__(
        self,
        factories: Sequence[Callable[[], ParallelEnv]],
        team_reward: TeamReward = "sum",
        workers: int | None = None,
        device: str | torch.device = "cpu",
        step_timeout_s: float = 60.0,
        max_restarts: int = 3,
        episode_limit: int | None = None,
        faults: dict[str, Any] | None = None,
    ) -> None:
        if not factories:
            raise ConfigError("SubprocVecEnv needs at least one env factory")
        self._faults = faults  # per-env retries / quarantine inside the workers (PettingZooVecEnv)
        self.steps = 0
        self.name = "SubprocVecEnv"  # the env's own name once the workers report it
        if team_reward not in ("sum", "mean"):
            raise ConfigError(f"team_reward must be 'sum' or 'mean', got {team_reward!r}")
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        n_workers = min(workers or os.cpu_count() or 1, len(factories))
        self.num_envs = len(factories)
        self.device = torch.device(device)
        self.step_timeout_s = step_timeout_s
        self.max_restarts = max_restarts
        self.restarts = 0
        self._team_reward, self._episode_limit = team_reward, episode_limit
        self._seed: int | None = None
        self._ctx = _context()
        bounds = np.linspace(0, self.num_envs, n_workers + 1).astype(int).tolist()
        self._workers = [
            _Worker(i, a, b, list(factories[a:b]))
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        for w in self._workers:  # start all before waiting on any: workers build their envs in parallel
            self._launch(w)
        ready, failures = self._collect(self._workers, _START_TIMEOUT_S)
        if failures:
            i, reason = next(iter(failures.items()))
            self.close()
            raise EnvError(f"{self._workers[i].label} {reason} while building its envs; hint: {_HINT}")
        self.spec: EnvSpec
        self.spec, self.name = ready[0]
        for i, (spec, _) in ready.items():
            if spec != self.spec:
                self.close()
                raise EnvError(f"{self._workers[i].label} built {spec}, but worker 0 built {self.spec}")

    @property
    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers (e.g. to watch or kill them)."""
        return [w.process.pid if w.process is not None else None for w in self._workers]

    # -- VecEnv -------------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> Step:
        self._seed = seed
        seeds = {w.index: None if seed is None else seed + w.start for w in self._workers}
        results, failures = self._request("reset", seeds)
        for i, reason in failures.items():
            results[i] = self._restart(self._workers[i], reason, seeds[i])
        return self._merge(results)

    def step(self, actions: Tensor) -> Step:
        self.steps += 1
        acts = actions.cpu().numpy()
        results, failures = self._request("step", {w.index: acts[w.start : w.stop] for w in self._workers})
        for i, reason in failures.items():
            w = self._workers[i]
            seed = None if self._seed is None else self._seed + self.num_envs * (self.restarts + 1) + w.start
            last = w.last
            arrays = self._restart(w, reason, seed)
            last = last or arrays
            arrays["truncated"][:] = True
            for k in [k for k in last if k.startswith("obs/")]:
                arrays[f"final_{k}"] = last[k]
            arrays["final_state"] = last["state"]
            arrays["info/worker_restart"] = np.ones(w.stop - w.start, np.float32)
            results[i] = arrays
        return self._merge(results)

    def close(self) -> None:
        self._finalizer()

    # -- worker plumbing ----------------------------------------------------------------------------

    def _launch(self, w: _Worker) -> None:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker,
            args=(child, w.factories, self._team_reward, self._episode_limit, self._faults),
            name=f"accord-env-{w.index}",
            daemon=True,
        )
        try:
            process.start()
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            parent.close()
            self.close()
            raise ConfigError(
                f"SubprocVecEnv could not send the env factories to a worker ({e}); hint: use module-level "
                "functions or functools.partial of them, not lambdas or closures"
            ) from e
        finally:
            child.close()
        w.process, w.conn = process, parent

    def _request(self, cmd: str, args: dict[int, Any]) -> tuple[dict[int, Any], dict[int, str]]:
        """Send ``cmd`` to every worker first, then gather the replies (workers run in parallel)."""
        if not self._finalizer.alive:
            raise EnvError(f"{self.name}: SubprocVecEnv used after close(); hint: build a new one")
        sent, failures = [], {}
        for w in self._workers:
            try:
                w.conn.send((cmd, args[w.index]))
                sent.append(w)
            except OSError:
                failures[w.index] = self._death(w)
        results, late = self._collect(sent, self.step_timeout_s)
        return results, failures | late

    def _collect(self, workers: list[_Worker], timeout: float) -> tuple[dict[int, Any], dict[int, str]]:
        """Replies by worker index, and a reason for each worker that died or timed out."""
        deadline = time.monotonic() + timeout
        pending = {w.index: w for w in workers}
        results: dict[int, Any] = {}
        failures: dict[int, str] = {}
        while pending:
            handles = [h for w in pending.values() for h in (w.conn, w.process.sentinel)]
            ready = set(wait(handles, timeout=max(deadline - time.monotonic(), 0.0)))
            if not ready:
                for i, w in pending.items():
                    failures[i] = f"did not answer within {timeout:g}s"
                    _stop(w, grace_s=0.0)
                break
            for i, w in list(pending.items()):
                if w.conn not in ready and w.process.sentinel not in ready:
                    continue
                del pending[i]
                try:
                    msg = w.conn.recv() if w.conn.poll() else None
                except (EOFError, OSError):
                    msg = None
                if msg is None:
                    failures[i] = self._death(w)
                elif msg[0] == "error":
                    error, trace = msg[1]
                    self.close()
                    if error is not None:
                        raise error
                    logger.info("%s raised:\n%s", w.label, trace)  # the worker's traceback: --debug only
                    raise EnvError(f"env '{self.name}' {w.label} raised {trace.strip().splitlines()[-1]} "
                                   f"at step {self.steps}; hint: {_HINT}")
                else:
                    results[i] = msg[1]
        return results, failures

    def _death(self, w: _Worker) -> str:
        w.process.join(timeout=1.0)
        code = w.process.exitcode
        if code is not None and code < 0:
            return f"died with exit code {code} ({signal.Signals(-code).name})"
        return f"died with exit code {code}"

    def _restart(self, w: _Worker, reason: str, seed: int | None) -> Arrays:
        """Replace a dead worker and return the reset arrays of its fresh envs."""
        if self.restarts >= self.max_restarts:
            self.close()
            raise EnvError(
                f"{self.name}: {w.label} {reason}; giving up after {self.restarts} restarts "
                f"(max_restarts={self.max_restarts}); hint: {_HINT}"
            )
        self.restarts += 1
        logger.warning(
            "%s: %s %s; restarting it with fresh episodes (restart %d of at most %d)",
            self.name,
            w.label,
            reason,
            self.restarts,
            self.max_restarts,
        )
        _stop(w, grace_s=0.0)
        self._launch(w)
        _, failures = self._collect([w], _START_TIMEOUT_S)
        if not failures:
            w.conn.send(("reset", seed))
            results, failures = self._collect([w], self.step_timeout_s)
        if failures:
            self.close()
            raise EnvError(f"{self.name}: restarted {w.label} {failures[w.index]}; hint: {_HINT}")
        return results[w.index]

    def _merge(self, results: dict[int, Arrays]) -> Step:
        for i, arrays in results.items():
            self._workers[i].last = arrays
        return step_from_arrays(_concat([results[w.index] for w in self._workers]), self.device)
