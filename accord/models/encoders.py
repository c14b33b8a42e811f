"""Per-modality observation encoders, fused by concatenation into one feature vector per agent.

- ``vector`` [.., D] float: passed through (the MLP body does the work);
- ``image`` [.., C, H, W] uint8: a small strided CNN (scaled to [0, 1]);
- ``text`` [.., L] int64 token ids: mean of learned token embeddings (id 0 is padding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.envs.base import EnvSpec

TEXT_EMBED = 32
IMAGE_FEATURES = 64


class ImageEncoder(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        c = shape[0]
        self.conv = nn.Sequential(nn.Conv2d(c, 16, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            n = self.conv(torch.zeros(1, *shape)).shape[-1]
        self.out = nn.Sequential(nn.Linear(n, IMAGE_FEATURES), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-3]
        y = self.conv(x.reshape(-1, *x.shape[-3:]).float() / 255.0)  # [lead*, F]
        return self.out(y).view(*lead, -1)


class TextEncoder(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, TEXT_EMBED, padding_idx=0)

    def forward(self, x: Tensor) -> Tensor:
        present = (x != 0).unsqueeze(-1).float()  # [..., L, 1]
        return (self.embed(x) * present).sum(-2) / present.sum(-2).clamp_min(1.0)


class ObsEncoder(nn.Module):
    """Encodes the obs dict ``{modality: [..., *shape]}`` into features ``[..., out_dim]``."""

    def __init__(self, spec: EnvSpec) -> None:
        super().__init__()
        self.modalities = sorted(spec.obs_shapes)
        self.encoders = nn.ModuleDict()
        self.out_dim = 0
        for m in self.modalities:
            shape = spec.obs_shapes[m]
            if m == "vector":
                self.out_dim += shape[0]
            elif m == "image":
                self.encoders[m] = ImageEncoder(shape)
                self.out_dim += IMAGE_FEATURES
            elif m == "text":
                self.encoders[m] = TextEncoder(spec.vocab_size)
                self.out_dim += TEXT_EMBED
            else:
                raise ValueError(f"unknown observation modality '{m}'; known: vector, image, text")

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        parts = [self.encoders[m](obs[m]) if m in self.encoders else obs[m] for m in self.modalities]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
