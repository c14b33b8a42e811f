"""Gradient-norm clipping and Adam as plain tensor ops: per-step overhead off the PPO update.

``torch.nn.utils.clip_grad_norm_`` walks its iterable and regroups the gradients by device and dtype
on every call, once per network. At MARL's minibatch sizes (a few hundred rows) that bookkeeping cost
a PPO update a tenth to a fifth of its time here; one norm kernel over every group's gradients does
the same arithmetic. :func:`adam_` is ``torch.optim.Adam``'s step written out, so that a compiled
program can hold a whole minibatch step (forward, backward, clipping, Adam) as ``jax.jit`` does; it
reads and writes the optimizer's own state, so checkpoints and the eager path see no difference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def clip_grads_(groups: Sequence[Sequence[Tensor]], max_norm: float) -> list[Tensor]:
    """Scale each group of gradients, in place, so that its total L2 norm is at most ``max_norm``
    (``clip_grad_norm_``'s arithmetic); returns each group's norm before clipping."""
    flat = [g for group in groups for g in group]
    if torch.compiler.is_compiling():  # sums of squares fuse into the graph's kernels; a norm per tensor does not
        norms = [(g * g).sum().sqrt() for g in flat]
    else:
        norms = torch._foreach_norm(flat) if flat else []
    totals, i = [], 0
    for group in groups:
        if not group:
            totals.append(torch.zeros(()))
            continue
        total = torch.linalg.vector_norm(torch.stack(norms[i:i + len(group)]))
        i += len(group)
        torch._foreach_mul_(list(group), torch.clamp(max_norm / (total + 1e-6), max=1.0))
        totals.append(total)
    return totals


def clip_grad_norms(groups: Sequence[Sequence[Tensor]], max_norm: float) -> list[Tensor]:
    """``clip_grad_norm_(group, max_norm)`` for each group of parameters (the same results, bit for
    bit), in place; returns each group's total L2 gradient norm before clipping."""
    return clip_grads_([[p.grad for p in group if p.grad is not None] for group in groups], max_norm)


def adam_state(opt: torch.optim.Adam) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
    """``opt``'s parameters (detached views: writing them writes the parameters) and their Adam state
    (first and second moments, step count), created as ``opt.step()`` creates it on first use."""
    params, exp_avgs, exp_avg_sqs, steps = [], [], [], []
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state[p]
            if not state:
                state.update(step=torch.zeros((), dtype=torch.float32, device=p.device),
                             exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                             exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
            params.append(p.detach())
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
    return params, exp_avgs, exp_avg_sqs, steps


def adam_step(opt: torch.optim.Adam) -> None:
    """``opt.step()`` for a fused Adam without ``torch.optim``'s per-call Python (hooks, state and group
    checks: 65 of the 120 us a step took at LBF's actor): each group's step counts and one
    ``_fused_adam_`` kernel, on the optimizer's own state. Other Adams, and a first step (which creates
    the state), go through ``opt.step()``."""
    work = []
    for group in opt.param_groups:
        live = [p for p in group["params"] if p.grad is not None]
        state = [opt.state[p] for p in live]
        if not (group["fused"] and all(state)) or group["amsgrad"] or group["capturable"] or \
                group["differentiable"] or group.get("decoupled_weight_decay"):
            opt.step()
            return
        work.append((group, live, state))
    with torch.no_grad():
        for group, live, state in work:
            if not live:
                continue
            steps = [s["step"] for s in state]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            torch._fused_adam_(live, [p.grad for p in live], [s["exp_avg"] for s in state],
                               [s["exp_avg_sq"] for s in state], [], steps, amsgrad=False, lr=group["lr"],
                               beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                               maximize=group["maximize"], grad_scale=None, found_inf=None)


def adam_(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
          exp_avg_sqs: Sequence[Tensor], steps: Sequence[Tensor], lr: float | Tensor, betas: tuple[float, float],
          eps: float) -> None:
    """One Adam step (Kingma and Ba 2015, Algorithm 1, as ``torch.optim.Adam`` computes it), in place."""
    beta1, beta2 = betas
    with torch.no_grad():
        for p, g, m, v, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
            step.add_(1)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = v.sqrt() / (1 - beta2 ** step).sqrt() + eps
            p.sub_(lr / (1 - beta1 ** step) * m / denom)
