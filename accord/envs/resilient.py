"""An env layer that survives faults instead of crashing or hiding them.

:class:`ResilientVecEnv` wraps the env a run trains on (inside the guard) and handles, by
``runner.*`` settings:

- **retries** (``runner.retries``, ``runner.backoff_s``): an env call that raises is tried again
  after ``backoff_s * 2**k`` seconds, +-50 % jitter. The built-in tasks raise before changing their
  state, so a retried step is the same step.
- **timeouts** (``runner.step_timeout_s``): Python cannot safely preempt code running in its own
  process, so an in-process env with a timeout steps in a watchdog thread and the caller waits at
  most ``step_timeout_s``. A step that does not answer is a *hang*: the thread is abandoned (a
  daemon: it cannot block exit, and it only ever touches the abandoned env object) and the env is
  rebuilt. Subprocess envs (:mod:`accord.runners.subproc`) are killed and restarted instead.
- **restarts** (``runner.max_restarts``): a hang, or a call still failing after its retries,
  rebuilds the env with fresh episodes. That step reports every env as ``truncated`` with the last
  observation as ``final_obs`` and ``info["env_restart"] = 1``. Past ``max_restarts`` the run fails
  with one :class:`~accord.errors.EnvError` naming the env and the step.
- **quarantine**: per-env PettingZoo batches quarantine an env copy that keeps failing
  (:class:`~accord.envs.pettingzoo.PettingZooVecEnv`, ``runner.quarantine_after``); this wrapper counts
  them from ``info["quarantined"]``.

Every retry, restart, timeout and quarantine is counted (:meth:`ResilientVecEnv.fault_counts`) and the
training loop writes the counts to ``metrics.jsonl`` (``env_retries``, ``env_restarts``,
``env_timeouts``, ``env_quarantined``). An env call that raises is always reported as one
``EnvError`` line (``env '<name>' raised at step <n>: <Type>: <message>``), never a traceback.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step, VecEnv
from accord.errors import AccordError, EnvError

logger = logging.getLogger(__name__)


class _Hang(Exception):
    pass


class _Watchdog:
    """One daemon thread running env calls; ``call`` waits at most ``timeout`` seconds for each."""

    def __init__(self) -> None:
        self._in: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._out: queue.Queue[tuple[bool, Any]] = queue.Queue()
        threading.Thread(target=self._serve, name="accord-env-watchdog", daemon=True).start()

    def _serve(self) -> None:
        while True:
            fn = self._in.get()
            if fn is None:
                return
            try:
                self._out.put((True, fn()))
            except BaseException as e:  # handed to the caller
                self._out.put((False, e))

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        self._in.put(fn)
        try:
            ok, value = self._out.get(timeout=timeout)
        except queue.Empty:
            raise _Hang from None
        if ok:
            return value
        raise value

    def stop(self) -> None:
        self._in.put(None)


def backoff_delay(attempt: int, base_s: float, rng: random.Random) -> float:
    """``base_s * 2**attempt`` with +-50 % jitter (so restarted workers do not retry in lockstep)."""
    return base_s * (2**attempt) * rng.uniform(0.5, 1.5)


def describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class ResilientVecEnv:
    """Retries, timeouts, restarts and counted faults around a :class:`VecEnv` built by ``build()``."""

    def __init__(self, build: Callable[[], VecEnv], *, step_timeout_s: float | None = None, retries: int = 0,
                 backoff_s: float = 0.05, max_restarts: int = 3, env: VecEnv | None = None,
                 seed: int = 0) -> None:
        self._build = build
        self.env = env if env is not None else build()
        self.spec: EnvSpec = self.env.spec
        self.num_envs: int = self.env.num_envs
        self.device: torch.device = self.env.device
        self.name: str = getattr(self.env, "name", type(self.env).__name__)
        self.step_timeout_s, self.retries, self.backoff_s = step_timeout_s, retries, backoff_s
        self.max_restarts = max_restarts
        self.steps = 0
        self.counts = {"env_retries": 0, "env_restarts": 0, "env_timeouts": 0, "env_quarantined": 0,
                       "env_copy_faults": 0}
        self._rng = random.Random(seed)
        self._seed: int | None = None
        self._last: Step | None = None
        self._watchdog = _Watchdog() if step_timeout_s else None

    def __getattr__(self, attr: str) -> Any:
        if attr == "env":
            raise AttributeError(attr)
        return getattr(self.env, attr)

    def fault_counts(self) -> dict[str, int]:
        """Cumulative fault counters, including a subprocess env's worker restarts."""
        out = dict(self.counts)
        out["env_restarts"] += int(getattr(self.env, "restarts", 0) or 0)
        return out

    # -- VecEnv -------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Step:
        self._seed = seed
        try:
            self._last = self._call(lambda: self.env.reset(seed), "reset")
        except _Fault as f:
            self._last = self._restart(f.reason, "reset")
        return self._last

    def step(self, actions: Tensor) -> Step:
        self.steps += 1
        try:
            step = self._call(lambda: self.env.step(actions), "step")
        except _Fault as f:
            step = self._restart(f.reason, "step")
        q = step.info.get("quarantined")
        if q is not None:
            quarantined = int(q.count_nonzero())
            self.counts["env_quarantined"] = max(self.counts["env_quarantined"], quarantined)
            if quarantined == q.numel():
                last = getattr(self.env, "last_fault", None)
                raise EnvError(f"{self._where('step')}: every env copy is quarantined after failing "
                               f"runner.quarantine_after times in a row{f' (last: {last})' if last else ''}; "
                               "hint: fix the env")
        faults = step.info.get("env_fault")  # failed calls of single env copies (per-env tasks)
        if faults is not None:
            self.counts["env_copy_faults"] += int(faults.sum())
        self._last = step
        return step

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        self.env.close()

    # -- faults -------------------------------------------------------------------------------------
    def _where(self, what: str) -> str:
        return f"env '{self.name}'" + (f" at step {self.steps}" if what == "step" else " at reset")

    def _call(self, fn: Callable[[], Step], what: str) -> Step:
        for attempt in range(self.retries + 1):
            try:
                if self._watchdog is None:
                    return fn()
                return self._watchdog.call(fn, self.step_timeout_s)
            except _Hang:
                self.counts["env_timeouts"] += 1
                self._watchdog = _Watchdog()  # the old thread is stuck in the abandoned env
                raise _Fault(f"did not answer within {self.step_timeout_s:g}s") from None
            except AccordError:
                raise  # an accord error (e.g. a worker's restarts used up) already says what to do
            except Exception as e:
                if attempt >= self.retries:
                    if self.max_restarts == 0:
                        raise EnvError(f"{self._where(what)} raised {describe(e)}; hint: fix the env, or set "
                                       "runner.retries / runner.max_restarts to survive rare faults") from e
                    raise _Fault(f"raised {describe(e)}" + (f" ({attempt + 1} tries)" if attempt else "")) from e
                self.counts["env_retries"] += 1
                delay = backoff_delay(attempt, self.backoff_s, self._rng)
                logger.info("%s raised %s; retry %d of %d in %.3fs", self._where(what), describe(e), attempt + 1,
                            self.retries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _restart(self, reason: str, what: str) -> Step:
        restarts = self.counts["env_restarts"]
        if restarts >= self.max_restarts:
            raise EnvError(f"{self._where(what)} {reason}; giving up after {restarts} restarts "
                           f"(runner.max_restarts={self.max_restarts}); hint: fix the env or raise the limit")
        self.counts["env_restarts"] = restarts + 1
        logger.warning("%s %s; rebuilding it with fresh episodes (restart %d of at most %d)", self._where(what),
                       reason, restarts + 1, self.max_restarts)
        old = self.env
        try:
            self.env = self._build()
        except Exception as e:
            raise EnvError(f"{self._where(what)} {reason}, and rebuilding it raised {describe(e)}") from e
        if self._watchdog is not None:
            threading.Thread(target=_quiet_close, args=(old,), daemon=True).start()  # may still be hung
        else:
            _quiet_close(old)
        seed = None if self._seed is None else self._seed + 1_000_003 * (restarts + 1)
        try:
            fresh = self._call(lambda: self.env.reset(seed), "reset")
        except _Fault as f:
            raise EnvError(f"{self._where(what)} {reason}, and the rebuilt env {f.reason} at reset") from None
        if what == "reset" or self._last is None:
            return fresh
        last = self._last
        ones = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        info = {k: v for k, v in fresh.info.items() if k != "success"}
        info["env_restart"] = ones.float()
        return replace(fresh, truncated=ones, terminated=~ones, final_obs=last.obs, final_state=last.state,
                       reward=torch.zeros_like(fresh.reward), agent_reward=torch.zeros_like(fresh.agent_reward),
                       info=info)


class _Fault(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _quiet_close(env: VecEnv) -> None:
    try:
        env.close()
    except Exception:  # the env already failed; closing it is best effort
        logger.debug("closing a failed env raised", exc_info=True)
