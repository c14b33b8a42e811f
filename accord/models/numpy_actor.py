"""The actor's acting step in numpy, for the small batches a rollout acts on, on CPU.

Why: a rollout step runs the actor on a few dozen rows (envs x agents). At that size a torch op costs
its dispatch (3-5 us) far more than its arithmetic, and an acting step is about 45 of them; a numpy
op on such arrays costs about 1 us. Inside a training process, where the env's code and data have
just been through the CPU's caches, the difference grows: at EPyMARL's LBF settings (10 envs x 2
agents, 128 units, a GRU) an acting step took 149 us in torch and 119 here alone, and collection
0.90x as long in place (docs/benchmarks.md, "Speed", eighteenth round).

What runs here is exactly :class:`~accord.models.actor_critic.Actor`'s forward and ``sample`` (the
same maths to float rounding, the same draws from torch's generator, so a seed gives the same
actions), for the actors built only of the parts it knows: vector observations, input LayerNorm,
shared-weight ``AgentLinear`` layers with ReLU or tanh, the GRU, a categorical or Gaussian head.
Any other actor (images, text, per-agent weights, user encoders) acts through torch, as do batches
over :data:`MAX_ROWS` rows, where the arithmetic dominates. The matrix products go through torch
(its BLAS and its thread setting, ``train.torch_threads``) on numpy arrays' memory; the rest is numpy.
Weights are read at every step, never copied: an optimizer step is visible at once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from accord.models.actor_critic import LOG_2PI, Actor
from accord.models.layers import AgentLinear, ReLU, Tanh

# Envs x agents above which torch acts: there the products dominate and torch's per-op cost does not
# matter (benchmarks/acting.py measures the crossover).
MAX_ROWS = 256


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """In place: sigmoid(x) = (1 + tanh(x / 2)) / 2 (numpy's tanh is vectorized; it has no sigmoid)."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


def _linear(weight: Tensor, bias: Tensor, a: np.ndarray) -> np.ndarray:
    """``a W^T + b`` by torch's BLAS, into a new array (the transposed weight is a view: weights change
    in place, by optimizer kernels that do not mark it, so a cached copy could go stale)."""
    return torch.addmm(bias, torch.from_numpy(a), weight.t()).numpy()


class NumpyActor:
    """An :class:`Actor`'s acting step (forward and sampling) in numpy; see the module docstring."""

    def __init__(self, actor: Actor) -> None:
        body = actor.body
        self.actor, self.discrete, self.agent_id = actor, actor.discrete, body.agent_id
        self.norm = body.norm if isinstance(body.norm, nn.LayerNorm) else None
        self.layers = [(m.linear, isinstance(a, ReLU)) for m, a in zip(body.mlp[::2], body.mlp[1::2], strict=True)]
        self.gru = None if body.gru is None else body.gru.cell
        self.head = actor.head.linear
        self._consts: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # batch size: agent ids, row numbers

    @classmethod
    def of(cls, actor: nn.Module) -> NumpyActor | None:
        """The numpy step of ``actor``, or None when it has a part this module does not compute."""
        if type(actor) is not Actor:
            return None
        enc, body = actor.encoder, actor.body
        if enc.modalities != ["vector"] or len(enc.encoders) or enc.dropped or enc.fusion is not None:
            return None
        if not isinstance(body.norm, nn.Identity | nn.LayerNorm) or not actor.head.shared:
            return None
        mods = list(body.mlp)
        if any(type(m) is not AgentLinear or not m.shared for m in mods[::2]) or \
                any(type(m) not in (ReLU, Tanh) for m in mods[1::2]):
            return None
        return cls(actor)

    def fits(self, x: Tensor) -> bool:
        """Whether this step computes for vector observations ``x`` [B, N, F] here (else torch does)."""
        return (x.is_cpu and x.dtype == torch.float32 and x.shape[0] * x.shape[1] <= MAX_ROWS
                and not torch.is_grad_enabled() and not torch.compiler.is_compiling())

    def step(self, x: Tensor, avail: Tensor, h: Tensor | None, starts: Tensor, deterministic: bool = False
             ) -> tuple[Tensor, Tensor, Tensor | None]:
        """:meth:`Policy.step <accord.policy.Policy.step>` on vector observations ``x`` [B, N, F]."""
        B, N, F = x.shape
        ids, rows = self._constants(B, N)
        a = (np.concatenate([x.numpy(), ids], axis=-1) if self.agent_id else x.numpy()).reshape(B * N, -1)
        if self.norm is not None:
            a = self._layer_norm(a)
        for linear, relu in self.layers:
            a = _linear(linear.weight, linear.bias, a)
            np.maximum(a, 0.0, out=a) if relu else np.tanh(a, out=a)
        h_next = None
        if self.gru is not None:
            h, new = h.numpy(), starts.numpy()
            if new.any():  # zeroed where an episode starts (``MaskedGRU``)
                h = np.where(new[:, None, None], np.float32(0.0), h)
            a = self._gru(a, h.reshape(B * N, -1))
            h_next = torch.from_numpy(a).view(B, N, -1)
        out = _linear(self.head.weight, self.head.bias, a)
        act, logp = self._sample(out, avail.numpy().reshape(B * N, -1), rows, deterministic)
        return torch.from_numpy(act).view(B, N, *act.shape[1:]), torch.from_numpy(logp).view(B, N), h_next

    def _layer_norm(self, a: np.ndarray) -> np.ndarray:
        norm = self.norm
        a = a - a.mean(-1, keepdims=True)
        a *= 1.0 / np.sqrt((a * a).mean(-1, keepdims=True) + np.float32(norm.eps))
        return torch.addcmul(norm.bias, torch.from_numpy(a), norm.weight).numpy()

    def _gru(self, a: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``torch.nn.GRUCell``: inputs ``a`` [rows, in], state ``h`` [rows, H]."""
        c = self.gru
        gi, gh = _linear(c.weight_ih, c.bias_ih, a), _linear(c.weight_hh, c.bias_hh, h)
        H = h.shape[-1]
        rz = _sigmoid(np.add(gi[:, :2 * H], gh[:, :2 * H], out=gi[:, :2 * H]))
        r, z = rz[:, :H], rz[:, H:]
        n = gi[:, 2 * H:]
        n += r * gh[:, 2 * H:]
        np.tanh(n, out=n)
        out = h - n  # h' = n + z (h - n)
        out *= z
        out += n
        return out

    def _constants(self, B: int, N: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch size's one-hot agent ids [B, N, N] and row numbers, made once (read only: threads
        acting with one policy share them)."""
        if B not in self._consts:
            self._consts[B] = np.broadcast_to(np.eye(N, dtype=np.float32), (B, N, N)), np.arange(B * N)
        return self._consts[B]

    def _sample(self, out: np.ndarray, avail: np.ndarray, rows: np.ndarray, deterministic: bool
                ) -> tuple[np.ndarray, np.ndarray]:
        """Actions and log pi from the head's output [rows, A], drawn as ``Actor.sample`` draws them."""
        if not self.discrete:
            log_std = self.actor.log_std.detach().numpy()
            act = out if deterministic else out + np.exp(log_std) * torch.randn(out.shape).numpy()
            z = (act - out) * np.exp(-log_std)
            return act, (-0.5 * z * z - log_std - np.float32(0.5 * LOG_2PI)).sum(-1)
        logp = np.where(avail, out, np.float32(-1e9))
        logp -= logp.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        if deterministic:
            act = logp.argmax(-1)
        else:  # Gumbel-max, on torch's uniform draws (a draw of exactly 0 gives -inf: never chosen)
            g = torch.rand(logp.shape).numpy()
            with np.errstate(divide="ignore"):
                np.log(g, out=g)
                np.negative(g, out=g)
                np.log(g, out=g)
            np.subtract(logp, g, out=g)
            act = g.argmax(-1)
        return act, logp[rows, act]
