"""Random rollouts for the credit-method tests (imported as `batches`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch

from accord.envs.base import EnvSpec
from accord.rollout import Rollout


def random_batch(spec: EnvSpec, t: int, b: int, seed: int = 0, dead: float = 0.0) -> Rollout:
    """A Rollout ``[T, B, N, ...]`` of random vector observations, states, actions and rewards.

    ``dead`` is the chance that an agent is dead at a step (``agent_mask`` False).
    """
    g = torch.Generator().manual_seed(seed)
    batch = Rollout.allocate(spec, t, b, torch.device("cpu"))
    n = spec.n_agents
    batch.obs = {"vector": torch.rand(t, b, n, *spec.obs_shapes["vector"], generator=g)}
    batch.state = torch.rand(t, b, spec.state_dim, generator=g)
    batch.avail = torch.ones(t, b, n, spec.avail_dim, dtype=torch.bool)
    batch.agent_mask = torch.rand(t, b, n, generator=g) >= dead
    batch.starts[0] = True
    batch.actions = torch.randint(spec.n_actions, (t, b, n), generator=g)
    batch.reward = torch.randn(t, b, generator=g)
    batch.agent_reward = torch.randn(t, b, n, generator=g)
    return batch
