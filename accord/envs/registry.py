"""The task registry: the single source of truth for `accord tasks`, config checks and tests.

Vectorized tasks (built-in, and VMAS) are classes ``Cls(num_envs, device, **params)``. Per-env tasks
(``per_env=True``) name a factory ``f(env, kwargs)`` of one PettingZoo ``ParallelEnv``;
``PettingZooVecEnv`` (or ``SubprocVecEnv`` workers) batch ``num_envs`` of them, with
``params: {env, kwargs, team_reward, episode_limit}``. ``pettingzoo`` takes a module whose
``parallel_env(**kwargs)`` builds one env; ``gymma`` takes a gymnasium id with tuple spaces.

``task.name: package.module:Name`` names user code: a class whose ``__init__`` takes ``num_envs`` is
vectorized like the built-ins; anything else (a ``ParallelEnv`` class or factory function, or a module
with ``parallel_env``) builds one env per call from ``task.params``, minus the adapter's
``team_reward`` and ``episode_limit``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from accord.envs.base import VecEnv
from accord.errors import ConfigError
from accord.plugins import Registry, is_plugin, load_object

if TYPE_CHECKING:
    from accord.config import RunnerConfig, TaskConfig


@dataclass(frozen=True)
class TaskEntry:
    target: str  # "module:attr", imported on use: the vectorized class, or the per-env factory
    summary: str
    per_env: bool = False  # target(env, kwargs) builds one ParallelEnv, batched by the PettingZoo adapter
    factory_params: tuple[str, ...] = ()  # per_env tasks: further task.params passed to target
    user: bool = False  # a user's task.name: task.params, less the adapter's, are its keyword arguments

    def load(self) -> Any:
        return load_object(self.target, "task")


ADAPTER_PARAMS = ("team_reward", "episode_limit")  # per-env tasks: read by the PettingZoo adapter
TEAM_REWARDS = ("sum", "mean")
_USER_TASK_KINDS = ("a PettingZoo ParallelEnv class or factory function, a module with parallel_env(), "
                    "or a vectorized class Cls(num_envs, device, **params)")


def _is_task(obj: Any) -> bool:
    return hasattr(obj, "parallel_env") if inspect.ismodule(obj) else callable(obj)


def _load_task(spec: str) -> TaskEntry:
    obj = load_object(spec, "task", _is_task, _USER_TASK_KINDS)
    vectorized = isinstance(obj, type) and "num_envs" in inspect.signature(obj).parameters
    return TaskEntry(spec, f"user task {spec}", per_env=not vectorized, user=True)


def _env_factory(obj: Any) -> Any:
    """What builds one env of a user's per-env task: the object, or its module's ``parallel_env``."""
    return obj.parallel_env if inspect.ismodule(obj) else obj


def user_env(spec: str, kwargs: dict[str, Any]) -> Any:
    """Module-level (picklable) factory for one env of a user's per-env task ``package.module:Name``."""
    return _env_factory(load_object(spec, "task"))(**kwargs)


