"""Agent-batched layers: every agent of every env goes through one forward pass.

With shared parameters a layer is a plain ``Linear`` applied to ``[..., N, in]``; with per-agent
parameters it holds weights ``[N, in, out]`` and applies agent i's slice to agent i's inputs in one
``einsum``, so heterogeneous teams cost no Python loop either.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from accord.models.gru import ATEN_TANH, MaskedGRUSequence


class AgentLinear(nn.Module):
    """Linear layer over inputs ``[..., N, in]``, shared or one weight matrix per agent.

    In a compiled graph the shared layer is a matrix product and a separate bias add. As one ``addmm``,
    the bias was first copied into every row of the output, an extra pass over it on CPU; as an add,
    inductor fuses it into the activation's kernel. At JaxMARL's settings collection took 0.905x and
    the update 0.978x as long (docs/benchmarks.md, "Speed", thirteenth round).
    """

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
            if torch.compiler.is_compiling():  # the bias joins the next elementwise kernel (see the class)
                return torch.matmul(x, self.linear.weight.t()) + self.linear.bias
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


# tanh(x) ~ x P(x^2) / Q(x^2) for |x| <= 9 (tanh(9) is 1 in float32), P and Q of degree 4 in x^2: a
# minimax fit (Lawson's reweighted least squares in float64 on [0, 9]), the kind of approximation XLA's
# CPU tanh uses. In float32 it is within 3.6e-7 of tanh, relative, over the whole line
# (tests/test_models.py).
_TANH_P = (0.99999988, 0.13373186, 3.4865669e-3, 2.0471551e-5, 1.318379e-8)
_TANH_Q = (1.0, 0.46706483, 2.5841925e-2, 3.2713593e-4, 7.7024947e-7)


def _polynomial(z: Tensor, coefs: tuple[float, ...]) -> Tensor:
    out = z * coefs[-1] + coefs[-2]
    for c in coefs[-3::-1]:
        out = out * z + c
    return out


def rational_tanh(x: Tensor) -> Tensor:
    """tanh as a rational function (clamp, ten multiply-adds, one division): in a compiled graph 1.6x
    faster than the exp-based kernel inductor writes for tanh. NaN stays NaN."""
    x = x.clamp(-9.0, 9.0)
    z = x * x
    return (x * _polynomial(z, _TANH_P) / _polynomial(z, _TANH_Q)).clamp(-1.0, 1.0)


class Tanh(nn.Tanh):
    """tanh in the cheapest form for where it runs; the forms differ by a few 1e-7.

    - With autograd (training) and in a traced ONNX export: ATen's tanh. In a compiled update the
      rational form was slower: the backward recomputed it (docs/benchmarks.md, "Speed", twelfth round).
    - Compiled, without autograd (acting): :func:`rational_tanh`.
    - Eager, without autograd (acting on batches over 256 rows, the critic's pass over a batch): ATen's
      tanh on AVX-512 CPUs, 2 sigmoid(2x) - 1 elsewhere (:data:`ATEN_TANH`).
    """

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return torch.tanh(x)
        if torch.compiler.is_compiling():
            return rational_tanh(x)
        return torch.tanh(x) if ATEN_TANH else torch.sigmoid(x * 2).mul_(2).sub_(1)


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
