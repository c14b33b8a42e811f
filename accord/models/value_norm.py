"""Running normalization of value targets (Yu et al. 2022, "ValueNorm").

The critic regresses normalized returns; advantages use de-normalized values. Statistics are a
debiased exponential moving average (beta = 0.99999) with the variance clamped at 1e-2, as in the
MAPPO reference code. Buffers, so they travel in checkpoints with the critic.
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
