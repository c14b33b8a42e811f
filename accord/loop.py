"""The training loop shared by every algorithm: run store, checkpoints, resume, progress, Ctrl-C.

The loop owns collection: a runner steps the env with the learner's :class:`~accord.policy.Policy`
and hands each batch to ``learner.update(batch)`` (:class:`accord.runners.Learner`); everything a run
leaves on disk is written here.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import math
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.algos import ALGORITHMS
from accord.compile import compile_seconds
from accord.config import DECOUPLED, Config, apply_overrides, build_config
from accord.envs.base import VecEnv
from accord.envs.registry import make_env
from accord.errors import CheckpointError, ConfigError
from accord.eval.flags import RewardHackingMonitor
from accord.memory import check_memory, keep_freed_memory
from accord.policy import check_spec_fits, spec_to_dict
from accord.progress import TrainProgress
from accord.runners import Learner, Runner, make_runner
from accord.store import (
    MetricsLog,
    RunDir,
    RunIndex,
    append_flags,
    checkpoint_env_steps,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    run: RunDir
    env_steps: int
    wall_s: float
    fps: float
    return_mean: float
    status: str  # finished | interrupted | already finished (a resume with nothing left to do)
    compile_s: float = 0.0  # of wall_s, compiling in this process (accord.compile.compile_seconds)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while. Building the envs imports torch's compiler
    (``task.params.compile``) and its hundreds of thousands of objects, which live for the whole run:
    the collector walked them all a few times, 0.6 s of that 1.9 s step, and freed nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current iteration (and checkpoint first)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def build_learner(cfg: Config, env: VecEnv) -> tuple[Learner, Runner]:
    """The config's learner and the runner that feeds it from ``env``."""
    check_memory(cfg, env.spec, env.device)  # before the rollout and networks are allocated
    if cfg.architecture == "hierarchical":  # manager and worker PPO learners (accord/algos/hierarchical.py)
        from accord.algos.hierarchical import Hierarchical

        learner: Learner = Hierarchical(cfg, env.spec, env.device)
    else:
        learner = ALGORITHMS[cfg.algorithm](cfg, env.spec, env.device)
    if cfg.runner.kind in DECOUPLED:  # actors with their own envs; ``env`` only gave the spec
        from accord.runners.decoupled import make_decoupled_runner

        return learner, make_decoupled_runner(cfg, learner)
    return learner, make_runner(env, learner, cfg.seed, cfg.train.compile)


def train_step(learner: Learner, runner: Runner) -> dict[str, float]:
    """One collect-then-learn iteration."""
    return learner.update(runner.collect())


def train(cfg: Config | None = None, *, resume: str | None = None, overrides: list[str] | None = None,
          progress: bool = True) -> RunResult:
    """Train ``cfg`` into a new run, or continue run ``resume`` (its stored config + ``overrides``)."""
    overrides = list(overrides or [])
    if resume is not None:
        root = Path(cfg.runs_dir) if cfg is not None else Path("runs")
        run = RunDir.open(root, resume)
        stored = run.load_config()
        cfg = build_config(apply_overrides(copy.deepcopy(stored), overrides))
        _refuse_shape_change(stored, cfg)  # before anything is written
        run.clean_temp_files()  # left by a kill mid-write
        finished = _finished(run, cfg)
        if finished is not None:
            return finished
    else:
        assert cfg is not None, "train() needs a config or a run to resume"
    torch.set_num_threads(cfg.train.torch_threads)
    keep_freed_memory()
    seed_everything(cfg.seed)
    check_memory(cfg)  # a lower bound before building the envs (task.num_envs=10**9 never gets that far)
    with _collector_paused():
        env = make_env(cfg.task, cfg.runner.kind, cfg.runner.workers, cfg.train.device, runner=cfg.runner)
    runner = None
    try:
        learner, runner = build_learner(cfg, env)
        loaded = None
        if resume is None:
            run = RunDir.create(cfg.runs_dir, config_dict=cfg.model_dump(mode="json"),
                                task=cfg.task.name, algorithm=cfg.algorithm, seed=cfg.seed, name=cfg.name)
        else:
            loaded = _resume_checkpoint(run, cfg, learner)  # refuse a checkpoint that does not fit, before writing
            run.save_config(cfg.model_dump(mode="json"))  # the effective config, e.g. an extended total
        run.log_overrides(overrides)
        return _loop(cfg, run, learner, runner, loaded, progress)
    finally:
        if hasattr(runner, "close"):  # actors of runner async and ray
            runner.close()
        env.close()


# Keys that fix the shape of the networks (or what the checkpoint holds): a resume cannot change them.
_FIXED_ON_RESUME = ("algorithm", "architecture", "credit.name", "task.name", "task.params.n_agents", "model")


