"""Perturbations as composable :class:`~accord.envs.base.VecEnv` wrappers, each with a severity scale.

Every wrapper takes the env it perturbs, a severity ``s`` in ``(0, 1]`` and a seed for its own
``torch.Generator`` (so a perturbation draws the same noise on every run with the same seed, and
never touches the task's RNG: clean and perturbed episodes start from the same states). Wrappers
stack: ``ActionNoise(ObsNoise(env, 0.3, ...), 0.1, ...)`` is both at once.

How a severity maps to each perturbation (also in ``PERTURBATIONS`` and docs/robustness.md):

- ``obs_noise``: Gaussian noise, std ``s`` x the feature's std on clean episodes (float modalities).
- ``dropout``: each observation feature zeroed with probability ``s`` (``mode: modality``: a whole
  modality of an agent).
- ``stale_obs``: observations ``k = max(1, round(5 s))`` steps old.
- ``delay_actions``: actions applied ``k = max(1, round(5 s))`` steps late (no-ops first).
- ``agent_failure``: agent ``agent`` (0) fails at step ``(1 - s) * episode_limit``: ``frozen``
  (no-op), ``random`` actions, or ``removed`` (alive mask off, observation zeroed, no-op).
- ``random_teammate``: ``max(1, round(s N))`` agents (from the last) play uniformly random actions.
- ``action_noise``: discrete, a random available action with probability ``s``; continuous,
  Gaussian noise with std ``s`` x half the action box.
- ``init_shift``: task parameters outside training: spread ``spawn_range`` x ``(1 + s)``,
  foraging ``grid_size`` + ``max(1, round(4 s))`` (``SHIFTS``; observation shapes do not change).
- ``slow_steps``: a batch step sleeps ``50 s`` ms with probability ``s`` (wall time only).
- ``dropped_steps``: per env, with probability ``s / 2``, the action is ignored (no-op) and the
  previous observation repeated.
- ``message_loss``: each received message (``task.comm``, :mod:`accord.comm`) is lost with probability ``s``.
- ``message_delay``: received messages arrive ``k = max(1, round(5 s))`` steps late (nothing before).
  Both leave a task without messages unchanged.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step, VecEnv


class Perturbation:
    """Base wrapper: forwards everything to ``env``; subclasses change actions going in or steps coming out."""

    def __init__(self, env: VecEnv, severity: float, seed: int = 0, **_: Any) -> None:
        self.env, self.severity = env, float(severity)
        self.spec: EnvSpec = env.spec
        self.num_envs: int = env.num_envs
        self.device: torch.device = env.device
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.t = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)  # step within episode
        self.last: Step | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr == "env":
            raise AttributeError(attr)
        return getattr(self.env, attr)

    def reset(self, seed: int | None = None) -> Step:
        self.t.zero_()
        self.on_reset()
        self.last = self.env.reset(seed)
        self.last = self.observe(self.last, torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self.last

    def step(self, actions: Tensor) -> Step:
        actions = self.available(self.act(actions))
        step = self.env.step(actions)
        self.t = (self.t + 1).masked_fill(step.done, 0)
        self.last = self.observe(step, step.done)
        return self.last

    def close(self) -> None:
        self.env.close()

    # -- hooks -------------------------------------------------------------------------------------
    def on_reset(self) -> None:
        """Clear per-episode state before a reset."""

    def act(self, actions: Tensor) -> Tensor:
        """The actions the env really gets."""
        return actions

    def observe(self, step: Step, starts: Tensor) -> Step:
        """The step the policy sees; ``starts`` [B] marks envs whose observation begins an episode."""
        return step

    # -- helpers -----------------------------------------------------------------------------------
    def available(self, actions: Tensor) -> Tensor:
        """A perturbed discrete action that is no longer available (a delayed or stale choice) is played
        as the first available one (the no-op in the built-in tasks), as a real actuator would refuse it."""
        if self.spec.action_kind != "discrete" or self.last is None:
            return actions
        avail = self.last.avail_actions
        ok = avail.gather(-1, actions.clamp(0, self.spec.n_actions - 1).unsqueeze(-1)).squeeze(-1)
        if bool(ok.all()):
            return actions
        return torch.where(ok, actions, avail.int().argmax(-1))

    def noop(self, like: Tensor) -> Tensor:
        return torch.zeros_like(like)

    def random_actions(self, avail: Tensor) -> Tensor:
        spec = self.spec
        if spec.action_kind == "discrete":
            scores = torch.rand(avail.shape, generator=self.gen, device=self.device).masked_fill(~avail, -1.0)
            return scores.argmax(-1)
        u = torch.rand(self.num_envs, spec.n_agents, spec.n_actions, generator=self.gen, device=self.device)
        return spec.action_low + u * (spec.action_high - spec.action_low)

    def bernoulli(self, shape: tuple[int, ...], p: float) -> Tensor:
        return torch.rand(shape, generator=self.gen, device=self.device) < p


def _lag(severity: float) -> int:
    return max(1, round(5 * severity))


class ObsNoise(Perturbation):
    """Gaussian observation noise, per modality, scaled to each feature's std on clean episodes."""

    def __init__(self, env: VecEnv, severity: float, seed: int = 0, obs_std: dict[str, Tensor] | None = None,
                 **kw: Any) -> None:
        super().__init__(env, severity, seed)
        self.obs_std = obs_std or {}

    def observe(self, step: Step, starts: Tensor) -> Step:
        obs = {}
        for m, x in step.obs.items():
            if m == "text":  # token ids: no meaningful Gaussian noise
                obs[m] = x
                continue
            std = self.obs_std.get(m)
            std = torch.ones(x.shape[2:], device=self.device) if std is None else std.to(self.device)
            noise = torch.randn(x.shape, generator=self.gen, device=self.device) * std * self.severity
            obs[m] = (x + noise) if x.is_floating_point() else (x.float() + noise).round().clamp(0, 255).to(x.dtype)
        return replace(step, obs=obs)


