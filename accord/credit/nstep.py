"""n-step returns (Sutton and Barto 2018, Eq. 7.1) with episode ends and truncation bootstrapping.

EPyMARL's MAPPO trains its critic on 5-step returns bootstrapped from a target critic and uses
``R - V(s)`` as the advantage; ``ppo.nstep`` selects these targets instead of GAE.
"""

from __future__ import annotations

import torch
from torch import Tensor


def nstep_returns(rewards: Tensor, next_values: Tensor, terminated: Tensor, done: Tensor, gamma: float,
                  n: int) -> Tensor:
    """Returns ``[T, B, N]``: R_t = sum_{k<m} gamma^k r_{t+k} + gamma^m V(s_{t+m}) (1 - term_{t+m-1}).

    m is n, or fewer steps where the episode ends (``done`` [T, B]) or the batch ends first;
    ``next_values[t]`` is V of the state after step t (the final observation's value where the
    episode was truncated), as in :func:`accord.credit.gae.gae`; termination zeroes the bootstrap.
    """
    t_len = rewards.shape[0]
    stop = done.clone()
    stop[-1] = True  # the batch's last step: bootstrap from the observation after it
    stop = stop.unsqueeze(-1).to(rewards.dtype)  # [T, B, 1]
    boot = (~terminated).unsqueeze(-1).to(rewards.dtype) * next_values  # V(s_{t+1}), 0 at termination
    out = torch.zeros_like(rewards)
    live = torch.ones_like(stop)  # live[t]: no episode or batch end in steps t .. t+k-1
    for k in range(min(n, t_len)):
        span, now = slice(0, t_len - k), slice(k, t_len)  # R_t for t < T - k reads step t + k
        ends = torch.ones_like(stop[now]) if k == n - 1 else stop[now]
        out[span] += live[span] * (gamma**k * rewards[now] + gamma ** (k + 1) * ends * boot[now])
        live[span] *= 1 - stop[now]
    return out