TASKS: Registry[TaskEntry] = Registry("task", {
    "spread": TaskEntry("accord.envs.tasks.spread:Spread",
                        "cooperative navigation: N agents cover N landmarks (MPE simple_spread)"),
    "foraging": TaskEntry("accord.envs.tasks.foraging:Foraging",
                          "level-based foraging, cooperative: all agents load each food together"),
    "keydoor": TaskEntry("accord.envs.tasks.keydoor:KeyDoor",
                         "planning: visit K stations in order (keys then doors), sparse team reward; optimum 1.0"),
    "two_step": TaskEntry("accord.envs.tasks.matrix:TwoStep",
                          "QMIX two-step game; optimum return 8, additive (VDN) fit gets 7"),
    "climbing": TaskEntry("accord.envs.tasks.matrix:Climbing",
                          "climbing matrix game; optimum 11 per play at (a, a)"),
    "penalty": TaskEntry("accord.envs.tasks.matrix:Penalty",
                         "penalty matrix game with miscoordination cost k; optimum 10 per play"),
    "freerider": TaskEntry("accord.envs.tasks.freerider:FreeRider",
                           "team reward only, one agent can free-ride (lazy under shared credit); optimum 43.5"),
    "freerider_farm": TaskEntry("accord.envs.tasks.freerider:FarmableFreeRider",
                                "freerider with a farmable shaped activity bonus: reward hacking case"),
    "hidden_goal": TaskEntry("accord.envs.tasks.hidden_goal:HiddenGoal",
                             "each agent's goal is seen only by another agent: needs task.comm (messages); "
                             "optimum 5.25, best without messages 1.5, random 1.2"),
    "multimodal": TaskEntry("accord.envs.tasks.multimodal:Multimodal",
                            "instructed navigation: goal only in text, landmarks only in an image, own "
                            "position only in a sensor vector; optimum about -0.63, random about -8.1"),
    "faulty": TaskEntry("accord.envs.tasks.faulty:Faulty",
                        "a built-in task that raises, hangs or returns NaN on purpose: params {task: spread, "
                        "raise_prob: 0.02, hang_prob: 0.005, hang_s: 2, nan_prob: 0, ...}, all 0 by default "
                        "(docs/robustness.md)"),
    "pettingzoo": TaskEntry("accord.envs.registry:pettingzoo_env",
                            "any PettingZoo ParallelEnv: params {env: 'mpe2.simple_spread_v3', kwargs: {...}}",
                            per_env=True),
    "vmas": TaskEntry("accord.envs.vmas:VmasVecEnv",
                      "VMAS scenario, torch-vectorized: params {scenario: navigation, n_agents: 3, "
                      "continuous: true, max_steps: 100, ...}"),
    "gymma": TaskEntry("accord.envs.gymma:GymmaEnv",
                       "gymnasium multi-agent env with tuple spaces (lbforaging, rware): "
                       "params {env: 'lbforaging:Foraging-8x8-2p-2f-coop-v3', kwargs: {...}, action_masks: false}",
                       per_env=True, factory_params=("action_masks",)),
}, _load_task)