class Dropout(Perturbation):
    """Sensor dropout: features (or, ``mode: modality``, a whole modality of an agent) read as zero."""

    def __init__(self, env: VecEnv, severity: float, seed: int = 0, mode: str = "feature", **kw: Any) -> None:
        super().__init__(env, severity, seed)
        self.mode = mode

    def observe(self, step: Step, starts: Tensor) -> Step:
        obs = {}
        for m, x in step.obs.items():
            shape = tuple(x.shape) if self.mode == "feature" else (*x.shape[:2], *([1] * (x.dim() - 2)))
            obs[m] = x.masked_fill(self.bernoulli(shape, self.severity).expand_as(x), 0)
        return replace(step, obs=obs)


class StaleObs(Perturbation):
    """Latency: the policy sees the observation of ``k`` steps ago (the episode's first one early on)."""

    def on_reset(self) -> None:
        self.k = _lag(self.severity)
        self.history: deque[dict[str, Tensor]] = deque(maxlen=self.k + 1)

    def observe(self, step: Step, starts: Tensor) -> Step:
        fresh = {m: x.clone() for m, x in step.obs.items()}
        for past in self.history:  # an episode's start overwrites what came before it, per env
            for m in past:
                past[m][starts] = fresh[m][starts]
        self.history.append(fresh)
        return replace(step, obs={m: x.clone() for m, x in self.history[0].items()})


class DelayActions(Perturbation):
    """Actions reach the env ``k`` steps late; an episode starts with ``k`` no-ops."""

    def on_reset(self) -> None:
        self.k = _lag(self.severity)
        self.queue: deque[Tensor] = deque()

    def act(self, actions: Tensor) -> Tensor:
        if not self.queue:
            self.queue.extend(self.noop(actions) for _ in range(self.k))
        new = (self.t == 0).view(-1, *([1] * (actions.dim() - 1)))  # envs that just started an episode
        self.queue = deque(a.masked_fill(new, 0) for a in self.queue)  # forget the last episode's actions
        self.queue.append(actions)
        return self.queue.popleft()


