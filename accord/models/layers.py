"""Agent-batched layers: every agent of every env goes through one forward pass.

With shared parameters a layer is a plain ``Linear`` applied to ``[..., N, in]``; with per-agent
parameters it holds weights ``[N, in, out]`` and applies agent i's slice to agent i's inputs in one
``einsum``, so heterogeneous teams cost no Python loop either.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from accord.models.gru import MaskedGRUSequence


class AgentLinear(nn.Module):
    """Linear layer over inputs ``[..., N, in]``, shared or one weight matrix per agent."""

    def __init__(self, n_in: int, n_out: int, n_agents: int, shared: bool, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.shared = shared
        if shared:
            self.linear = nn.Linear(n_in, n_out)
            nn.init.orthogonal_(self.linear.weight, gain)
            nn.init.zeros_(self.linear.bias)
        else:
            w = torch.empty(n_agents, n_out, n_in)
            for i in range(n_agents):  # init only, not on the hot path
                nn.init.orthogonal_(w[i], gain)
            self.weight = nn.Parameter(w.transpose(1, 2).contiguous())  # [N, in, out]
            self.bias = nn.Parameter(torch.zeros(n_agents, n_out))

    def forward(self, x: Tensor, agent: int | None = None) -> Tensor:
        """``agent=i``: inputs ``[..., 1, in]`` are agent i's alone (decentralized execution, export)."""
        if self.shared:
            return self.linear(x)
        w, b = (self.weight, self.bias) if agent is None else (self.weight[agent:agent + 1], self.bias[agent:agent + 1])
        return torch.einsum("...ni,nio->...no", x, w) + b  # [..., N, out]


class ReLU(nn.ReLU):
    """ReLU that a compiled graph computes as (x + |x|) / 2: the same values, and a gradient without
    ReLU's saved boolean mask. Inductor's CPU kernels store and load boolean tensors 20-40x slower
    than float ones on AVX2 (this project's CPUs), which made compiled ReLU networks slower than
    eager ones (docs/speed.md). The gradient at exactly 0 is 1/2 there instead of 0."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            return 0.5 * (x + x.abs())
        return super().forward(x)


class Tanh(nn.Tanh):
    """tanh; without autograd (acting, the critic's pass over a batch) computed as 2 sigmoid(2x) - 1,
    the formula compiled graphs use (``accord.compile.OPTIONS``): ATen's CPU tanh takes 3.9 ns an
    element on these AVX2 cores, this 1.5 (docs/benchmarks.md, "Speed", eleventh round). The values
    differ by about 1e-7. An ONNX export (traced) keeps the Tanh op."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return torch.tanh(x)
        return torch.sigmoid(x * 2).mul_(2).sub_(1)


def mlp(n_in: int, hidden: int, layers: int, n_agents: int, shared: bool, activation: str) -> nn.Sequential:
    """``layers`` hidden AgentLinear layers with the chosen activation."""
    act = {"relu": ReLU, "tanh": Tanh}[activation]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [AgentLinear(n_in if i == 0 else hidden, hidden, n_agents, shared), act()]
    return nn.Sequential(*mods)


class MaskedGRU(nn.Module):
    """GRU whose hidden state is zeroed where an episode starts.

    ``forward(x [T, ..., H_in], h0 [..., H], starts [T, ...])`` -> (outputs [T, ..., H], h_T). Training on
    a sequence runs the hand-written BPTT of accord/models/gru.py; without gradients a sequence runs one
    ``torch.gru`` call when no episode starts inside it; otherwise (acting: T = 1) the cell steps.
    """

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(n_in, hidden)
        for name, p in self.cell.named_parameters():
            (nn.init.orthogonal_ if "weight" in name else nn.init.zeros_)(p)

    def forward(self, x: Tensor, h: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        lead, T = h.shape[:-1], x.shape[0]
        if T > 1:
            c = self.cell
            weights, seq = (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh), x.reshape(T, -1, x.shape[-1])
            if torch.is_grad_enabled() and not torch.compiler.is_compiling():
                keep = (~starts).to(x.dtype).reshape(T, -1, 1)
                out, h_n = MaskedGRUSequence.apply(seq, h.reshape(-1, h.shape[-1]), keep, *weights)
                return out.view(*x.shape[:-1], -1), h_n.view(*lead, -1)
            if not bool(starts[1:].any()):
                # No episode starts after the first step (e.g. rollouts aligned with episodes): one multi-step
                # GRU call (the same maths as the cell loop, bit for bit) instead of T cell calls from Python.
                h = h * (~starts[0]).unsqueeze(-1).to(h.dtype)
                out, h_n = torch.gru(seq, h.reshape(1, -1, h.shape[-1]), weights, True, 1, 0.0, self.training,
                                     False, False)
                return out.view(*x.shape[:-1], -1), h_n.view(*lead, -1)
        outs = []
        for t in range(T):  # time recursion; all envs and agents batched
            h = torch.where(starts[t, ..., None], 0.0, h)
            h = self.cell(x[t].reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1])).view(*lead, -1)
            outs.append(h)
        return (torch.stack(outs) if T > 1 else h[None]), h  # acting (T = 1): a view, no copy
