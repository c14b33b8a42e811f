"""What one agent's decision costs: parameters and FLOPs of its policy network, counted analytically.

Convention (the same as most papers' "FLOPs"): count the multiply-accumulates (MACs) of the layers that
do the work, and report ``FLOPs = 2 * MACs``. Per layer, for each row of input it processes:

- ``Linear`` / ``AgentLinear`` (shared or the agent's own slice): ``in * out``;
- ``GRUCell``: ``3 * (in * H + H * H)`` (three gates, input and hidden projections);
- ``Conv2d``: ``out_channels * H_out * W_out * (in_channels / groups) * kH * kW`` from its real output size;
- ``Embedding``: 0 (a table look-up).

Biases, activations, LayerNorm, the masking of unavailable actions, gate nonlinearities and the text
encoder's attention pooling (softmax, weighted sum) are elementwise and are not counted. Sizes come
from one forward pass of agent ``i`` alone at batch 1 (:meth:`accord.policy.AgentPolicy.params`), so
convolution output sizes and per-agent weight slices are exactly what a deployed agent runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from accord.envs.base import OBS_DTYPES
from accord.models.layers import AgentLinear


def agent_inputs(policy, batch: int = 1) -> tuple[dict[str, Tensor], Tensor, Tensor | None, Tensor]:
    spec, dev = policy.spec, policy.device
    obs = {m: torch.zeros(batch, *s, dtype=OBS_DTYPES[m], device=dev) for m, s in spec.obs_shapes.items()}
    avail = torch.ones(batch, spec.avail_dim, dtype=torch.bool, device=dev)
    state = torch.zeros(batch, policy.hidden, device=dev) if policy.hidden else None
    return obs, avail, state, torch.zeros(batch, dtype=torch.bool, device=dev)


def macs_per_decision(policy, agent: int | str = 0) -> dict[str, int]:
    """Multiply-accumulates of one decision of ``agent`` (batch 1), by layer name."""
    view = policy.agent(agent)
    counts: dict[str, int] = {}
    hooks = []

    def count(name: str, module: nn.Module):
        def hook(mod: nn.Module, args: tuple, out) -> None:
            x = args[0]
            if isinstance(mod, AgentLinear):
                n_in, n_out = mod.weight.shape[-2:]  # per-agent weights [N, in, out]
                macs = x.numel() // n_in * n_in * n_out
            elif isinstance(mod, nn.Linear):
                macs = x.numel() // mod.in_features * mod.in_features * mod.out_features
            elif isinstance(mod, nn.GRUCell):
                rows = x.numel() // mod.input_size
                macs = rows * 3 * (mod.input_size * mod.hidden_size + mod.hidden_size ** 2)
            elif isinstance(mod, nn.Conv2d):
                k = math.prod(mod.kernel_size) * mod.in_channels // mod.groups
                macs = out.numel() * k
            else:  # nn.Embedding: a look-up
                macs = 0
            counts[name] = counts.get(name, 0) + macs
        return hook

    for name, module in policy.actor.named_modules():
        shared_agent_linear = isinstance(module, AgentLinear) and module.shared  # its inner nn.Linear counts
        if isinstance(module, (nn.Linear, nn.GRUCell, nn.Conv2d, nn.Embedding)) or (
                isinstance(module, AgentLinear) and not shared_agent_linear):
            hooks.append(module.register_forward_hook(count(name, module)))
    try:
        with torch.no_grad():
            view.params(*agent_inputs(policy))
    finally:
        for h in hooks:
            h.remove()
    return counts


def flops_per_decision(policy, agent: int | str = 0) -> int:
    """FLOPs (``2 * MACs``, see the module docstring) of one decision of ``agent`` at batch 1."""
    return 2 * sum(macs_per_decision(policy, agent).values())


def param_count(policy, agent: int | str = 0) -> int:
    """Parameters agent ``agent``'s decisions use: all shared weights plus its own slice of per-agent
    ones (``AgentLinear`` with ``share_params=False`` holds ``[N, in, out]``; one agent uses ``[in, out]``)."""
    n = 0
    per_agent: set[int] = set()
    for module in policy.actor.modules():
        if isinstance(module, AgentLinear) and not module.shared:
            per_agent |= {id(module.weight), id(module.bias)}
            n += module.weight[0].numel() + module.bias[0].numel()
    return n + sum(p.numel() for p in policy.actor.parameters() if id(p) not in per_agent)


def latency(call: Callable[[int], Any], calls: int, warmup: int = 200) -> dict[str, float]:
    """Wall time of ``call(c)`` for c in 0..warmup+calls-1, after ``warmup`` calls: p50, p99 and mean, in
    microseconds, on one torch thread. The one timer behind export's figures and the cost meter's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times_ns: list[int] = []
    try:
        for c in range(warmup + calls):
            t0 = time.perf_counter_ns()
            call(c)
            if c >= warmup:
                times_ns.append(time.perf_counter_ns() - t0)
    finally:
        torch.set_num_threads(threads)
    t = np.asarray(times_ns, np.float64) / 1e3
    return {"p50_us": round(float(np.percentile(t, 50)), 2), "p99_us": round(float(np.percentile(t, 99)), 2),
            "mean_us": round(float(t.mean()), 2)}
