"""Running normalization of value targets and rewards (Yu et al. 2022, "ValueNorm").

The critic regresses normalized returns; advantages use de-normalized values. :class:`ValueNorm`'s
statistics are a debiased exponential moving average (beta = 0.99999) with the variance clamped at
1e-2, as in the MAPPO reference code; :class:`RunningMeanStd` keeps EPyMARL's running ones (no
floor) for ``ppo.reward_stats: running``. Buffers, so they travel in checkpoints with the critic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ValueNorm(nn.Module):
    def __init__(self, beta: float = 0.99999, eps: float = 1e-5) -> None:
        super().__init__()
        self.beta, self.eps = beta, eps
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("mean_sq", torch.zeros(()))
        self.register_buffer("debias", torch.zeros(()))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold a batch of raw targets (only the valid entries) into the running statistics."""
        w = self.beta
        self.mean.mul_(w).add_(x.mean() * (1 - w))
        self.mean_sq.mul_(w).add_(x.pow(2).mean() * (1 - w))
        self.debias.mul_(w).add_(1 - w)

    def _stats(self) -> tuple[Tensor, Tensor]:
        d = self.debias.clamp_min(self.eps)
        mean = self.mean / d
        var = (self.mean_sq / d - mean.pow(2)).clamp_min(1e-2)
        return mean, var.sqrt()

    def normalize(self, x: Tensor) -> Tensor:
        mean, std = self._stats()
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        mean, std = self._stats()
        return x * std + mean


class RunningMeanStd(nn.Module):
    """Count-weighted running mean and variance of everything seen (Chan et al. 1979's pairwise
    merge of each batch's mean and unbiased variance), from a prior of variance 1 with weight 1e-4 and
    no floor: the estimator of EPyMARL's reward standardization. Same interface as :class:`ValueNorm`."""

    def __init__(self, prior_count: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.tensor(prior_count, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        x = x.double()
        n = x.numel()
        if n == 0:
            return
        delta, total = x.mean() - self.mean, self.count + n
        batch_var = x.var() if n > 1 else torch.zeros_like(self.var)
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / self.var.sqrt()).to(x.dtype)

    def denormalize(self, x: Tensor) -> Tensor:
        return (x * self.var.sqrt() + self.mean).to(x.dtype)
