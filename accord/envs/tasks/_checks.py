"""Action validation shared by the built-in discrete tasks: one clear error instead of a bad index."""

from __future__ import annotations

import torch
from torch import Tensor

from accord.errors import EnvError


def check_discrete_actions(
    actions: object, num_envs: int, n_agents: int, n_actions: int, device: torch.device
) -> Tensor:
    """Return ``actions`` as int64 ``[B, N]`` on ``device``; raise :class:`EnvError` when malformed."""
    if not isinstance(actions, Tensor):
        raise EnvError(f"actions must be a torch.Tensor of shape [{num_envs}, {n_agents}], "
                       f"got {type(actions).__name__}")
    if tuple(actions.shape) != (num_envs, n_agents):
        raise EnvError(f"actions must have shape [num_envs, n_agents] = [{num_envs}, {n_agents}], "
                       f"got {list(actions.shape)}")
    if actions.is_floating_point() or actions.is_complex() or actions.dtype == torch.bool:
        raise EnvError(f"discrete actions must be an integer tensor (int64), got {actions.dtype}")
    actions = actions.to(device=device, dtype=torch.int64)
    if bool(((actions < 0) | (actions >= n_actions)).any()):
        raise EnvError(f"discrete actions must lie in 0..{n_actions - 1}, got values from "
                       f"{int(actions.min())} to {int(actions.max())}")
    return actions


def seed_generator(gen: torch.Generator, seed: int | None, started: bool) -> None:
    """Seed a task's generator on reset: with ``seed``; else, on the first reset only, from torch's
    global RNG (so ``torch.manual_seed`` fixes an unseeded task); later resets continue the stream."""
    if seed is not None:
        gen.manual_seed(seed)
    elif not started:
        gen.manual_seed(int(torch.randint(2**62, ()).item()))
