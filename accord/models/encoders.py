"""Per-modality observation encoders, fused into one feature vector per agent.

- ``vector`` [.., D] float: passed through (the MLP body does the work);
- ``image`` [.., C, H, W] uint8: a small strided CNN (scaled to [0, 1] inside, so batches stay uint8);
  for video, ``model.recurrent`` adds a GRU over time (or stack frames as channels);
- ``text`` [.., L] int64 token ids (id 0 is padding): token + position embeddings, pooled by one
  learned attention query (an attention encoder small enough for CPU and ONNX).

Fusion (``model.fusion``): ``concat`` (default) concatenates the modality features; ``attention``
projects each to one token of width ``FUSION_DIM`` and pools the tokens with learned attention
weights, so the policy can weigh modalities per observation.

``model.drop_modalities`` zeroes a modality's input (an ablation: same network, no information).
``model.encoders: {modality: 'package.module:Class'}`` replaces a modality's encoder (or adds one
for a modality of your own): ``Class(shape)`` is an ``nn.Module`` with an int ``out_dim``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from accord.envs.base import EnvSpec
from accord.errors import ConfigError
from accord.plugins import load_object

if TYPE_CHECKING:
    from accord.config import ModelConfig

TEXT_EMBED = 32
IMAGE_FEATURES = 64
FUSION_DIM = 64
KNOWN_MODALITIES = ("vector", "image", "text")


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
    """Token + position embeddings, pooled by a learned query over the non-padding tokens."""

    def __init__(self, vocab_size: int, length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, TEXT_EMBED, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(length, TEXT_EMBED))
        self.query = nn.Linear(TEXT_EMBED, 1)

    def forward(self, x: Tensor) -> Tensor:
        e = self.embed(x) + self.position  # [..., L, E]
        score = self.query(e).squeeze(-1).masked_fill(x == 0, -1e9)  # [..., L]
        weight = score.softmax(-1) * (x != 0).any(-1, keepdim=True)  # all padding: zero features
        return (weight.unsqueeze(-1) * e).sum(-2)  # [..., E]


class AttentionFusion(nn.Module):
    """One token per modality (linear projection), pooled with softmax attention weights."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d, FUSION_DIM) for d in dims)
        self.score = nn.Linear(FUSION_DIM, 1)

    def forward(self, parts: list[Tensor]) -> Tensor:
        tokens = torch.stack([torch.tanh(p(x)) for p, x in zip(self.proj, parts, strict=True)], dim=-2)  # [..., M, F]
        weight = self.score(tokens).softmax(-2)  # [..., M, 1]
        return (weight * tokens).sum(-2)  # [..., F]


def load_encoder(spec: str) -> type[nn.Module]:
    """A user encoder class named 'package.module:Class' (see the module docstring)."""
    return load_object(spec, "encoder", lambda obj: isinstance(obj, type) and issubclass(obj, nn.Module),
                       "an nn.Module subclass built as Class(shape), with an int attribute out_dim")


class ObsEncoder(nn.Module):
    """Encodes the obs dict ``{modality: [..., *shape]}`` into features ``[..., out_dim]``.

    ``model`` supplies ``encoders`` (user encoder classes by name), ``drop_modalities`` and ``fusion``.
    """

    def __init__(self, spec: EnvSpec, model: ModelConfig | None = None) -> None:
        super().__init__()
        self.modalities = sorted(spec.obs_shapes)
        self.encoders = nn.ModuleDict()
        custom = dict(model.encoders) if model else {}
        self.dropped = sorted(model.drop_modalities) if model else []
        if unknown := [m for m in self.dropped if m not in spec.obs_shapes]:
            raise ConfigError(f"model.drop_modalities: {unknown} not observed by this task; "
                              f"its modalities: {', '.join(self.modalities)}")
        dims = []
        for m in self.modalities:
            shape = spec.obs_shapes[m]
            if m in custom:
                self.encoders[m] = load_encoder(custom[m])(shape)
                out_dim = getattr(self.encoders[m], "out_dim", None)
                if not isinstance(out_dim, int) or out_dim < 1:
                    raise ConfigError(f"model.encoders.{m}: '{custom[m]}' built for shape {tuple(shape)} has "
                                      f"out_dim {out_dim!r}; it must set an int out_dim >= 1")
                dims.append(out_dim)
            elif m == "vector":
                dims.append(shape[0])
            elif m == "image":
                if len(shape) != 3:
                    raise ConfigError(f"image observations must be [C, H, W] per agent, got shape {tuple(shape)}")
                self.encoders[m] = ImageEncoder(shape)
                dims.append(IMAGE_FEATURES)
            elif m == "text":
                if spec.vocab_size < 2:
                    raise ConfigError(f"text observations need a vocabulary (EnvSpec.vocab_size >= 2, id 0 is "
                                      f"padding), got vocab_size={spec.vocab_size}")
                self.encoders[m] = TextEncoder(spec.vocab_size, shape[0])
                dims.append(TEXT_EMBED)
            else:
                raise ConfigError(f"unknown observation modality '{m}'; known: {', '.join(KNOWN_MODALITIES)} "
                                  f"(model.encoders.{m} can name an encoder for it)")
        self.fusion = AttentionFusion(dims) if model and model.fusion == "attention" else None
        self.out_dim = FUSION_DIM if self.fusion else sum(dims)

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        obs = {**obs, **{m: torch.zeros_like(obs[m]) for m in self.dropped}}
        parts = [self.encoders[m](obs[m]) if m in self.encoders else obs[m] for m in self.modalities]
        if self.fusion is not None:
            return self.fusion(parts)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
