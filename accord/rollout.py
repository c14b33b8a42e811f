"""The on-policy batch: one preallocated ``[T, B, N, ...]`` tensor per key, filled step by step.

Field names are the batch vocabulary shared by runners, credit methods and learners:

- ``obs`` {modality: [T, B, N, ...]}, ``state`` [T, B, S], ``avail`` [T, B, N, A], ``agent_mask`` [T, B, N]
- ``next_state`` [T, B, S]: the state after step t, before any autoreset (the final state where an
  episode ended at t)
- ``starts`` [T, B]: step t is the first of an episode (recurrent state resets there)
- ``actions`` [T, B, N] (int64) or [T, B, N, D], ``logp`` [T, B, N] log pi_old(u|o)
- ``reward`` [T, B] team reward, ``agent_reward`` [T, B, N] individual rewards
- ``terminated`` / ``truncated`` [T, B]
- ``final_obs`` {modality: [T, B, N, ...]}: the observation after step t, before any autoreset
- ``last_obs`` {modality: [B, N, ...]}, ``last_state`` [B, S], ``last_starts`` [B]: where the rollout
  stopped (the learner bootstraps from them)
- ``h_actor`` [B, N, H]: the policy's recurrent state at t=0 (the runner's)

Filled by the learner's critic in one pass over the batch (the runner never runs a critic):

- ``values`` [T, B, N] critic output (normalized scale if value normalization is on)
- ``final_values`` [T, B, N]: value of the last observation of an episode truncated at t
- ``last_values`` [B, N]: value after the last step (bootstrap), ``h_critic`` [B, N, H] at t=0
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from accord.envs.base import OBS_DTYPES, EnvSpec


@dataclass
class Rollout:
    obs: dict[str, Tensor]
    state: Tensor
    next_state: Tensor
    avail: Tensor
    agent_mask: Tensor
    starts: Tensor
    actions: Tensor
    logp: Tensor
    values: Tensor
    reward: Tensor
    agent_reward: Tensor
    terminated: Tensor
    truncated: Tensor
    final_values: Tensor
    last_values: Tensor
    final_obs: dict[str, Tensor]
    last_obs: dict[str, Tensor]
    last_state: Tensor
    last_starts: Tensor
    h_actor: Tensor | None = None
    h_critic: Tensor | None = None

    @classmethod
    def allocate(cls, spec: EnvSpec, t: int, b: int, device: torch.device) -> Rollout:
        n = spec.n_agents

        def z(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        act_shape = (t, b, n) if spec.action_kind == "discrete" else (t, b, n, spec.n_actions)
        return cls(
            obs={m: z(t, b, n, *s, dtype=OBS_DTYPES[m]) for m, s in spec.obs_shapes.items()},
            state=z(t, b, spec.state_dim), next_state=z(t, b, spec.state_dim),
            avail=z(t, b, n, spec.avail_dim, dtype=torch.bool),
            agent_mask=z(t, b, n, dtype=torch.bool), starts=z(t, b, dtype=torch.bool),
            actions=z(*act_shape, dtype=torch.long if spec.action_kind == "discrete" else torch.float32),
            logp=z(t, b, n), values=z(t, b, n), reward=z(t, b), agent_reward=z(t, b, n),
            terminated=z(t, b, dtype=torch.bool), truncated=z(t, b, dtype=torch.bool),
            final_values=z(t, b, n), last_values=z(b, n),
            final_obs={m: z(t, b, n, *s, dtype=OBS_DTYPES[m]) for m, s in spec.obs_shapes.items()},
            last_obs={m: z(b, n, *s, dtype=OBS_DTYPES[m]) for m, s in spec.obs_shapes.items()},
            last_state=z(b, spec.state_dim), last_starts=z(b, dtype=torch.bool),
        )

    def nbytes(self) -> int:
        """Bytes held by the batch's tensors (images count one byte per pixel: they stay uint8)."""
        tensors = [getattr(self, f.name) for f in fields(self)]
        flat = [x for v in tensors for x in (v.values() if isinstance(v, dict) else [v]) if x is not None]
        return sum(x.nbytes for x in flat)

    @classmethod
    def cat(cls, batches: list[Rollout], device: torch.device) -> Rollout:
        """Batches of equal T side by side over envs, ``[T, sum of B, ...]``, on ``device`` (the learner's)."""
        out: dict[str, object] = {}
        for f in fields(cls):
            vs = [getattr(b, f.name) for b in batches]
            dim = 0 if _batch_major(f.name) else 1
            if vs[0] is None:
                out[f.name] = None
            elif isinstance(vs[0], dict):
                out[f.name] = {k: torch.cat([v[k] for v in vs], dim).to(device) for k in vs[0]}
            else:
                out[f.name] = torch.cat(vs, dim).to(device)
        return cls(**out)  # type: ignore[arg-type]


def _batch_major(name: str) -> bool:
    """Fields without a time axis (``last_*``, ``h_*``): env is their first dimension."""
    return name.startswith("last_") or name.startswith("h_")
