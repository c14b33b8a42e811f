"""A GRU over a whole sequence with per-step hidden-state resets, and its backward written out (BPTT).

Why by hand: PyTorch's multi-step ``torch.gru`` cannot reset the hidden state where an episode starts
mid-sequence, so such batches fall back to ``T`` ``GRUCell`` calls; and on CPU both paths leave autograd
a graph of about 40 small ops per step, whose backward dominates a recurrent PPO update at the sizes
MARL uses (tens of rows, 128 units). At those sizes a small op costs its dispatch and its memory traffic
more than its arithmetic, so a step here is one recurrent matrix product and few elementwise ops (4 in
the forward, 5 where ATen's tanh is slow; 3 in the backward; one more where an episode starts), mostly
in place on buffers laid out for it; the backward's gate factors and the weight gradients are taken for
all steps at once. Measured on one CPU core (T=50, 20 rows, 128 units, forward and backward): 2.2x the
cell loop with resets, 1.4x ``torch.gru`` without (benchmarks/gru.py). The maths is
``torch.nn.GRUCell``'s (gates ordered r, z, n):

    r, z = sigmoid(W_ir x + b_ir + W_hr h + b_hr), sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),   h' = n + z * (h - n)

with ``h`` multiplied by ``keep[t]`` (0 where an episode starts) before step ``t``.

Layout: the hidden gates are rolled to the order n, r, z (``w_hh.roll(H, 0)``). Then a forward step's
``[gh_n | r | z | gi_n]`` holds the input product's gates r, z, n as one block and the recurrent
product's n, r, z as another, and a backward step's ``[d_ghn | d_r | d_z | d_n]`` holds the hidden and
the input gates' gradients as two blocks, each one operand of one matrix product.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

# ATen's CPU tanh, per element: 0.3 ns on the AVX-512 machine of the fourteenth round, where
# 2 sigmoid(2x) - 1 took 0.9; 3.9 ns on the AVX2 cores of the eleventh, where that form took 1.5.
# (accord.models.layers.Tanh reads it too.)
ATEN_TANH = torch.backends.cpu.get_cpu_capability().startswith("AVX512")


class MaskedGRUSequence(torch.autograd.Function):
    """``apply(x [T, B, I], h0 [B, H], keep [T, B, 1], w_ih, w_hh, b_ih, b_hh)`` -> (out [T, B, H], h_T [B, H])."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, h0: Tensor, keep: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
                b_hh: Tensor) -> tuple[Tensor, Tensor]:
        T, B, _ = x.shape
        H = h0.shape[-1]
        g = x.new_empty(T, B, 4 * H)  # [gh_n | r | z | gi_n] per step; n overwrites gi_n
        g[..., :H] = b_hh[2 * H:]
        # Input gates for all steps at once, with the hidden r, z biases. Where ATen's tanh is slow (below),
        # tanh(a) = 2 sigmoid(2a) - 1: the n rows are doubled (exactly), so the loop's addcmul gives 2a.
        if ATEN_TANH:
            w, b_n, minus_one = w_ih, b_ih[2 * H:], None
        else:
            w, b_n, minus_one = torch.cat([w_ih[:2 * H], 2 * w_ih[2 * H:]]), 2 * b_ih[2 * H:], x.new_full((), -1.0)
        torch.addmm(torch.cat([b_ih[:2 * H] + b_hh[:2 * H], b_n]), x.reshape(T * B, -1), w.t(),
                    out=g.view(T * B, 4 * H)[:, H:])
        out = x.new_empty(T, B, H)
        # contiguous: MKL's product with a transposed view took 18 us a step here, with this copy 13 us
        w_hh_t, h = w_hh.roll(H, 0).t().contiguous(), h0
        resets = (keep == 0).any(1).flatten().tolist()  # the steps where some row's episode starts
        # unbind: per-step views made once, not indexed from Python at every step
        for gh, gh_n, r, z, rz, n, out_t, keep_t, reset in zip(
            *(t.unbind(0) for t in (g[..., :3 * H], g[..., :H], g[..., H:2 * H], g[..., 2 * H:3 * H],
                                    g[..., H:3 * H], g[..., 3 * H:], out, keep)), resets, strict=True):
            if reset:  # else keep_t is all ones: no multiply (the backward reads h from out, below)
                h = h * keep_t
            gh.addmm_(h, w_hh_t)
            rz.sigmoid_()
            if ATEN_TANH:
                n.addcmul_(r, gh_n).tanh_()
            else:
                n.addcmul_(r, gh_n, value=2).sigmoid_()
                torch.add(minus_one, n, alpha=2, out=n)
            h = torch.lerp(n, h, z, out=out_t)
        hp = torch.cat([(h0 * keep[0])[None], out[:-1] * keep[1:]])  # each step's h before it, for the backward
        ctx.resets = resets
        ctx.save_for_backward(x, keep, w_ih, w_hh, hp, g)
        return out, h.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, d_out: Tensor, d_last: Tensor) -> tuple[Tensor | None, ...]:
        x, keep, w_ih, w_hh, hp, g = ctx.saved_tensors
        T, B, H = hp.shape
        gh_n, r, z, n = g.split(H, -1)
        # The gates' gradients before their activations, [d_ghn | d_r | d_z | d_n], are dh times factors
        # (r f_n, (1 - r) gh_n r f_n, z (1 - z) (h - n), f_n = (1 - z) (1 - n^2)), written here for all steps
        # at once, in place (the backward is bound by memory traffic), then each step multiplies by its dh.
        d = x.new_empty(T, B, 4, H)
        f_ghn, f_r, f_z, f_n = d.unbind(2)
        one_minus_z, h_minus_n = torch.sub(x.new_ones(()), z, out=f_z), torch.sub(hp, n, out=f_ghn)
        torch.addcmul(one_minus_z, one_minus_z, torch.mul(n, n, out=f_n), value=-1, out=f_n)
        f_z.mul_(z).mul_(h_minus_n)
        torch.mul(r, f_n, out=f_ghn)
        torch.addcmul(gh_n, gh_n, r, value=-1, out=f_r).mul_(f_ghn)
        d_gh, d_gi = d.view(T * B, 4 * H)[:, :3 * H], d.view(T * B, 4 * H)[:, H:]
        d_prev = (d_last.new_zeros(B, H), *d_out[:-1].unbind(0))  # h0 has no output gradient
        w_hh_rolled, dh = w_hh.roll(H, 0), d_last + d_out[-1]
        steps = zip(*(t.unbind(0) for t in (d, d_gh.view(T, B, 3 * H), z, keep)), d_prev, ctx.resets, strict=True)
        for d_t, d_gh_t, z_t, keep_t, d_prev_t, reset in reversed(list(steps)):
            d_t.mul_(dh.unsqueeze(1))
            dh = torch.mm(d_gh_t, w_hh_rolled).addcmul_(dh, z_t)
            dh = torch.addcmul(d_prev_t, dh, keep_t) if reset else dh.add_(d_prev_t)
        # Weight gradients as gradients^T @ inputs: laid out as the weights, which autograd then stores
        # without the copy it makes of a transposed result (with the resets above: 0.96-0.97x the time).
        d_w_ih, d_w_hh = d_gi.t() @ x.reshape(T * B, -1), (d_gh.t() @ hp.view(T * B, H)).roll(-H, 0)
        return (d_gi @ w_ih).view_as(x), dh, None, d_w_ih, d_w_hh, d_gi.sum(0), d_gh.sum(0).roll(-H, 0)
