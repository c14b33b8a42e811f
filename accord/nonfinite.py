"""Training must not go on silently with non-finite losses, guard or no guard.

:class:`NonFiniteGuard` keeps a copy of the learner's last good weights and optimizer states (every
``nn.Module`` and ``torch.optim.Optimizer`` the learner holds, and optimizers inside those modules).
After an update whose reported losses or resulting weights hold NaN/inf it restores that copy (the
update is skipped), halves every learning rate, counts it (``nonfinite_updates``, ``lr_scale`` in
``metrics.jsonl``) and goes on; ``train.max_nonfinite`` such updates in a row fail the run with one
error line. With ``train.max_nonfinite: 0`` nothing is checked.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from accord.errors import AccordError

logger = logging.getLogger(__name__)


class TrainingError(AccordError):
    """Training cannot go on (e.g. every update comes out non-finite)."""


def _owned(learner: Any) -> tuple[list[nn.Module], list[torch.optim.Optimizer]]:
    modules: dict[int, nn.Module] = {}
    optims: dict[int, torch.optim.Optimizer] = {}
    for value in vars(learner).values():
        if isinstance(value, nn.Module):
            modules[id(value)] = value
            for inner in value.modules():
                for v in vars(inner).values():
                    if isinstance(v, torch.optim.Optimizer):
                        optims[id(v)] = v
        elif isinstance(value, torch.optim.Optimizer):
            optims[id(value)] = value
        elif hasattr(value, "__dict__") and not isinstance(value, type):  # e.g. a credit module object
            for v in vars(value).values():
                if isinstance(v, nn.Module):
                    modules[id(v)] = v
                elif isinstance(v, torch.optim.Optimizer):
                    optims[id(v)] = v
    return _without_repeats(list(modules.values())), list(optims.values())


def _without_repeats(modules: list[nn.Module]) -> list[nn.Module]:
    """The modules whose state the others do not already hold. A learner holds its networks several ways
    (the policy, the actor inside it, both networks in one module for the compiled step): snapshots and
    checks would copy and sum the same weights several times over."""
    held = {m: {id(t) for t in m.state_dict(keep_vars=True).values()} for m in modules}
    kept: list[nn.Module] = []
    seen: set[int] = set()
    for module in sorted(modules, key=lambda m: -len(held[m])):  # the largest first
        if not held[module] <= seen:
            kept.append(module)
            seen |= held[module]
    return kept


def _all_finite(tensors: Sequence[Tensor]) -> bool:
    """No NaN/inf in any of ``tensors``. One sum per tensor: on CPU several times cheaper than an inf-norm
    or ``isfinite`` pass over a model's weights; only if a sum is not finite (a NaN/inf, or an overflow
    of values near float32's limit) is each tensor looked at exactly."""
    if not tensors:
        return True
    return bool(torch.stack([t.sum() for t in tensors]).isfinite().all()) or \
        all(bool(torch.isfinite(t).all()) for t in tensors)


class NonFiniteGuard:
    """Checks each update; keeps the last good state as one flat list of tensor copies, refreshed in place
    (one ``_foreach_copy_``) after every good update rather than deep-copied."""

    def __init__(self, learner: Any, max_in_row: int) -> None:
        self.max_in_row = max_in_row
        self.total = 0
        self.streak = 0
        self.lr_scale = 1.0
        self.modules, self.optims = _owned(learner) if max_in_row else ([], [])
        # The last good state, flattened: tensor leaves as copies, the other leaves, and the structure.
        self._copies: list[Tensor] = []
        self._others: list[Any] = []
        self._spec: pytree.TreeSpec | None = None
        if max_in_row:
            self._snapshot()

    def _snapshot(self) -> None:
        state = ([m.state_dict() for m in self.modules], [o.state_dict() for o in self.optims])
        leaves, spec = pytree.tree_flatten(state)
        tensors = [t for t in leaves if isinstance(t, Tensor)]
        if spec == self._spec and [(t.shape, t.dtype) for t in tensors] == [(c.shape, c.dtype) for c in self._copies]:
            torch._foreach_copy_(self._copies, tensors)
        else:  # the first snapshot, or the state changed shape (an optimizer's first step): copy anew
            self._copies = [t.detach().clone() for t in tensors]
        self._others = [copy.deepcopy(t) for t in leaves if not isinstance(t, Tensor)]
        self._is_tensor = [isinstance(t, Tensor) for t in leaves]
        self._spec = spec

    def _good(self) -> Any:
        """The last good state (fresh copies, safe to load): ``([module state dicts], [optimizer state dicts])``."""
        copies, others = iter(self._copies), iter(self._others)
        leaves = [next(copies) if is_tensor else next(others) for is_tensor in self._is_tensor]
        return copy.deepcopy(pytree.tree_unflatten(leaves, self._spec))

    def _finite(self, losses: dict[str, Any]) -> bool:
        if any(isinstance(v, float) and not math.isfinite(v) for v in losses.values()):
            return False
        return _all_finite([p.detach() for m in self.modules for p in m.parameters()])

    def check(self, losses: dict[str, Any], env_steps: int) -> dict[str, Any]:
        """``losses`` of the update just made, with the counters; rolls back a non-finite update."""
        if not self.max_in_row:
            return losses
        if self._finite(losses):
            self.streak = 0
            self._snapshot()
            return {**losses, "nonfinite_updates": self.total, "lr_scale": self.lr_scale}
        self.total += 1
        self.streak += 1
        weights, optims = self._good()
        for m, state in zip(self.modules, weights, strict=True):
            m.load_state_dict(state)
        for o, state in zip(self.optims, optims, strict=True):
            o.load_state_dict(state)
            for group in o.param_groups:
                group["lr"] *= 0.5
        self.lr_scale *= 0.5
        self._snapshot()  # the lowered learning rates are part of the good state from now on
        bad = sorted(k for k, v in losses.items() if isinstance(v, float) and not math.isfinite(v))
        what = f"non-finite {', '.join(bad[:3])}" if bad else "non-finite weights"
        if self.streak >= self.max_in_row:
            raise TrainingError(f"{what} in {self.streak} updates in a row at env step {env_steps} (learning rates "
                                f"already lowered to {self.lr_scale:g}x); hint: check rewards and observations "
                                "for NaN/inf (task.guard: true) or lower the learning rate")
        logger.warning("%s at env step %d: update rolled back, learning rates halved (x%g); %d in a row, at most %d",
                       what, env_steps, self.lr_scale, self.streak, self.max_in_row)
        return {**{k: v for k, v in losses.items() if k not in bad}, "nonfinite_updates": self.total,
                "lr_scale": self.lr_scale, "update_skipped": 1}
