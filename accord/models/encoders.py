"""Per-modality observation encoders, fused by concatenation into one feature vector per agent.

- ``vector`` [.., D] float: passed through (the MLP body does the work);
- ``image`` [.., C, H, W] uint8: a small strided CNN (scaled to [0, 1]);
- ``text`` [.., L] int64 token ids: mean of learned token embeddings (id 0 is padding).

``model.encoders: {modality: 'package.module:Class'}`` replaces a modality's encoder (or adds one
for a modality of your own): ``Class(shape)`` is an ``nn.Module`` with an int ``out_dim``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from accord.envs.base import EnvSpec
from accord.errors import ConfigError
from accord.plugins import load_object

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


def load_encoder(spec: str) -> type[nn.Module]:
    """A user encoder class named 'package.module:Class' (see the module docstring)."""
    return load_object(spec, "encoder", lambda obj: isinstance(obj, type) and issubclass(obj, nn.Module),
                       "an nn.Module subclass built as Class(shape), with an int attribute out_dim")


class ObsEncoder(nn.Module):
    """Encodes the obs dict ``{modality: [..., *shape]}`` into features ``[..., out_dim]``.

    ``custom`` maps modalities to user encoder classes by name (``model.encoders``).
    """

    def __init__(self, spec: EnvSpec, custom: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.modalities = sorted(spec.obs_shapes)
        self.encoders = nn.ModuleDict()
        self.out_dim = 0
        custom = custom or {}
        for m in self.modalities:
            shape = spec.obs_shapes[m]
            if m in custom:
                self.encoders[m] = load_encoder(custom[m])(shape)
                out_dim = getattr(self.encoders[m], "out_dim", None)
                if not isinstance(out_dim, int) or out_dim < 1:
                    raise ConfigError(f"model.encoders.{m}: '{custom[m]}' built for shape {tuple(shape)} has "
                                      f"out_dim {out_dim!r}; it must set an int out_dim >= 1")
                self.out_dim += out_dim
            elif m == "vector":
                self.out_dim += shape[0]
            elif m == "image":
                self.encoders[m] = ImageEncoder(shape)
                self.out_dim += IMAGE_FEATURES
            elif m == "text":
                self.encoders[m] = TextEncoder(spec.vocab_size)
                self.out_dim += TEXT_EMBED
            else:
                raise ConfigError(f"unknown observation modality '{m}'; known: vector, image, text "
                                  f"(model.encoders.{m} can name an encoder for it)")

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        parts = [self.encoders[m](obs[m]) if m in self.encoders else obs[m] for m in self.modalities]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
