"""A cheap validating wrapper: a broken env fails at the step it breaks, with one clear line.

Without it a wrong shape surfaces as a broadcasting error deep in a model, and a NaN reward as a
NaN loss hours later. Every check is a handful of whole-tensor ops (one host sync for all finiteness
and mask checks), so the guard stays on by default. On the CPU the value checks run in numpy on the
tensors' own memory: on fields of a few hundred numbers, between env steps, numpy's reductions cost
about a third of torch's per-op dispatch (docs/benchmarks.md, ninth speed round).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from accord.envs.base import OBS_DTYPES, EnvSpec, Step, VecEnv
from accord.errors import EnvError

_LAYOUT_HINT = "see the layout in accord/envs/base.py"


class GuardedVecEnv:
    """Wraps any :class:`VecEnv`; validates every returned :class:`Step` and every action passed in.

    Raises :class:`EnvError` naming the env, the field and what was expected. Other attributes of the
    wrapped env (e.g. ``restarts``) are forwarded.
    """

    def __init__(self, env: VecEnv, name: str | None = None) -> None:
        self.env = env
        self.spec: EnvSpec = env.spec
        self.num_envs: int = env.num_envs
        self.device: torch.device = env.device
        self.name = name or getattr(env, "name", type(env).__name__)
        self._last: Step | None = None
        self.steps = 0  # steps so far, named in errors
        self._numpy = self.device.type == "cpu"  # value checks in numpy (see the module docstring)
        self._env_rows, self._agent_cols = np.ogrid[:self.num_envs, :self.spec.n_agents]  # index [B, N] by action

    def __getattr__(self, attr: str) -> Any:
        if attr == "env":  # not yet set (e.g. while unpickling): avoid recursing
            raise AttributeError(attr)
        return getattr(self.env, attr)

    def reset(self, seed: int | None = None) -> Step:
        self.steps = 0
        self._last = self._check(self.env.reset(seed))
        return self._last

    def step(self, actions: Tensor) -> Step:
        self.steps += 1
        self._check_actions(actions)
        self._last = self._check(self.env.step(actions))
        return self._last

    def close(self) -> None:
        self.env.close()

    # -- checks -------------------------------------------------------------------------------------

    def _fail(self, message: str, hint: str) -> EnvError:
        at = f" at step {self.steps}" if self.steps else " at reset"
        return EnvError(f"env '{self.name}'{at}: {message}; hint: {hint}")

    def _expect(self, field: str, t: Any, shape: tuple[int, ...], dtype: torch.dtype, layout: str) -> None:
        if not isinstance(t, Tensor):
            raise self._fail(f"{field} is a {type(t).__name__}, expected a tensor {layout}", _LAYOUT_HINT)
        if tuple(t.shape) != shape:
            raise self._fail(f"{field} has shape {tuple(t.shape)}, expected {shape} = {layout}", _LAYOUT_HINT)
        if t.dtype != dtype:
            raise self._fail(f"{field} has dtype {t.dtype}, expected {dtype}", _LAYOUT_HINT)

    def _check(self, step: Step) -> Step:
        spec, b, n = self.spec, self.num_envs, self.spec.n_agents
        if set(step.obs) != set(spec.obs_shapes):
            raise self._fail(
                f"obs has modalities {sorted(step.obs)}, expected {sorted(spec.obs_shapes)}", _LAYOUT_HINT
            )
        observations = [("obs", step.obs, step.state)]
        if step.final_state is not None:
            observations.append(("final_obs", step.final_obs, step.final_state))
        finite: list[tuple[str, Tensor]] = []  # float fields that must hold no NaN/inf
        for prefix, obs, state in observations:
            for m, shape in spec.obs_shapes.items():
                field = f"{prefix}['{m}']"
                self._expect(
                    field,
                    obs.get(m),
                    (b, n, *shape),
                    OBS_DTYPES.get(m, torch.float32),
                    "[B, N, " + ", ".join(map(str, shape)) + "]",
                )
                if obs[m].is_floating_point():
                    finite.append((field, obs[m]))
            state_field = "state" if prefix == "obs" else "final_state"
            self._expect(state_field, state, (b, spec.state_dim), torch.float32, "[B, state_dim]")
            finite.append((state_field, state))
        self._expect("reward", step.reward, (b,), torch.float32, "[B]")
        self._expect("agent_reward", step.agent_reward, (b, n), torch.float32, "[B, N]")
        finite += [("reward", step.reward), ("agent_reward", step.agent_reward)]
        self._expect("terminated", step.terminated, (b,), torch.bool, "[B]")
        self._expect("truncated", step.truncated, (b,), torch.bool, "[B]")
        self._expect("agent_mask", step.agent_mask, (b, n), torch.bool, "[B, N]")
        self._expect(
            "avail_actions", step.avail_actions, (b, n, spec.avail_dim), torch.bool, "[B, N, avail_dim]"
        )
        for k, v in step.info.items():
            if not isinstance(v, Tensor) or v.dim() == 0 or v.shape[0] != b:
                got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise self._fail(
                    f"info['{k}'] is {got}, expected a tensor [B] or [B, N] with B={b}", _LAYOUT_HINT
                )

        tokens = [(f"{prefix}['text']", obs["text"]) for prefix, obs, _ in observations if "text" in obs]
        if self._values_ok([t for _, t in finite if t.numel()], [t for _, t in tokens], step):
            return step
        for field, t in finite:
            bad = ~torch.isfinite(t)
            if bad.any():
                where = bad.nonzero()[0].tolist()
                kind = "NaN" if torch.isnan(t[tuple(where)]) else "inf"
                at = f"env {where[0]}" + (
                    f", agent {where[1]}" if t.dim() > 1 and "state" not in field else ""
                )
                raise self._fail(
                    f"{kind} in {field} at {at}",
                    "check the env for a division by zero or overflow, or clip its outputs",
                )
        for field, t in tokens:
            if not bool(((t >= 0) & (t < spec.vocab_size)).all()):
                raise self._fail(f"{field} holds token ids from {int(t.min())} to {int(t.max())}, outside the "
                                 f"vocabulary [0, {spec.vocab_size})", "set EnvSpec.vocab_size to cover every id")
        env, agent = (~step.avail_actions.any(-1) & step.agent_mask).nonzero()[0].tolist()
        raise self._fail(
            f"avail_actions has no available action for alive agent {agent} at env {env}",
            "every alive agent needs at least one available action (e.g. a no-op)",
        )

    def _values_ok(self, floats: list[Tensor], tokens: list[Tensor], step: Step) -> bool:
        """No NaN/inf in any float field, every token id in the vocabulary, an action for every live agent."""
        vocab, avail, live = self.spec.vocab_size, step.avail_actions, step.agent_mask
        if self._numpy:
            return bool(all(np.isfinite(t.numpy()).all() for t in floats)
                        and all(((x := t.numpy()) >= 0).all() and (x < vocab).all() for t in tokens)
                        and (not self.spec.avail_dim or (avail.numpy().any(-1) >= live.numpy()).all()))
        # One op over every float field: the max |x| of each is finite iff the field holds no NaN/inf.
        flags = [(torch.stack(torch._foreach_norm(floats, float("inf"))) < float("inf")).all()] if floats else []
        flags += [((t >= 0) & (t < vocab)).all() for t in tokens]
        if self.spec.avail_dim:
            flags.append((avail.any(-1) >= live).all())  # [B, N]: some action, or not live
        return not flags or bool(functools.reduce(torch.logical_and, flags))  # the only host sync on the happy path

    def _unavailable(self, actions: Tensor) -> tuple[int, int] | None:
        """The first (env, agent) whose action is out of range or unavailable (dead agents may send any id
        in range), or None."""
        top, last = self.spec.n_actions - 1, self._last
        if self._numpy:
            a, avail, live = actions.numpy(), last.avail_actions.numpy(), last.agent_mask.numpy()
            clamped = a.clip(0, top)
            ok = (clamped == a) & (avail[self._env_rows, self._agent_cols, clamped] >= live)
            return None if ok.all() else tuple(int(i) for i in np.argwhere(~ok)[0])
        clamped = actions.clamp(0, top)
        chosen = last.avail_actions.gather(-1, clamped.unsqueeze(-1)).squeeze(-1)  # [B, N]
        ok = (clamped == actions) & (chosen >= last.agent_mask)
        return None if bool(ok.all()) else tuple((~ok).nonzero()[0].tolist())

    def _check_actions(self, actions: Tensor) -> None:
        if self._last is None:
            raise self._fail("step() called before reset()", "call reset() first")
        spec, b, n = self.spec, self.num_envs, self.spec.n_agents
        if spec.action_kind == "continuous":
            self._expect("actions", actions, (b, n, spec.n_actions), torch.float32, "[B, N, action_dim]")
            if not bool(torch.isfinite(actions).all()):
                env, agent = (~torch.isfinite(actions)).nonzero()[0, :2].tolist()
                raise self._fail(
                    f"non-finite action at env {env}, agent {agent}", "check the policy's outputs"
                )
            return
        self._expect("actions", actions, (b, n), torch.int64, "[B, N]")
        bad = self._unavailable(actions)
        if bad is not None:
            env, agent = bad
            action = int(actions[env, agent])
            raise self._fail(
                f"action {action} of agent {agent} at env {env} is unavailable (n_actions={spec.n_actions})",
                "sample actions under the avail_actions mask of the previous step",
            )