def _closest(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def task_problems(task: TaskConfig, runner_kind: str) -> list[str]:
    """Config-time checks of the task section: known task (or importable user task), parameters, runner fit."""
    if task.name not in TASKS and not is_plugin(task.name):
        return [f"task.name: unknown task '{task.name}'{_closest(task.name, list(TASKS))}; "
                f"allowed: {', '.join(TASKS)}, or 'package.module:Name'"]
    try:
        entry = TASKS.resolve(task.name)
        target = entry.load()
    except ConfigError as e:
        return [f"task.name: {e}"]
    if entry.per_env:
        problems = _adapter_problems(task.params)
        rest = {k: v for k, v in task.params.items() if k not in ADAPTER_PARAMS}
        if entry.user:
            return problems + _unknown_params(task.name, _env_factory(target), rest, ())
        allowed = sorted({"env", "kwargs", *entry.factory_params, *ADAPTER_PARAMS})
        problems += [f"task.params.{k}: unknown parameter{_closest(k, allowed)}; allowed: {', '.join(allowed)}"
                     for k in rest if k not in allowed]
        if "env" not in task.params:
            problems.append(f"task.params.env: required for task '{task.name}' (see `accord tasks`)")
        return problems
    if runner_kind == "subproc":
        return [f"runner.kind: 'subproc' runs PettingZoo envs in worker processes; task "
                f"'{task.name}' is already vectorized, use runner.kind=sync"]
    return _unknown_params(task.name, target, task.params, ("num_envs", "device"))


def _adapter_problems(params: dict[str, Any]) -> list[str]:
    problems = []
    if params.get("team_reward", "sum") not in TEAM_REWARDS:
        problems.append(f"task.params.team_reward: got {params['team_reward']!r}; allowed: {', '.join(TEAM_REWARDS)}")
    limit = params.get("episode_limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        problems.append(f"task.params.episode_limit: got {limit!r}; allowed: a whole number of steps >= 1, or null")
    return problems


def _unknown_params(name: str, target: Any, params: dict[str, Any], reserved: tuple[str, ...]) -> list[str]:
    """Keys of ``params`` that ``target`` does not take (none when it takes ``**kwargs``)."""
    try:
        signature = inspect.signature(target).parameters
    except (TypeError, ValueError):  # builtins without a signature: checked when built
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()):
        return []  # open parameters (e.g. a VMAS scenario's): the target checks them when built
    allowed = [p for p in signature if p not in reserved]
    return [f"task.params.{k}: unknown parameter of '{name}'{_closest(k, allowed)}; "
            f"allowed: {', '.join(allowed) or 'none'}" for k in params if k not in allowed]


def pettingzoo_env(module: str, kwargs: dict[str, Any]) -> Any:
    """Module-level (picklable) factory for one PettingZoo ParallelEnv."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"task.params.env: cannot import '{module}' ({e}); is it installed?") from None
    return mod.parallel_env(**kwargs)


def raw_env(task: TaskConfig) -> dict[str, Any] | None:
    """How to build one raw PettingZoo env of a per-env task without accord (for deployment):
    ``{"factory": "module" (its parallel_env) or "module:Name", "kwargs": {...}, "team_reward": ...}``;
    None for vectorized tasks, and for adapters that reshape the env (gymma)."""
    entry = TASKS[task.name]
    rest = dict(task.params)
    adapter = {k: rest.pop(k) for k in ADAPTER_PARAMS if k in rest}
    if entry.user and entry.per_env:
        factory, kwargs = task.name, rest
    elif task.name == "pettingzoo":
        factory, kwargs = rest["env"], rest.get("kwargs", {})
    else:
        return None
    return {"factory": factory, "kwargs": kwargs, "team_reward": adapter.get("team_reward", "sum")}


def make_env(task: TaskConfig, runner_kind: str = "sync", workers: int | None = None,
             device: str | torch.device = "cpu", runner: RunnerConfig | None = None) -> VecEnv:
    """Build the batch of envs a config asks for, guarded unless ``task.guard`` is off.

    Every env is wrapped in :class:`~accord.envs.resilient.ResilientVecEnv`: with ``runner`` (training)
    its retries, timeouts, restarts and quarantine settings apply; without (evaluation) an env that
    raises fails at once, as one error line naming the env and the step.
    """
    from accord.envs.resilient import ResilientVecEnv

    entry = TASKS[task.name]
    faults = None if runner is None else {"retries": runner.retries, "backoff_s": runner.backoff_s,
                                          "quarantine_after": runner.quarantine_after}

    def build() -> VecEnv:
        try:
            env = _build_env(entry, task, runner_kind, workers, device, runner, faults)
            if task.latency_ms > 0:
                from accord.envs.latency import LatencyVecEnv

                env = LatencyVecEnv(env, task.latency_ms, task.jitter_ms)
            return env
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            # e.g. task.params of the wrong type raising inside the task's (or the user's) constructor
            text = str(e).strip().splitlines()
            raise ConfigError(f"task '{task.name}' could not be built with task.params {task.params!r}: "
                              f"{type(e).__name__}: {text[0] if text else ''}") from e

    if runner is None:
        env: VecEnv = ResilientVecEnv(build, max_restarts=0)
    elif runner_kind == "subproc":  # the workers time out, restart and quarantine; this only counts
        env = ResilientVecEnv(build, max_restarts=0)
    else:
        env = ResilientVecEnv(build, step_timeout_s=runner.step_timeout_s, retries=runner.retries,
                              backoff_s=runner.backoff_s, max_restarts=runner.max_restarts)
    from accord.cost import CostMeter

    env = CostMeter(env, task.cost.budget)  # per-agent traffic and budgets: messages, bytes, tool calls
    if task.streams:
        from accord.envs.streams import StreamVecEnv

        env = StreamVecEnv(env, {m: (r.every, r.jitter) for m, r in task.streams.items()}, task.align)
    if task.guard:
        from accord.envs.guard import GuardedVecEnv

        env = GuardedVecEnv(env)
    return env


def _build_env(entry: TaskEntry, task: TaskConfig, runner_kind: str, workers: int | None,
               device: str | torch.device, runner: RunnerConfig | None, faults: dict[str, Any] | None) -> VecEnv:
    if entry.per_env:
        rest = dict(task.params)
        params = {k: rest.pop(k) for k in ADAPTER_PARAMS if k in rest}
        if entry.user:
            factory = functools.partial(user_env, task.name, rest)
        else:
            factory = functools.partial(entry.load(), rest.pop("env"), rest.pop("kwargs", {}), **rest)
        factories = [factory] * task.num_envs
        if runner_kind == "subproc":
            from accord.runners.subproc import SubprocVecEnv

            timing = {} if runner is None else {
                "max_restarts": runner.max_restarts,
                **({"step_timeout_s": runner.step_timeout_s} if runner.step_timeout_s else {})}
            return SubprocVecEnv(factories, workers=workers, device=device, faults=faults, **timing, **params)
        from accord.envs.pettingzoo import PettingZooVecEnv

        return PettingZooVecEnv(factories, device=device, faults=faults, **params)
    env = entry.load()(task.num_envs, device=device, **task.params)
    if task.comm.enabled:  # the message channel is part of the task (accord.comm)
        from accord.comm import CommChannel

        env = CommChannel(env, task.comm)
    return env