class AgentFailure(Perturbation):
    """Agent ``agent`` fails at step ``(1 - s) * episode_limit``: frozen, random, or removed."""

    def __init__(self, env: VecEnv, severity: float, seed: int = 0, mode: str = "frozen", agent: int = 0,
                 **kw: Any) -> None:
        super().__init__(env, severity, seed)
        self.mode, self.agent = mode, agent % env.spec.n_agents
        self.fail_at = int(round((1 - self.severity) * env.spec.episode_limit))

    def failed(self) -> Tensor:
        return self.t >= self.fail_at  # [B]

    def act(self, actions: Tensor) -> Tensor:
        failed = self.failed()
        if not bool(failed.any()):
            return actions
        actions = actions.clone()
        i = self.agent
        if self.mode == "random" and self.last is not None:
            rand = self.random_actions(self.last.avail_actions)
            actions[failed, i] = rand[failed, i]
        else:
            actions[failed, i] = 0
        return actions

    def observe(self, step: Step, starts: Tensor) -> Step:
        if self.mode != "removed":
            return step
        failed = self.failed()
        mask = step.agent_mask.clone()
        mask[failed, self.agent] = False
        obs = {}
        for m, x in step.obs.items():
            x = x.clone()
            x[failed, self.agent] = 0
            obs[m] = x
        return replace(step, obs=obs, agent_mask=mask)


class RandomTeammate(Perturbation):
    """``max(1, round(s N))`` agents, counted from the last, act uniformly at random."""

    def act(self, actions: Tensor) -> Tensor:
        n = self.spec.n_agents
        k = min(n, max(1, round(self.severity * n)))
        actions = actions.clone()
        actions[:, n - k:] = self.random_actions(self.last.avail_actions)[:, n - k:]
        return actions


class ActionNoise(Perturbation):
    """Discrete: a random available action with probability ``s``; continuous: Gaussian noise."""

    def act(self, actions: Tensor) -> Tensor:
        spec = self.spec
        if spec.action_kind == "discrete":
            swap = self.bernoulli(tuple(actions.shape), self.severity)
            return torch.where(swap, self.random_actions(self.last.avail_actions), actions)
        half = (spec.action_high - spec.action_low) / 2
        noise = torch.randn(actions.shape, generator=self.gen, device=self.device) * self.severity * half
        return (actions + noise).clamp(spec.action_low, spec.action_high)


class SlowSteps(Perturbation):
    """Env-side fault: a step takes ``50 s`` ms longer with probability ``s`` (once per batch step)."""

    def act(self, actions: Tensor) -> Tensor:
        if bool(self.bernoulli((1,), self.severity)):
            time.sleep(0.05 * self.severity)
        return actions


class DroppedSteps(Perturbation):
    """Env-side fault: per env, with probability ``s / 2``, the action is ignored (no-op) and the policy
    sees the previous observation again. A vectorized env steps all its envs, so a dropped step plays
    the no-op rather than freezing time."""

    def act(self, actions: Tensor) -> Tensor:
        self.dropped = self.bernoulli((self.num_envs,), self.severity / 2) & (self.t > 0)
        return actions.masked_fill(self.dropped.view(-1, *([1] * (actions.dim() - 1))), 0)

    def step(self, actions: Tensor) -> Step:
        prev = self.last
        step = super().step(actions)
        keep = self.dropped & ~step.done
        if prev is None or not bool(keep.any()):
            return step
        obs = {m: torch.where(keep.view(-1, *([1] * (x.dim() - 1))), prev.obs[m], x) for m, x in step.obs.items()}
        self.last = replace(step, obs=obs)
        return self.last


class _Messages(Perturbation):
    """Base of the message faults: they change only the received messages, the last
    ``message_features`` of ``obs["vector"]`` laid out ``[N - 1, V]`` per agent (accord.comm)."""

    def observe(self, step: Step, starts: Tensor) -> Step:
        width = getattr(self.env, "message_features", 0)
        if not width:
            return step
        x = step.obs["vector"]
        inbox = x[..., -width:].reshape(*x.shape[:2], self.spec.n_agents - 1, -1)  # [B, N, N-1, V]
        inbox = self.messages(inbox, starts)
        return replace(step, obs={**step.obs, "vector": torch.cat([x[..., :-width], inbox.flatten(2)], dim=-1)})

    def messages(self, inbox: Tensor, starts: Tensor) -> Tensor:
        raise NotImplementedError