def _refuse_shape_change(stored: dict[str, Any], cfg: Config) -> None:
    new = cfg.model_dump(mode="json")
    for key in _FIXED_ON_RESUME:
        old_v, new_v = _at(stored, key), _at(new, key)
        if isinstance(old_v, dict) or isinstance(new_v, dict):
            keys = sorted(set(old_v or {}) | set(new_v or {}))
            pairs = [(f"{key}.{k}", (old_v or {}).get(k), (new_v or {}).get(k)) for k in keys]
        else:
            pairs = [(key, old_v, new_v)]
        for name, a, b in pairs:
            if a != b and (a is not None or name == "task.params.n_agents"):
                raise ConfigError(f"{name} cannot change on resume ({a!r} in the run, {b!r} given); "
                                  "start a new run for a different network")


def _at(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _check_checkpoint_fits(ckpt: dict[str, Any], path: Path, cfg: Config, learner: Learner) -> None:
    """One line naming what differs between a checkpoint and this config, before load_state_dict."""
    for field in ("algo", "runner", "rng", "wall_s"):
        if field not in ckpt:
            raise CheckpointError(f"{path} lacks the field '{field}' (incomplete or not written by accord train)")
    if ckpt.get("algorithm") != cfg.algorithm:
        raise CheckpointError(f"{path} holds a '{ckpt.get('algorithm')}' run, not '{cfg.algorithm}'")
    if "credit" in ckpt and ckpt["credit"] != cfg.credit.name:
        raise CheckpointError(f"{path}: credit '{ckpt['credit']}' in the checkpoint vs '{cfg.credit.name}' here")
    record = ckpt.get("policy")
    if isinstance(record, dict):
        policy = learner.policy
        check_spec_fits(record.get("spec") or {}, spec_to_dict(policy.spec), str(path))
        for k, v in policy.model.model_dump().items():
            theirs = (record.get("model") or {}).get(k, v)
            if theirs != v:
                raise CheckpointError(f"{path}: model.{k} {theirs!r} in the checkpoint vs {v!r} here")


def _resume_checkpoint(run: RunDir, cfg: Config, learner: Learner) -> tuple[Path, dict[str, Any]]:
    """The latest usable checkpoint of ``run``, checked against this config (loaded once per resume)."""
    ckpt_path = latest_checkpoint(run.checkpoints_dir)
    if ckpt_path is None:
        found = list_checkpoints(run.checkpoints_dir)
        if found:
            load_checkpoint(found[-1])  # raises the specific reason (corrupt, foreign, ...)
        raise CheckpointError(f"run {run.name} has no checkpoint in {run.checkpoints_dir} to resume from")
    ckpt = load_checkpoint(ckpt_path)
    _check_checkpoint_fits(ckpt, ckpt_path, cfg, learner)
    return ckpt_path, ckpt


def _load_learner_state(learner: Learner, runner: Runner, ckpt: dict[str, Any], path: Path) -> float:
    """Restore learner, episode count and RNG states; the wall time the run had. One line if they don't fit."""
    try:
        learner.load_state_dict(ckpt["algo"])
        runner.stats.episodes = int(ckpt["runner"]["episodes"])
        if hasattr(runner, "load_state_dict"):  # actor seeds and restarts of runner async and ray
            runner.load_state_dict(ckpt["runner"])
        set_rng_state(ckpt["rng"])
        return float(ckpt["wall_s"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        lines = [x.strip() for x in str(e).strip().splitlines()] or [type(e).__name__]
        raise CheckpointError(f"{path} does not fit this learner ({type(e).__name__}: {' '.join(lines[:3])[:300]})"
                              ) from None


def _finished(run: RunDir, cfg: Config) -> RunResult | None:
    """A run whose latest checkpoint already reached ``train.total_env_steps``: nothing to resume."""
    ckpt = latest_checkpoint(run.checkpoints_dir)
    if ckpt is None or checkpoint_env_steps(ckpt) < cfg.train.total_env_steps:
        return None
    records = MetricsLog.read(run.path)
    last_return = records[-1].get("return_mean") if records else None
    return RunResult(run, checkpoint_env_steps(ckpt), 0.0, 0.0,
                     math.nan if last_return is None else last_return, "already finished")


def _loop(cfg: Config, run: RunDir, learner: Learner, runner: Runner,
          loaded: tuple[Path, dict[str, Any]] | None, progress: bool) -> RunResult:
    root = run.path.parent
    index = RunIndex(root)
    metrics = MetricsLog(run.path, logging=cfg.logging, params=cfg.model_dump(mode="json"))
    wall_before = 0.0
    if loaded is not None:
        ckpt_path, ckpt = loaded
        wall_before = _load_learner_state(learner, runner, ckpt, ckpt_path)
        metrics.truncate_after(learner.env_steps)
        logger.info("resumed %s from %s at %d env steps", run.name, ckpt_path.name, learner.env_steps)

    # Reward hacking is judged over recent log points; a resumed run re-reads its (flagged) history.
    hacking = RewardHackingMonitor(cfg.credit.monitor.hacking_window, cfg.credit.monitor.hacking_min_drop)
    for past in MetricsLog.read(run.path):
        hacking.observe(past)

    # -- evaluation protocol and live baseline check (accord.eval.protocol) -------------------------
    from accord.eval.protocol import EvalProtocol

    protocol = EvalProtocol(cfg, run, learner.env_steps)
    # ---------------------------------------------------------------------------------------------

    # -- robustness suite on new checkpoints (suite.every, accord/suite/hook.py) --
    from accord.suite.hook import make_suite_hook

    suite_hook = make_suite_hook(cfg, run.path)
    # -- faults: non-finite updates rolled back (train.max_nonfinite), env fault counters in metrics --
    from accord.nonfinite import NonFiniteGuard

    nonfinite = NonFiniteGuard(learner, cfg.train.max_nonfinite)
    fault_counts = getattr(runner, "env", None) and getattr(runner.env, "fault_counts", None)
    # -- per-agent cost (accord.cost): compute figures once in cost.json, traffic at every log point --
    from accord.cost import agent_costs, write_costs

    write_costs(run.path, agent_costs(learner.policy))
    cost_counts = getattr(runner, "env", None) and getattr(runner.env, "cost_counts", None)
    runner_metrics = getattr(runner, "metrics", None)  # lag, drops, restarts (runner async and ray)
    runner_state = getattr(runner, "state_dict", None)

    # The clock starts here: set-up (envs, learner, the cost figures above) is in the time from launch only.
    total = cfg.train.total_env_steps
    index.upsert(run.name, path=str(run.path), task=cfg.task.name, algorithm=cfg.algorithm, seed=cfg.seed,
                 status="running", env_steps=learner.env_steps)
    start = time.perf_counter()
    compiled_before = compile_seconds()
    last_ckpt = start
    log_every = cfg.train.log_interval
    next_log = (learner.env_steps // log_every + 1) * log_every
    steps_at_start = learner.env_steps

    def wall() -> float:
        return wall_before + time.perf_counter() - start

    def checkpoint() -> None:
        payload = {"algorithm": cfg.algorithm, "credit": cfg.credit.name, "algo": learner.state_dict(),
                   "policy": learner.policy.record(),
                   "runner": {"episodes": runner.stats.episodes, **(runner_state() if runner_state else {})},
                   "rng": rng_state(), "wall_s": wall()}
        path = checkpoint_path(run.checkpoints_dir, learner.env_steps)
        save_checkpoint(path, payload)
        prune_checkpoints(run.checkpoints_dir, cfg.train.keep_checkpoints)
        metrics.log_checkpoint(path)  # MLflow artifact (when logging.mlflow), pruned in step
        if suite_hook is not None:  # robustness suite hook
            suite_hook(path)

    status = "interrupted"
    record: dict[str, Any] = {}
    bar = TrainProgress(run.name, total, learner.env_steps, bar=progress)
    try:
        with _StopFlag() as stop:
            while learner.env_steps < total and not stop.requested:
                before = learner.env_steps
                losses = train_step(learner, runner)
                losses = nonfinite.check(losses, learner.env_steps)  # rolls back a non-finite update
                bar.update(learner.env_steps - before)
                if learner.env_steps >= next_log or learner.env_steps >= total:
                    next_log = (learner.env_steps // log_every + 1) * log_every
                    elapsed = time.perf_counter() - start
                    record = {"env_steps": learner.env_steps, "wall_s": round(wall(), 3),
                              "compile_s": round(compile_seconds() - compiled_before, 3),
                              "fps": round((learner.env_steps - steps_at_start) / max(elapsed, 1e-9), 1),
                              **_episode_fields(runner.stats.summary()), **losses,
                              **(fault_counts() if fault_counts else {}), **(cost_counts() if cost_counts else {}),
                              **(runner_metrics() if runner_metrics else {})}
                    record.update(protocol.on_log(record, learner.policy, cfg.algorithm))  # eval protocol
                    metrics.write(record)
                    flag = hacking.observe(record)
                    if flag is not None:
                        append_flags(run.path, [flag])
                        logger.warning("%s: reward hacking flagged: %s", run.name, flag["detail"])
                    index.upsert(run.name, env_steps=learner.env_steps, last_return=record["return_mean"])
                    bar.log(record)
                if time.perf_counter() - last_ckpt >= cfg.train.checkpoint_interval_s:
                    checkpoint()
                    last_ckpt = time.perf_counter()
            if not stop.requested:
                status = "finished"
        checkpoint()
        absolute = protocol.finish(learner.env_steps) if status == "finished" else None  # eval protocol
        if absolute is not None:
            metrics.write(absolute)
    except BaseException as e:
        index.upsert(run.name, status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
        bar.close()
        metrics.close()
        raise
    bar.close()
    metrics.close(status)
    index.upsert(run.name, status=status, env_steps=learner.env_steps)
    index.close()
    elapsed = time.perf_counter() - start
    return RunResult(run, learner.env_steps, wall(), (learner.env_steps - steps_at_start) / max(elapsed, 1e-9),
                     record.get("return_mean", math.nan), status, compile_seconds() - compiled_before)


def _episode_fields(summary: dict[str, float]) -> dict[str, float]:
    """Episode statistics for a log record; NaN (written as null) before any episode finished."""
    return {"return_mean": summary.get("return_mean", math.nan),
            "episode_len_mean": summary.get("episode_len_mean", math.nan),
            **{k: v for k, v in summary.items() if k not in ("return_mean", "episode_len_mean")}}

