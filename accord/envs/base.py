"""The one env layout used end to end.

Every vectorized env, built-in or adapted, speaks this interface. Shapes (B envs, N agents):

- ``obs``: dict modality -> tensor ``[B, N, ...]``. Modalities: ``"vector"`` (float32 ``[B, N, D]``),
  ``"image"`` (uint8 ``[B, N, C, H, W]``), ``"text"`` (int64 token ids ``[B, N, L]``).
- ``state``: float32 ``[B, S]`` global state for centralized critics/mixers (``S = 0`` if none).
- ``reward``: float32 ``[B]`` team reward; ``agent_reward``: float32 ``[B, N]`` individual rewards.
  The two are kept apart; credit methods choose which to learn from.
- ``terminated`` / ``truncated``: bool ``[B]``. Envs autoreset: after a done step the returned
  ``obs``/``state`` already belong to the next episode, and ``final_obs``/``final_state`` hold the
  last observation of the finished one (needed to bootstrap truncated episodes).
- ``agent_mask``: bool ``[B, N]``, True while the agent is alive. Dead agents are masked, never dropped.
- ``avail_actions``: bool ``[B, N, A]`` for discrete actions (all True if the env has no mask);
  ``[B, N, 0]`` for continuous actions.
- ``info``: dict name -> tensor ``[B]`` or ``[B, N]`` (e.g. ``"success"``).

Actions: int64 ``[B, N]`` (discrete) or float32 ``[B, N, D]`` (continuous, in ``[low, high]``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

ActionKind = Literal["discrete", "continuous"]
OBS_DTYPES = {"vector": torch.float32, "image": torch.uint8, "text": torch.int64}  # per modality


@dataclass(frozen=True)
class EnvSpec:
    """Static description of a multi-agent task, shared by every env in a batch."""

    n_agents: int
    obs_shapes: dict[str, tuple[int, ...]]  # per agent, per modality: {"vector": (D,)}
    state_dim: int  # 0 when the env has no global state
    action_kind: ActionKind
    n_actions: int  # discrete: number of actions; continuous: action dimension
    episode_limit: int
    action_low: float = -1.0
    action_high: float = 1.0
    agent_names: tuple[str, ...] = ()
    # Per-agent slice of the state: state[..., i*agent_state_dim:(i+1)*agent_state_dim] describes
    # agent i (used by attention mixers); 0 when the state has no such layout.
    agent_state_dim: int = 0
    vocab_size: int = 0  # token vocabulary of the "text" modality, if any
    # Sub-goals a hierarchical manager can assign (architecture: hierarchical); such a task reports
    # info["subgoal"] [B, N]: the sub-goal each agent reached at this step, -1 for none.
    n_subgoals: int = 0

    def __post_init__(self) -> None:
        if not self.agent_names:
            object.__setattr__(self, "agent_names", tuple(f"agent_{i}" for i in range(self.n_agents)))

    @property
    def avail_dim(self) -> int:
        """Width of the available-action mask (0 for continuous actions)."""
        return self.n_actions if self.action_kind == "discrete" else 0


@dataclass
class Step:
    """What one vectorized ``reset``/``step`` returns; see the module docstring for shapes."""

    obs: dict[str, Tensor]
    state: Tensor
    reward: Tensor
    agent_reward: Tensor
    terminated: Tensor
    truncated: Tensor
    agent_mask: Tensor
    avail_actions: Tensor
    final_obs: dict[str, Tensor] = field(default_factory=dict)
    final_state: Tensor | None = None
    info: dict[str, Tensor] = field(default_factory=dict)

    @functools.cached_property
    def done(self) -> Tensor:
        """``terminated | truncated``, made once per step: the runner, its episode statistics and the cost
        meter all read it (a tensor of their own: an env may reuse its flag buffers)."""
        return self.terminated | self.truncated

    @classmethod
    def first(cls, obs: dict[str, Tensor], state: Tensor, agent_mask: Tensor, avail_actions: Tensor) -> Step:
        """A reset's output: no reward yet, nothing finished."""
        b, n = agent_mask.shape
        zeros = torch.zeros(b, device=state.device)
        false = torch.zeros(b, dtype=torch.bool, device=state.device)
        return cls(obs, state, zeros, torch.zeros(b, n, device=state.device), false, false.clone(), agent_mask,
                   avail_actions)

    def finals(self) -> tuple[dict[str, Tensor], Tensor]:
        """``(final_obs, final_state)``: the observation and state after this step, before any autoreset
        (the current ones when no env finished)."""
        if self.final_state is None:
            return self.obs, self.state
        return self.final_obs, self.final_state


@runtime_checkable
class VecEnv(Protocol):
    """A batch of ``num_envs`` copies of one task that steps all of them at once."""

    spec: EnvSpec
    num_envs: int
    device: torch.device

    def reset(self, seed: int | None = None) -> Step:
        """Reset every env; env ``i`` is seeded from ``seed`` (see each env's docs)."""
        ...

    def step(self, actions: Tensor) -> Step:
        """Apply one action per agent per env; done envs reset themselves."""
        ...

    def close(self) -> None: ...
