"""Episode replay for off-policy learners: whole episodes in preallocated ``[capacity, T, N, ...]`` tensors.

Built-in envs autoreset at different times, so each env writes into its own *open* row (``[B, T, N, ...]``)
of an :class:`EpisodeBuilder` (on the collecting side) at its own time index; a finished episode leaves as
a row that any :class:`EpisodeBuffer` stores with one indexed copy per field. Nothing is kept as
per-step Python objects, and the memory a buffer needs is known (and checked against what the machine
has) before anything is allocated.

Fields of an :class:`EpisodeBatch` (L = ``spec.episode_limit``; observation-like fields hold L + 1 steps,
step ``length`` being the observation after the last action, used to bootstrap truncated episodes):

- ``obs`` {modality: [.., L+1, N, ...]}, ``state`` [.., L+1, S], ``avail`` [.., L+1, N, A],
  ``alive`` [.., L+1, N] (the env's ``agent_mask``)
- ``actions`` [.., L, N] int64, ``reward`` [.., L] team reward, ``terminated`` [.., L]
- ``length`` [..] int64: actions taken in the episode; steps at or past it are padding

The env layout carries no available-action or agent mask for the final observation (the env has already
reset), so step ``length`` repeats the masks of the step before. Marking every action available there
instead lets a truncated episode bootstrap from actions that are never trained in such states (e.g.
foraging's ``load`` away from food), and the inflated value spreads back through the whole episode.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from accord.envs.base import OBS_DTYPES, EnvSpec, Step
from accord.errors import CheckpointError, ConfigError, EnvError

PER_ACTION = ("actions", "reward", "terminated")  # L steps; every other time-indexed field has L + 1


def _layout(spec: EnvSpec) -> dict[str, Any]:
    """Per-episode shape and dtype of every field: the one place the buffer layout is defined."""
    n, steps = spec.n_agents, spec.episode_limit
    return {
        "obs": {m: ((steps + 1, n, *s), OBS_DTYPES[m]) for m, s in spec.obs_shapes.items()},
        "state": ((steps + 1, spec.state_dim), torch.float32),
        "avail": ((steps + 1, n, spec.avail_dim), torch.bool),
        "alive": ((steps + 1, n), torch.bool),
        "actions": ((steps, n), torch.int64),
        "reward": ((steps,), torch.float32),
        "terminated": ((steps,), torch.bool),
        "length": ((), torch.int64),
    }


def episode_bytes(spec: EnvSpec) -> int:
    """Bytes one stored episode takes (all fields, padded to the episode limit)."""
    def size(shape: tuple[int, ...], dtype: torch.dtype) -> int:
        return math.prod(shape) * dtype.itemsize

    total = 0
    for entry in _layout(spec).values():
        total += sum(size(*e) for e in entry.values()) if isinstance(entry, dict) else size(*entry)
    return total


def available_bytes(device: torch.device) -> int | None:
    """Memory that can still be allocated on ``device`` (None where it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class EpisodeBatch:
    """Episodes as one tensor per field; batch-major ``[E, T, ...]`` in storage, see :meth:`time_major`."""

    obs: dict[str, Tensor]
    state: Tensor
    avail: Tensor
    alive: Tensor
    actions: Tensor
    reward: Tensor
    terminated: Tensor
    length: Tensor

    @classmethod
    def allocate(cls, spec: EnvSpec, rows: int, device: torch.device) -> EpisodeBatch:
        def z(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
            return torch.zeros(rows, *shape, dtype=dtype, device=device)

        return cls(**{k: {m: z(*e) for m, e in v.items()} if isinstance(v, dict) else z(*v)
                      for k, v in _layout(spec).items()})

    def map(self, fn: Callable[[str, Tensor], Tensor]) -> EpisodeBatch:
        """Apply ``fn(field name, tensor)`` to every tensor (``length`` included)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = {m: fn(f.name, x) for m, x in v.items()} if isinstance(v, dict) else fn(f.name, v)
        return EpisodeBatch(**out)

    def tensors(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def time_major(self) -> EpisodeBatch:
        """``[E, T, ...]`` -> ``[T, E, ...]`` views, the ``[T, B, N]`` layout models take (``length`` stays [E])."""
        return self.map(lambda name, x: x if name == "length" else x.transpose(0, 1))  # [T, E, ...]

    @property
    def filled(self) -> Tensor:
        """[T, E] True on real (non-padding) steps of a time-major batch."""
        steps = torch.arange(self.actions.shape[0], device=self.length.device)
        return steps[:, None] < self.length[None]  # [T, E]


    def rows(self, idx: Tensor) -> EpisodeBatch:
        """A copy of batch-major rows ``idx``."""
        return self.map(lambda _, x: x.index_select(0, idx))  # whole rows: faster than x[idx] on CPU

    def __len__(self) -> int:
        return int(self.length.shape[0])


@dataclass
class EpisodeChunk:
    """What an off-policy runner hands the learner: the episodes that finished, and the steps taken."""

    episodes: list[EpisodeBatch]  # batch-major [E, ...] each, in the order they finished
    env_steps: int


class EpisodeBuilder:
    """Assembles the episodes of ``num_envs`` envs stepping together, one open row per env.

    Built-in envs autoreset at different times, so each env writes at its own time index; a finished
    episode leaves as a batch-major row, ready for any :class:`EpisodeBuffer`.
    """

    def __init__(self, spec: EnvSpec, num_envs: int, device: torch.device) -> None:
        self.spec, self.device = spec, torch.device(device)
        self.open = EpisodeBatch.allocate(spec, num_envs, self.device)
        self._rows = torch.arange(num_envs, device=self.device)
        self._t = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # open rows' time index

    @torch.no_grad()
    def add(self, step: Step, actions: Tensor, nxt: Step) -> EpisodeBatch | None:
        """Record the transition ``step --actions--> nxt`` of every env; return the episodes it ends."""
        o, rows, t = self.open, self._rows, self._t
        for m, x in step.obs.items():
            o.obs[m][rows, t] = x
        o.state[rows, t], o.avail[rows, t], o.alive[rows, t] = step.state, step.avail_actions, step.agent_mask
        o.actions[rows, t], o.reward[rows, t], o.terminated[rows, t] = actions, nxt.reward, nxt.terminated
        t += 1
        done = nxt.done
        overrun = (t >= self.spec.episode_limit) & ~done
        any_done, any_overrun = torch.stack([done.any(), overrun.any()]).tolist()
        if any_overrun:
            raise EnvError(f"an episode ran past the env's episode_limit ({self.spec.episode_limit}) without "
                           "ending; the replay buffer stores episodes of at most that many steps")
        if not any_done:
            return None
        idx = done.nonzero().squeeze(1)  # [D]
        final_obs, final_state = nxt.finals()
        last = t[idx]
        for m, x in final_obs.items():
            o.obs[m][idx, last] = x[idx]
        o.state[idx, last] = final_state[idx]
        o.avail[idx, last] = o.avail[idx, last - 1]
        o.alive[idx, last] = o.alive[idx, last - 1]
        o.length[idx] = last
        t[idx] = 0
        return o.rows(idx)


class EpisodeBuffer:
    """A ring of ``capacity`` whole episodes; accepts finished episodes from any source (:meth:`extend`)."""

    def __init__(self, spec: EnvSpec, capacity: int, device: torch.device) -> None:
        need = capacity * episode_bytes(spec)
        free = available_bytes(torch.device(device))
        if free is not None and need > free:
            raise ConfigError(
                f"replay buffer of {capacity} episodes x {spec.episode_limit + 1} steps needs "
                f"{need / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB is available on {device}; "
                f"lower q.buffer_episodes (at most about {free // episode_bytes(spec)})")
        self.spec, self.capacity, self.device = spec, capacity, torch.device(device)
        self.store = EpisodeBatch.allocate(spec, capacity, self.device)
        self.ptr = 0  # next slot to write
        self.size = 0  # stored episodes
        self.episodes = 0  # episodes ever added

    @property
    def used_bytes(self) -> int:
        """Memory the stored episodes take (what a checkpoint with the buffer adds)."""
        return self.size * episode_bytes(self.spec)

    @torch.no_grad()
    def extend(self, episodes: EpisodeBatch) -> None:
        """Store batch-major episodes, oldest overwritten first."""
        n = len(episodes)
        keep = min(n, self.capacity)
        slots = (self.ptr + n - keep + torch.arange(keep, device=self.device)) % self.capacity  # [keep]
        for name, dst in self.store.tensors().items():
            src = getattr(episodes, name)
            if isinstance(dst, dict):
                for m in dst:
                    dst[m][slots] = src[m][n - keep:].to(self.device)
            else:
                dst[slots] = src[n - keep:].to(self.device)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.episodes += n

    def sample(self, n: int) -> EpisodeBatch:
        """``n`` stored episodes drawn uniformly (torch's global RNG), time-major, cut to the longest."""
        idx = torch.randint(self.size, (n,), device=self.device)  # [n]
        steps = int(self.store.length[idx].max())

        def cut(name: str, x: Tensor) -> Tensor:
            if name == "length":
                return x.index_select(0, idx)
            return x[:, : steps if name in PER_ACTION else steps + 1].index_select(0, idx)  # [n, T(+1), ...]

        return self.store.map(cut).time_major()

    # -- checkpoint state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The stored episodes (only the filled slots) and the ring position; open rows are dropped."""
        used = self.store.map(lambda _, x: x[: self.size].clone() if self.size < self.capacity else x)
        return {"capacity": self.capacity, "ptr": self.ptr, "size": self.size, "episodes": self.episodes,
                "store": used.tensors()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise CheckpointError(f"the checkpoint's replay buffer holds up to {state['capacity']} episodes, "
                                  f"this run's {self.capacity}; resume with q.buffer_episodes={state['capacity']}")
        size = int(state["size"])
        for name, dst in self.store.tensors().items():
            src = state["store"][name]
            if isinstance(dst, dict):
                for m in dst:
                    dst[m][:size] = src[m]
            else:
                dst[:size] = src
        self.ptr, self.size, self.episodes = int(state["ptr"]), size, int(state["episodes"])
