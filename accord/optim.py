"""Gradient-norm clipping for several parameter groups at once, without per-call bookkeeping.

``torch.nn.utils.clip_grad_norm_`` walks its iterable and regroups the gradients by device and dtype
on every call, once per network. At MARL's minibatch sizes (a few hundred rows) that bookkeeping cost
a PPO update a tenth to a fifth of its time here; one norm kernel over every group's gradients does
the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def clip_grad_norms(groups: Sequence[Sequence[Tensor]], max_norm: float) -> list[Tensor]:
    """``clip_grad_norm_(group, max_norm)`` for each group (the same results, bit for bit), in place;
    returns each group's total L2 gradient norm before clipping."""
    grads = [[p.grad for p in group if p.grad is not None] for group in groups]
    flat = [g for group in grads for g in group]
    norms = torch._foreach_norm(flat) if flat else []
    totals, i = [], 0
    for group in grads:
        if not group:
            totals.append(torch.zeros(()))
            continue
        total = torch.linalg.vector_norm(torch.stack(norms[i:i + len(group)]))
        i += len(group)
        torch._foreach_mul_(group, torch.clamp(max_norm / (total + 1e-6), max=1.0))
        totals.append(total)
    return totals