class MessageLoss(_Messages):
    """Each received message is lost (reads as nothing received) with probability ``s``."""

    def messages(self, inbox: Tensor, starts: Tensor) -> Tensor:
        return inbox * ~self.bernoulli(tuple(inbox.shape[:3]), self.severity)[..., None]


class MessageDelay(_Messages):
    """Received messages arrive ``k`` steps late; nothing arrives in an episode's first ``k`` steps."""

    def on_reset(self) -> None:
        self.k = _lag(self.severity)
        self.queue: deque[Tensor] = deque()

    def messages(self, inbox: Tensor, starts: Tensor) -> Tensor:
        if not self.queue:
            self.queue.extend(torch.zeros_like(inbox) for _ in range(self.k))
        at_start = starts[:, None, None, None]
        self.queue = deque(q.masked_fill(at_start, 0) for q in self.queue)  # forget the last episode's
        self.queue.append(inbox)
        return self.queue.popleft()


# -- init_shift: task parameters outside training ----------------------------------------------------

def _spread_shift(params: dict[str, Any], s: float) -> dict[str, Any]:
    return {**params, "spawn_range": float(params.get("spawn_range", 1.0)) * (1 + s)}


def _foraging_shift(params: dict[str, Any], s: float) -> dict[str, Any]:
    return {**params, "grid_size": int(params.get("grid_size", 8)) + max(1, round(4 * s))}


# Task name -> params shifted by severity (observation shapes must not change).
SHIFTS: dict[str, Callable[[dict[str, Any], float], dict[str, Any]]] = {
    "spread": _spread_shift,
    "foraging": _foraging_shift,
}


@dataclass(frozen=True)
class Kind:
    wrapper: type[Perturbation] | None  # None: the perturbation changes the env's params (init_shift)
    summary: str
    options: tuple[str, ...] = ()


PERTURBATIONS: dict[str, Kind] = {
    "obs_noise": Kind(ObsNoise, "Gaussian observation noise, s x clean std per feature"),
    "dropout": Kind(Dropout, "observation features zeroed with probability s", ("mode",)),
    "stale_obs": Kind(StaleObs, "observations k = max(1, round(5 s)) steps old"),
    "delay_actions": Kind(DelayActions, "actions applied k = max(1, round(5 s)) steps late"),
    "agent_failure": Kind(AgentFailure, "an agent fails at step (1 - s) T: frozen | random | removed",
                          ("mode", "agent")),
    "random_teammate": Kind(RandomTeammate, "max(1, round(s N)) agents play uniformly random actions"),
    "action_noise": Kind(ActionNoise, "random action with probability s (Gaussian for continuous)"),
    "init_shift": Kind(None, "initial states outside training (spread spawn range, foraging grid size)"),
    "slow_steps": Kind(SlowSteps, "env steps 50 s ms slower with probability s"),
    "dropped_steps": Kind(DroppedSteps, "per env, with probability s/2, action ignored and obs repeated"),
    "message_loss": Kind(MessageLoss, "each received message (task.comm) lost with probability s"),
    "message_delay": Kind(MessageDelay, "received messages k = max(1, round(5 s)) steps late"),
}


def wrap(env: VecEnv, kinds: list[tuple[str, dict[str, Any]]], severity: float, seed: int,
         obs_std: dict[str, Tensor] | None = None) -> VecEnv:
    """Stack the wrappers of ``kinds`` ``[(kind, options)]`` on ``env`` in order (init_shift is skipped:
    it acts when the env is built)."""
    for i, (kind, options) in enumerate(kinds):
        cls = PERTURBATIONS[kind].wrapper
        if cls is not None:
            env = cls(env, severity, seed=seed + 7919 * (i + 1), obs_std=obs_std, **options)
    return env
