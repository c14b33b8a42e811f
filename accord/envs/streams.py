"""Streams at different rates: each modality arrives on its own clock, and the policy is told how old it is.

Real agents get a camera frame every few steps, text when someone writes it, and sensors every step.
:class:`StreamVecEnv` wraps any :class:`~accord.envs.base.VecEnv` and gives modality ``m`` a period
``every`` and a ``jitter``: after each arrival the next one comes ``every + U{0..jitter}`` steps later
(a random phase at reset; the clock runs across episode boundaries, as a sensor's would). Modalities
not listed arrive every step.

Between arrivals the policy sees the last value held. ``align`` chooses what else it sees:

- ``age_mask`` (default): values held from a finished episode are dropped at the boundary (zeros), and
  for each listed modality two features are appended to ``vector`` (created if the task has none):
  its age ``min(steps since it arrived, episode_limit) / episode_limit`` (1 while missing), then its
  availability (1 once a value of this episode arrived). A stale or missing modality is never silent.
- ``hold``: the naive baseline, hold the last value and say nothing (it may come from the last episode).

The global state passes through unchanged: it is read by centralized critics in training only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step, VecEnv
from accord.errors import ConfigError

Align = Literal["age_mask", "hold"]
SEED_OFFSET = 7919  # the arrival clock's generator is seeded apart from the task's


class StreamVecEnv:
    """Wraps ``env`` so that the modalities in ``rates`` ({modality: (every, jitter)}) arrive at their rates."""

    def __init__(self, env: VecEnv, rates: dict[str, tuple[int, int]], align: Align = "age_mask") -> None:
        spec = env.spec
        if unknown := sorted(set(rates) - set(spec.obs_shapes)):
            raise ConfigError(f"task.streams: {unknown} not observed by this task; its modalities: "
                              f"{', '.join(sorted(spec.obs_shapes))}")
        self.env, self.rates, self.align = env, dict(sorted(rates.items())), align
        self.num_envs, self.device = env.num_envs, env.device
        self.name = getattr(env, "name", type(env).__name__)
        self._raw_vector = spec.obs_shapes.get("vector", (0,))[0]
        shapes = dict(spec.obs_shapes)
        if align == "age_mask":
            shapes["vector"] = (self._raw_vector + 2 * len(self.rates),)
        self.spec: EnvSpec = replace(spec, obs_shapes=shapes)
        self._gen = torch.Generator(device=self.device)

    def __getattr__(self, attr: str) -> Any:
        if attr == "env":
            raise AttributeError(attr)
        return getattr(self.env, attr)

    def reset(self, seed: int | None = None) -> Step:
        if seed is not None:
            self._gen.manual_seed(seed + SEED_OFFSET)
        step = self.env.reset(seed)
        b = self.num_envs
        self._held = {m: step.obs[m].clone() for m in self.rates}
        self._age = {m: torch.zeros(b, device=self.device) for m in self.rates}
        self._valid = {m: torch.ones(b, dtype=torch.bool, device=self.device) for m in self.rates}
        self._due = {m: self._gap(m, phase=True) for m in self.rates}
        return replace(step, obs=self._view(step.obs, self._held, self._age, self._valid))

    def step(self, actions: Tensor) -> Step:
        step = self.env.step(actions)
        done = step.done  # [B]
        held, age, valid = {}, {}, {}
        final_held, final_age, final_valid = {}, {}, {}
        for m in self.rates:
            due = self._due[m] - 1
            arrive = due <= 0  # [B]
            self._due[m] = torch.where(arrive, self._gap(m), due)
            b_shape = (-1,) + (1,) * (self._held[m].dim() - 1)
            arrived = arrive.view(b_shape)
            older = self._age[m] + 1
            if step.final_state is not None:  # the finished episodes' last view
                final_held[m] = torch.where(arrived, step.final_obs[m], self._held[m])
                final_age[m] = torch.where(arrive, 0.0, older)
                final_valid[m] = arrive | self._valid[m]
            keep = self._held[m]
            valid_m = self._valid[m]
            if self.align == "age_mask":  # a value from the finished episode is not this episode's
                keep = torch.where(done.view(b_shape), torch.zeros_like(keep), keep)
                valid_m = valid_m & ~done
            held[m] = torch.where(arrived, step.obs[m], keep)
            age[m] = torch.where(arrive, 0.0, older)
            valid[m] = arrive | valid_m
        self._held, self._age, self._valid = held, age, valid
        out = replace(step, obs=self._view(step.obs, held, age, valid))
        if step.final_state is not None:
            out.final_obs = self._view(step.final_obs, final_held, final_age, final_valid)
        return out

    def close(self) -> None:
        self.env.close()

    def _gap(self, m: str, phase: bool = False) -> Tensor:
        """Steps until the next arrival [B]: ``every + U{0..jitter}``, or a random phase ``U{1..every+jitter}``."""
        every, jitter = self.rates[m]
        low, high = (1, every + jitter) if phase else (every, every + jitter)
        return torch.randint(low, high + 1, (self.num_envs,), generator=self._gen, device=self.device)

    def _view(self, obs: dict[str, Tensor], held: dict[str, Tensor], age: dict[str, Tensor],
              valid: dict[str, Tensor]) -> dict[str, Tensor]:
        """What the policy sees: held values, plus age and availability features under ``age_mask``."""
        view = {**obs, **held}
        if self.align == "hold":
            return view
        limit = float(self.spec.episode_limit)
        feats = [torch.where(valid[m], age[m].clamp_max(limit) / limit, 1.0) for m in self.rates]
        feats += [valid[m].float() for m in self.rates]
        b, n = self.num_envs, self.spec.n_agents
        extra = torch.stack(feats, -1)[:, None].expand(b, n, -1)  # [B, N, 2M]
        base = view.get("vector", extra[..., :0])  # the task's own sensors (or none)
        view["vector"] = torch.cat([base, extra], dim=-1)  # [B, N, D + 2M]
        return view
