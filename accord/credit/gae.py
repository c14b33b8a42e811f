"""Generalized advantage estimation (Schulman et al. 2016, Eq. 16) with truncation bootstrapping."""

from __future__ import annotations

import torch
from torch import Tensor


def gae(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, done: Tensor,
        gamma: float, lam: float, rho: Tensor | None = None, c: Tensor | None = None) -> Tensor:
    """Advantages ``[T, B, N]``.

    ``rewards``/``values``/``next_values`` are ``[T, B, N]``; ``next_values[t]`` is V of the state after
    step t (the final observation's value if the episode was truncated there). ``terminated``/``done``
    are ``[T, B]``: termination zeroes the bootstrap, any episode end cuts the recursion.
    delta_t = r_t + gamma V(s_{t+1}) (1 - term_t) - V(s_t);  A_t = delta_t + gamma lam (1 - done_t) A_{t+1}.

    With truncated importance weights ``rho``/``c`` [T, B, N] (:func:`accord.credit.vtrace.truncated_ratios`)
    this is V-trace (Espeholt et al. 2018, Eq. 1 with lambda, Remark 1):
    A_t = rho_t delta_t + gamma lam c_t (1 - done_t) A_{t+1} = v_t - V(s_t); with rho = c = 1 it is GAE.
    """
    not_term = (~terminated).unsqueeze(-1).to(values.dtype)  # [T, B, 1]
    carry = (gamma * lam) * (~done).unsqueeze(-1).to(values.dtype)  # [T, B, 1]
    delta = rewards + gamma * next_values * not_term - values
    if rho is not None and c is not None:
        delta, carry = rho * delta, carry * c  # [T, B, N]
    return backward_scan(delta, carry)


def backward_scan(b: Tensor, c: Tensor) -> Tensor:
    """``y_t = b_t + c_t y_{t+1}`` backwards over time from ``y_T = 0``: ``b`` [T, ...], ``c`` broadcastable.

    The recursion behind GAE and TD(lambda) returns; one loop over time, envs and agents batched.
    """
    if not len(b):
        return torch.empty_like(b)
    ys = [b[-1]]  # y_{T-1} = b_{T-1}
    for t in range(b.shape[0] - 2, -1, -1):  # one op a step (autograd sees it too: shaped credit needs that)
        ys.append(torch.addcmul(b[t], c[t], ys[-1]))
    return torch.stack(ys[::-1])
