"""A cheap validating wrapper: a broken env fails at the step it breaks, with one clear line.

Without it a wrong shape surfaces as a broadcasting error deep in a model, and a NaN reward as a
NaN loss hours later. Every check is a handful of whole-tensor ops (one host sync for all finiteness
and mask checks), so the guard stays on by default. On the CPU the value checks run in numpy on the
tensors' own memory: on fields of a few hundred numbers, between env steps, numpy's reductions cost
about a third of torch's per-op dispatch (docs/benchmarks.md, ninth speed round).
"""

from __future__ import annotations

import functools
import math
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
        b, n = self.num_envs, self.spec.n_agents
        # What every step must hold, worked out once: (field, modality, shape, dtype, layout) per observation
        # modality, for obs and final_obs, and (field, shape, dtype, layout) for the fields read by attribute.
        self._obs_layout = {prefix: [(f"{prefix}['{m}']", m, (b, n, *shape), OBS_DTYPES.get(m, torch.float32),
                                      "[B, N, " + ", ".join(map(str, shape)) + "]")
                                     for m, shape in self.spec.obs_shapes.items()]
                            for prefix in ("obs", "final_obs")}
        self._modalities = set(self.spec.obs_shapes)
        self._step_layout = [("reward", (b,), torch.float32, "[B]"), ("agent_reward", (b, n), torch.float32, "[B, N]"),
                             ("terminated", (b,), torch.bool, "[B]"), ("truncated", (b,), torch.bool, "[B]"),
                             ("agent_mask", (b, n), torch.bool, "[B, N]"),
                             ("avail_actions", (b, n, self.spec.avail_dim), torch.bool, "[B, N, avail_dim]")]
        # The action check reads the last step's avail_actions flat: (env, agent)'s action a is at row offset + a.
        self._offsets = np.arange(b * n, dtype=np.int64).reshape(b, n) * self.spec.avail_dim
        self._avail_flat = self._live = np.empty(0, bool)

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
        spec, b = self.spec, self.num_envs
        if step.obs.keys() != self._modalities:
            raise self._fail(
                f"obs has modalities {sorted(step.obs)}, expected {sorted(spec.obs_shapes)}", _LAYOUT_HINT
            )
        observations = [("obs", step.obs, step.state)]
        if step.final_state is not None:
            observations.append(("final_obs", step.final_obs, step.final_state))
        fields = []  # (field, tensor, shape, dtype, layout), in the order errors are reported
        for prefix, obs, state in observations:
            fields += [(field, obs.get(m), *rest) for field, m, *rest in self._obs_layout[prefix]]
            fields.append(("state" if prefix == "obs" else "final_state", state, (b, spec.state_dim), torch.float32,
                           "[B, state_dim]"))
        fields += [(name, getattr(step, name), *rest) for name, *rest in self._step_layout]
        for field, t, shape, dtype, layout in fields:
            if not (isinstance(t, Tensor) and t.shape == shape and t.dtype == dtype):
                self._expect(field, t, shape, dtype, layout)  # raises, naming what differs
        for k, v in step.info.items():
            if not isinstance(v, Tensor) or v.dim() == 0 or v.shape[0] != b:
                got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise self._fail(
                    f"info['{k}'] is {got}, expected a tensor [B] or [B, N] with B={b}", _LAYOUT_HINT
                )

        finite = [(field, t) for field, t, _, dtype, _ in fields if dtype.is_floating_point]  # no NaN/inf
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
        stuck = (~step.avail_actions.any(-1) & step.agent_mask).nonzero() if spec.avail_dim else []
        if len(stuck):
            env, agent = stuck[0].tolist()
            raise self._fail(
                f"avail_actions has no available action for alive agent {agent} at env {env}",
                "every alive agent needs at least one available action (e.g. a no-op)",
            )
        return step  # the fast check's sum overflowed: every value is finite after all

    def _values_ok(self, floats: list[Tensor], tokens: list[Tensor], step: Step) -> bool:
        """No NaN/inf in any float field, every token id in the vocabulary, an action for every live agent."""
        vocab, avail, live = self.spec.vocab_size, step.avail_actions, step.agent_mask
        if self._numpy:
            avail_np, self._live = avail.numpy(), live.numpy()
            self._avail_flat = avail_np.reshape(-1)  # for the next action check
            # A sum is finite only if every term is (NaN and inf propagate), so one reduction per field decides;
            # a sum that overflows sends the step to the exact checks.
            return bool(math.isfinite(sum(float(np.add.reduce(t.numpy(), None)) for t in floats))
                        and all(((x := t.numpy()) >= 0).all() and (x < vocab).all() for t in tokens)
                        and (not self.spec.avail_dim or (np.logical_or.reduce(avail_np, -1) >= self._live).all()))
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
            a = actions.numpy()
            # Viewed unsigned, a negative id is above the top one too: one reduction checks the range.
            if a.view(np.uint64).max() <= top and (self._avail_flat.take(a + self._offsets) >= self._live).all():
                return None
            clamped = a.clip(0, top)
            rows, cols = np.ogrid[:self.num_envs, :self.spec.n_agents]
            ok = (clamped == a) & (last.avail_actions.numpy()[rows, cols, clamped] >= self._live)
            return tuple(int(i) for i in np.argwhere(~ok)[0])
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
