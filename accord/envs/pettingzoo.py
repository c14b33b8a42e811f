"""Adapter: B PettingZoo ``ParallelEnv``s stepped in-process and batched into the base.py layout.

The batching is done in numpy (:meth:`PettingZooVecEnv.reset_arrays` / :meth:`~PettingZooVecEnv.step_arrays`)
so that :class:`accord.runners.subproc.SubprocVecEnv` can run the same code in worker processes and
ship plain arrays through pipes; :func:`step_from_arrays` turns those arrays into a :class:`Step`.
An env may also answer in lists in ``possible_agents`` order (``reset_lists(seed)``,
``step_lists(actions)``, None for an agent without observation or info), as
:class:`~accord.envs.gymma.GymmaEnv` does, which spares building and reading PettingZoo's dicts.

Mapping from PettingZoo to the layout:

- agents are ``env.possible_agents`` in order. Agents that have left ``env.agents`` (dead) stay in
  the batch with ``agent_mask`` False, zero obs, zero reward and an all-True ``avail_actions`` row
  (so sampling never breaks); the reward of the step on which an agent leaves still counts.
- a ``Box`` observation becomes modality ``"vector"`` (flattened float32). Agents with smaller
  observations are zero-padded to the largest one. A 3-dim uint8 ``Box`` becomes ``"image"`` (CHW;
  HWC unless the first dim is at most 4 and the last is larger). A ``Dict`` observation with an
  ``"observation"`` entry (PettingZoo classic style) uses that entry; its ``"action_mask"`` entry, or
  ``infos[agent]["action_mask"]``, gives ``avail_actions``.
- any other ``Dict`` observation is multimodal (docs/multimodal.md), entry by entry in key order:
  a gymnasium ``Text`` is ``"text"`` (one token per character: id = position in its charset + 1, 0
  is padding; longer text than ``max_length`` is refused), as is an integer ``Box`` of rank 1 under a
  key named ``text`` or ``tokens`` (token ids, vocabulary ``high + 1``); a uint8 rank-3 ``Box`` is
  ``"image"`` (a key named ``image`` must be one); other ``Box`` entries are concatenated into
  ``"vector"``. Agents may differ (heterogeneous teams): a modality an agent lacks is zeros, text is
  padded to the longest limit; images must share one shape.
- ``Discrete`` actions: ``n_actions`` is the largest ``n``; actions beyond an agent's own ``n`` are
  unavailable. ``Box`` actions: continuous with the widest ``[low, high]`` over agents; each agent's
  action is cut to its own dimension and clipped to its own bounds.
- global state is ``env.state()`` when the env has a ``state_space``; otherwise the concatenation of
  all agents' vector observations (``agent_state_dim`` = obs size), or no state (``S = 0``) without vectors.
- team reward is the sum (default) or mean of the agents' rewards over ``possible_agents``.
- an episode ends when no agent is left alive; it is ``truncated`` if every agent that ended on the
  last step did so by truncation only, else ``terminated``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.envs.resilient import backoff_delay, describe
from accord.errors import ConfigError, EnvError

logger = logging.getLogger(__name__)

TeamReward = Literal["sum", "mean"]
_NP_DTYPES = {"vector": np.float32, "image": np.uint8, "text": np.int64}
Arrays = dict[str, np.ndarray]  # flat keys: "obs/<modality>", "state", "reward", ..., "info/<name>"


def step_from_arrays(arrays: Arrays, device: torch.device) -> Step:
    """Build a :class:`Step` from the numpy arrays of :meth:`PettingZooVecEnv.step_arrays`.

    ``final_obs``/``final_state`` are only filled when some env finished, as base.py documents. On the
    CPU the tensors share the arrays' memory.
    """
    t = torch.from_numpy if device.type == "cpu" else lambda x: torch.from_numpy(x).to(device)
    finished = bool(arrays["terminated"].any() or arrays["truncated"].any())
    obs, final_obs, info = {}, {}, {}
    for k, v in arrays.items():
        if k.startswith("obs/"):
            obs[k[4:]] = t(v)
        elif k.startswith("info/"):
            info[k[5:]] = t(v)
        elif finished and k.startswith("final_obs/"):
            final_obs[k[10:]] = t(v)
    return Step(obs=obs, state=t(arrays["state"]), reward=t(arrays["reward"]), agent_reward=t(arrays["agent_reward"]),
                terminated=t(arrays["terminated"]), truncated=t(arrays["truncated"]),
                agent_mask=t(arrays["agent_mask"]), avail_actions=t(arrays["avail_actions"]), final_obs=final_obs,
                final_state=t(arrays["final_state"]) if finished else None, info=info)


def _reset_lists(env: ParallelEnv, agents: Sequence[str], seed: int | None = None) -> tuple[Sequence, list]:
    """``env.reset`` as lists in agent order: observations and infos (None where an agent has none)."""
    native = getattr(env, "reset_lists", None)
    if native is not None:
        return native(seed)
    obs, infos = env.reset(seed=seed)
    return [obs.get(a) for a in agents], [infos.get(a) for a in agents]


def _step_lists(env: ParallelEnv, agents: Sequence[str], row: Sequence[Any]
                ) -> tuple[Sequence, list[float], list[bool], list[bool], list]:
    """``env.step`` with every agent's action, as lists in agent order (None where an agent has no
    observation or info). Envs with a ``step_lists`` of their own (GymmaEnv: tuple envs) skip the dicts."""
    native = getattr(env, "step_lists", None)
    if native is not None:
        return native(row)
    live = env.agents
    obs, rewards, terms, truncs, infos = env.step({a: x for a, x in zip(agents, row, strict=True) if a in live})
    return ([obs.get(a) for a in agents], [rewards.get(a, 0.0) for a in agents], [terms.get(a, False) for a in agents],
            [truncs.get(a, False) for a in agents], [infos.get(a) for a in agents])


TEXT_KEYS = ("text", "tokens")  # Dict keys whose integer Box holds token ids
IMAGE_KEYS = ("image",)  # Dict keys that must hold an image


@dataclass(frozen=True)
class _Piece:
    """One entry of an agent's observation and the modality it fills."""

    key: str | None  # Dict key; None: the whole observation
    modality: str  # "vector", "image" or "text"
    shape: tuple[int, ...]  # vector: (flat size,); image: (C, H, W); text: (max tokens,)
    hwc: bool = False  # image arrives channels-last
    charset: tuple[str, ...] = ()  # gymnasium Text: token id = index + 1
    vocab: int = 0  # text: token ids lie in [0, vocab)
    rank1: bool = False  # a vector that arrives flat (no reshape needed)


@dataclass(frozen=True)
class _Layout:
    """How one agent's raw PettingZoo data maps to rows of the batched arrays."""

    spec: EnvSpec
    pieces: tuple[tuple[_Piece, ...], ...]  # per agent, in key order
    dict_obs: bool  # observations are {"observation": ..., "action_mask": ...}
    multimodal: bool  # observations are {key: entry, ..., optional "action_mask"}
    action_spaces: tuple[spaces.Space, ...]
    default_avail: np.ndarray  # [N, A] True for each agent's own actions
    has_state_fn: bool  # use env.state() (else concatenate observations)


def _agent_obs_space(space: spaces.Space) -> tuple[spaces.Space, bool]:
    if isinstance(space, spaces.Dict) and "observation" in space.spaces:
        return space["observation"], True
    return space, False


def _piece(agent: str, key: str | None, space: spaces.Space) -> _Piece:
    """Classify one observation entry (see the module docstring)."""
    name = f"observation '{key}' of {agent}" if key else f"observation of {agent}"
    if isinstance(space, spaces.Text):
        return _Piece(key, "text", (space.max_length,), charset=tuple(space.character_list),
                      vocab=len(space.character_list) + 1)
    if not isinstance(space, spaces.Box):
        raise EnvError(f"unsupported {name}: {space!r}; hint: use Box (vector or uint8 image) or Text entries")
    shape, integer = tuple(space.shape), np.issubdtype(space.dtype, np.integer)
    if key in TEXT_KEYS:
        if not integer or len(shape) != 1:
            raise EnvError(f"{name} holds token ids, so it must be an integer Box of rank 1, got {space!r}")
        return _Piece(key, "text", shape, vocab=int(np.max(space.high)) + 1)
    if space.dtype == np.uint8 and len(shape) == 3:
        hwc = not (shape[0] <= 4 < shape[2])
        return _Piece(key, "image", (shape[2], shape[0], shape[1]) if hwc else shape, hwc=hwc)
    if key in IMAGE_KEYS:
        raise EnvError(f"{name} is an image, so it must be a uint8 Box of rank 3 (HWC or CHW), got dtype "
                       f"{space.dtype} and shape {shape}; hint: convert it with .astype(np.uint8)")
    return _Piece(key, "vector", (int(np.prod(shape)),), rank1=len(shape) == 1)


def _agent_pieces(agent: str, space: spaces.Space) -> tuple[_Piece, ...]:
    if isinstance(space, spaces.Dict):
        return tuple(_piece(agent, k, s) for k, s in sorted(space.spaces.items()) if k != "action_mask")
    return (_piece(agent, None, space),)


def _obs_shapes(pieces: tuple[tuple[_Piece, ...], ...]) -> tuple[dict[str, tuple[int, ...]], int]:
    """Batched per-modality shapes over all agents, and the text vocabulary."""
    flat = [p for agent in pieces for p in agent]
    for agent in pieces:
        for m in ("image", "text"):
            if sum(p.modality == m for p in agent) > 1:
                raise EnvError(f"an agent has more than one {m} entry; hint: stack images as channels, "
                               "join texts into one")
    shapes: dict[str, tuple[int, ...]] = {}
    images = {p.shape for p in flat if p.modality == "image"}
    if len(images) > 1:
        raise EnvError(f"agents have different image shapes {sorted(images)}; hint: resize them to one")
    if images:
        shapes["image"] = images.pop()
    vectors = [sum(p.shape[0] for p in agent if p.modality == "vector") for agent in pieces]
    if max(vectors) > 0:
        shapes["vector"] = (max(vectors),)
    texts = [p for p in flat if p.modality == "text"]
    if len({p.charset for p in texts}) > 1:
        raise EnvError("agents' Text spaces have different charsets; hint: give every agent one charset")
    if texts:
        shapes["text"] = (max(p.shape[0] for p in texts),)
    return shapes, max((p.vocab for p in texts), default=0)


def _layout(env: ParallelEnv, episode_limit: int | None) -> _Layout:
    """Read the spec and the per-agent layout off one env."""
    agents = tuple(env.possible_agents)
    n = len(agents)
    obs_spaces, dict_flags = zip(*(_agent_obs_space(env.observation_space(a)) for a in agents), strict=True)
    pieces = tuple(_agent_pieces(a, s) for a, s in zip(agents, obs_spaces, strict=True))
    obs_shapes, vocab = _obs_shapes(pieces)

    act_spaces = tuple(env.action_space(a) for a in agents)
    if all(isinstance(s, spaces.Discrete) for s in act_spaces):
        n_actions = max(int(s.n) for s in act_spaces)
        default_avail = np.arange(n_actions)[None, :] < np.array([int(s.n) for s in act_spaces])[:, None]
        kind, low, high = "discrete", -1.0, 1.0
    elif all(isinstance(s, spaces.Box) for s in act_spaces):
        n_actions = max(int(np.prod(s.shape)) for s in act_spaces)
        default_avail = np.zeros((n, 0), dtype=bool)
        kind = "continuous"
        low = float(min(np.min(s.low) for s in act_spaces))
        high = float(max(np.max(s.high) for s in act_spaces))
    else:
        raise EnvError(
            f"unsupported action spaces {sorted({type(s).__name__ for s in act_spaces})}; "
            "hint: all agents need Discrete or all need Box actions"
        )

    state_space = getattr(env, "state_space", None)
    if state_space is not None:
        state_dim, agent_state_dim = int(np.prod(state_space.shape)), 0
    elif "vector" in obs_shapes:
        state_dim, agent_state_dim = n * obs_shapes["vector"][0], obs_shapes["vector"][0]
    else:
        state_dim, agent_state_dim = 0, 0

    if episode_limit is None:
        episode_limit = getattr(env.unwrapped, "max_cycles", None)
    if episode_limit is None:
        raise ConfigError(
            f"cannot tell the episode limit of {type(env.unwrapped).__name__} (it has no max_cycles); "
            "set task.params.episode_limit=N (or episode_limit=N when you build the vec env in code)"
        )
    spec = EnvSpec(
        n_agents=n,
        obs_shapes=obs_shapes,
        state_dim=state_dim,
        action_kind=kind,
        n_actions=n_actions,
        episode_limit=int(episode_limit),
        action_low=low,
        action_high=high,
        agent_names=agents,
        agent_state_dim=agent_state_dim,
        vocab_size=vocab,
    )
    multimodal = any(isinstance(s, spaces.Dict) for s in obs_spaces)
    return _Layout(spec, pieces, any(dict_flags), multimodal, act_spaces, default_avail, state_space is not None)


class PettingZooVecEnv:
    """A :class:`~accord.envs.base.VecEnv` over ``len(factories)`` PettingZoo ``ParallelEnv``s.

    ``reset(seed)`` seeds env ``i`` with ``seed + i``; autoresets pass no seed, so each env's own RNG
    carries on and runs stay reproducible. ``episode_limit`` overrides the env's ``max_cycles`` and is
    required for envs without one. ``info["success"]`` ([B] float, 0 where no episode ended) is set on
    steps where a finished episode's infos carry ``"success"`` or ``"is_success"``.
    """

    def __init__(
        self,
        factories: Sequence[Callable[[], ParallelEnv]],
        team_reward: TeamReward = "sum",
        device: str | torch.device = "cpu",
        episode_limit: int | None = None,
        faults: dict[str, Any] | None = None,
    ) -> None:
        if not factories:
            raise ConfigError("PettingZooVecEnv needs at least one env factory")
        # Per-env fault handling (docs/robustness.md): {retries, backoff_s, quarantine_after}; None: an
        # env that raises fails the batch (the caller reports it).
        self._factories = list(factories)
        self._faults = dict(faults) if faults else None
        if team_reward not in ("sum", "mean"):
            raise ConfigError(f"team_reward must be 'sum' or 'mean', got {team_reward!r}")
        self.envs: list[ParallelEnv] = [f() for f in factories]
        self.name: str = self.envs[0].metadata.get("name", type(self.envs[0].unwrapped).__name__)
        self._layout = _layout(self.envs[0], episode_limit)
        self.spec: EnvSpec = self._layout.spec
        for i, env in enumerate(self.envs[1:], start=1):
            if (spec := _layout(env, episode_limit).spec) != self.spec:
                raise EnvError(
                    f"env {i} has {spec}, but env 0 has {self.spec}; hint: batch copies of one task"
                )
        low, high = self.spec.action_low, self.spec.action_high
        if self.spec.action_kind == "continuous" and any(
            np.any(s.low != low) or np.any(s.high != high) for s in self._layout.action_spaces
        ):
            logger.warning(
                "%s: action bounds differ across agents or dimensions; the spec uses the widest "
                "[%g, %g] and each agent's action is clipped to its own bounds",
                self.name,
                low,
                high,
            )
        self.num_envs = len(self.envs)
        self.device = torch.device(device)
        self.team_reward = team_reward
        self._agents = self.spec.agent_names
        self._obs_keys = [f"obs/{m}" for m in self.spec.obs_shapes]
        # Per agent, where each observation entry goes: (entry, array key, offset in the vector row).
        self._slots = [_slots(pieces) for pieces in self._layout.pieces]
        self._padded_avail = [not row.all() for row in self._layout.default_avail]
        # Every agent sees one flat vector of the full width (lbforaging, mpe2): an env's rows are one copy.
        width = self.spec.obs_shapes.get("vector")
        self._plain = not (self._layout.dict_obs or self._layout.multimodal or any(self._padded_avail)) and all(
            len(p) == 1 and p[0].modality == "vector" and p[0].rank1 and p[0].shape == width
            for p in self._layout.pieces)
        self._no_rewards = [0.0] * self.spec.n_agents  # the rewards of an env that did not step (quarantine)
        self._all_true = np.ones((self.num_envs, self.spec.n_agents, self.spec.avail_dim), bool)
        spaces_ = self._layout.action_spaces
        self._discrete_starts = (np.array([int(s.start) for s in spaces_]) if self.spec.action_kind == "discrete"
                                 else None)
        if self._faults is not None:
            self._streak = [0] * self.num_envs  # consecutive failures per env copy
            self._retries = int(self._faults.get("retries", 0))
            self._quarantined: dict[int, int] = {}  # env index -> steps into its placeholder episode
            self._fault_rng = random.Random(len(factories))
            self._step_faults: dict[int, int] = {}  # failed calls per env this step (most steps: none)
            self._prev_obs: tuple[dict[str, np.ndarray], np.ndarray] | None = None  # the last step's arrays
            self._fault_finals: dict[int, tuple[dict[str, np.ndarray], np.ndarray]] = {}

    # -- VecEnv -------------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> Step:
        return step_from_arrays(self.reset_arrays(seed), self.device)

    def step(self, actions: Tensor) -> Step:
        return step_from_arrays(self.step_arrays(actions.cpu().numpy()), self.device)

    def close(self) -> None:
        for env in self.envs:
            env.close()

    # -- numpy batching (shared with SubprocVecEnv workers) ------------------------------------------

    def _empty(self) -> Arrays:
        """A step's arrays before the envs fill them: zero observations, dead agents, every action available
        (the rewards come after the loop, all at once)."""
        b, n, spec = self.num_envs, self.spec.n_agents, self.spec
        obs = {f"obs/{m}": np.zeros((b, n, *shape), _NP_DTYPES[m]) for m, shape in spec.obs_shapes.items()}
        concat = spec.state_dim and not self._layout.has_state_fn  # the agents' vectors side by side: a view
        return {
            **obs,
            "state": obs["obs/vector"].reshape(b, -1) if concat else np.zeros((b, spec.state_dim), np.float32),
            "terminated": np.zeros(b, bool),
            "truncated": np.zeros(b, bool),
            "agent_mask": np.zeros((b, n), bool),
            "avail_actions": self._all_true.copy(),
        }

    def reset_arrays(self, seed: int | None = None) -> Arrays:
        """Reset every env (env ``i`` with ``seed + i``) and return the batched arrays."""
        out = {**self._empty(), "reward": np.zeros(self.num_envs, np.float32),
               "agent_reward": np.zeros((self.num_envs, self.spec.n_agents), np.float32)}
        for b, env in enumerate(self.envs):
            obs, infos = _reset_lists(env, self._agents, None if seed is None else seed + b)
            self._fill(out, b, env, obs, infos, self._present(env, obs))
        return self._with_finals(out, {})

    def step_arrays(self, actions: np.ndarray) -> Arrays:
        """Step every env with ``actions`` (``[B, N]`` int or ``[B, N, D]`` float) and autoreset."""
        out = self._empty()
        finals: dict[int, tuple[dict[str, np.ndarray], np.ndarray]] = {}
        success = None  # [B], made at the first finished episode that reports success
        agents, faults = self._agents, self._faults
        rewards_by_env = [self._no_rewards] * self.num_envs  # converted once, after the loop
        for b, (env, row) in enumerate(zip(self.envs, self._env_actions(actions), strict=True)):
            if faults is not None and b in self._quarantined:
                self._fill_quarantined(b, out)
                continue
            try:
                got = _step_lists(env, agents, row)
            except Exception as e:
                if faults is None:
                    raise
                got = self._faulty_step(b, row, out, e)  # per-env retries, restarts and quarantine
                if got is None:
                    continue
                env = self.envs[b]
            else:
                if faults is not None:
                    self._streak[b] = 0
            obs, rewards_by_env[b], terms, truncs, infos = got
            if not (any(terms) or any(truncs)):  # nobody's episode ended (most steps)
                self._fill(out, b, env, obs, infos, self._present(env, obs))
                continue
            ended = [t or u for t, u in zip(terms, truncs, strict=True)]
            alive = [p and not e for p, e in zip(self._present(env, obs), ended, strict=True)]
            if any(alive):
                self._fill(out, b, env, obs, infos, alive)
                continue
            # Episode over: agents that ended on this step keep their last obs (to bootstrap from).
            self._fill(out, b, env, obs, infos, [e and o is not None for o, e in zip(obs, ended, strict=True)])
            by_truncation = any(ended) and not any(terms)
            out["truncated" if by_truncation else "terminated"][b] = True
            flags = [info[k] for info in infos if info for k in ("success", "is_success") if k in info]
            if flags:
                success = np.zeros(self.num_envs, np.float32) if success is None else success
                success[b] = max(float(f) for f in flags)
            finals[b] = ({k: out[k][b].copy() for k in self._obs_keys}, out["state"][b].copy())
            obs, infos = _reset_lists(env, agents)
            self._clear(out, b)
            self._fill(out, b, env, obs, infos, self._present(env, obs))
        agent_reward = out["agent_reward"] = np.array(rewards_by_env, np.float32)
        if agent_reward.shape != (self.num_envs, len(agents)):
            raise EnvError(f"{self.name}: rewards {agent_reward.shape[1:]} per env, expected one number for each "
                           f"of the {len(agents)} agents; hint: a scalar reward per agent")
        # Team reward for all envs at once (rows of envs that failed or are quarantined are zero).
        out["reward"] = agent_reward.sum(1) if self.team_reward == "sum" else agent_reward.mean(1)
        if success is not None:
            out["info/success"] = success
        if self._faults is not None:  # fault figures only on steps that have some (a missing info key reads as 0)
            if self._quarantined:
                out["info/quarantined"] = np.array([b in self._quarantined for b in range(self.num_envs)], np.float32)
            if self._step_faults:
                out["info/env_fault"] = np.zeros(self.num_envs, np.float32)
                out["info/env_fault"][list(self._step_faults)] = list(self._step_faults.values())
                self._step_faults = {}
            # Where a faulting env's episode ends next step. No copy: nothing writes into a step's arrays
            # once they are returned (the next step makes new ones).
            self._prev_obs = {k: out[k] for k in self._obs_keys}, out["state"]
            if self._fault_finals:
                finals.update(self._fault_finals)
                self._fault_finals = {}
        return self._with_finals(out, finals)

    def _env_actions(self, actions: np.ndarray) -> list[list[Any]]:
        """Per env, every agent's action as its own space takes it: discrete ids offset by the space's
        ``start`` (Python ints, which envs index with fastest), boxes cut to size and clipped."""
        if self._discrete_starts is not None:
            return (actions + self._discrete_starts).tolist()
        out = []
        for row in actions:
            acts = []
            for a, space in zip(row, self._layout.action_spaces, strict=True):
                dim = int(np.prod(space.shape))
                acts.append(np.clip(a[:dim].reshape(space.shape), space.low, space.high).astype(space.dtype))
            out.append(acts)
        return out

    # -- per-env faults -----------------------------------------------------------------------------

    def _faulty_step(self, b: int, row: Sequence[Any], out: Arrays, error: Exception) -> tuple[Any, ...] | None:
        """Env ``b``'s step after its call raised ``error``: retries, then a restart or quarantine; None when
        the slot was filled here."""
        faults = self._faults
        self._step_faults[b] = 1
        for attempt in range(self._retries):
            time.sleep(backoff_delay(attempt, float(faults.get("backoff_s", 0.05)), self._fault_rng))
            try:
                got = _step_lists(self.envs[b], self._agents, row)
                self._streak[b] = 0
                return got
            except Exception as e:  # a fault of this env copy: retry, then restart or quarantine it
                error = e
                self._step_faults[b] += 1
        self._streak[b] += 1
        prev = self._prev_obs
        if prev is not None:
            self._fault_finals[b] = ({k: v[b].copy() for k, v in prev[0].items()}, prev[1][b].copy())
        out["truncated"][b] = True
        self.last_fault = f"env {b} raised {describe(error)}"
        if self._streak[b] >= int(faults.get("quarantine_after", 3)):
            log = logger.info if self._quarantined else logger.warning  # one warning, not one per env copy
            log("%s: env %d raised %s %d times in a row; quarantined (the other %d envs go on)", self.name, b,
                describe(error), self._streak[b], self.num_envs - len(self._quarantined) - 1)
            self._quarantined[b] = 0  # a batch with every copy quarantined fails in ResilientVecEnv
            self._fill_quarantined(b, out)
            out["truncated"][b] = True
            return None
        logger.info("%s: env %d raised %s; rebuilding it with a fresh episode", self.name, b, describe(error))
        with contextlib.suppress(Exception):  # already broken
            self.envs[b].close()
        self.envs[b] = self._factories[b]()
        obs, infos = _reset_lists(self.envs[b], self._agents)
        self._fill(out, b, self.envs[b], obs, infos, self._present(self.envs[b], obs))
        return None

    def _fill_quarantined(self, b: int, out: Arrays) -> None:
        """A quarantined env: every agent masked (out of every loss), zero reward; its placeholder
        episodes truncate at the episode limit so episode buffers never overrun."""
        for k in self._obs_keys:
            out[k][b] = 0
        out["agent_mask"][b] = False
        out["avail_actions"][b] = True
        t = self._quarantined[b] + 1
        if t >= self.spec.episode_limit:
            out["truncated"][b], t = True, 0
        self._quarantined[b] = t

    def _with_finals(self, out: Arrays, finals: dict[int, tuple[dict[str, np.ndarray], np.ndarray]]) -> Arrays:
        if not finals:  # no env has a final observation of its own: the current ones serve, uncopied
            out.update({f"final_{k}": out[k] for k in self._obs_keys})
            out["final_state"] = out["state"]
            return out
        final_obs = {k: out[k].copy() for k in self._obs_keys}
        final_state = out["state"].copy()
        for b, (o, s) in finals.items():
            final_state[b] = s
            for k, v in o.items():
                final_obs[k][b] = v
        out.update({f"final_{k}": v for k, v in final_obs.items()})
        out["final_state"] = final_state
        return out

    def _present(self, env: ParallelEnv, obs: Sequence[Any]) -> list[bool]:
        live = env.agents
        if len(live) == len(self._agents):  # everybody (the common case): no set to build
            return [o is not None for o in obs]
        live = set(live)
        return [a in live and o is not None for a, o in zip(self._agents, obs, strict=True)]

    def _clear(self, out: Arrays, b: int) -> None:
        """Env ``b``'s rows as :meth:`_empty` made them (zero obs, all-True avail), to be filled again."""
        for k in self._obs_keys:
            out[k][b] = 0
        out["avail_actions"][b] = True

    def _fill(
        self,
        out: Arrays,
        b: int,
        env: ParallelEnv,
        obs: Sequence[Any],
        infos: Sequence[dict | None],
        show: list[bool],
    ) -> None:
        """Write env ``b``'s obs, mask, avail and state into rows that :meth:`_empty` or :meth:`_clear`
        left as dead agents have them (zero obs, all-True avail); agents not shown count as dead."""
        out["agent_mask"][b] = show
        if self._plain and all(show) and not any(info and "action_mask" in info for info in infos):
            out["obs/vector"][b] = obs  # the whole env's rows in one copy
        else:
            self._fill_agents(out, b, obs, infos, show)
        if self._layout.has_state_fn:  # else the state is a view of the vectors (see _empty)
            out["state"][b] = np.asarray(env.state(), np.float32).reshape(-1)

    def _fill_agents(self, out: Arrays, b: int, obs: Sequence[Any], infos: Sequence[dict | None],
                     show: list[bool]) -> None:
        """:meth:`_fill`'s observations and action masks, agent by agent and entry by entry."""
        lay = self._layout
        for i, (a, raw, info) in enumerate(zip(self._agents, obs, infos, strict=True)):
            if not show[i]:
                continue
            mask = info.get("action_mask") if info else None
            if lay.dict_obs:
                mask = raw.get("action_mask", mask)
                raw = raw["observation"]
            elif lay.multimodal:
                mask = raw.get("action_mask", mask)
            for piece, key, offset in self._slots[i]:
                value = raw if piece.key is None else raw[piece.key]
                if piece.modality == "vector":
                    out[key][b, i, offset: offset + piece.shape[0]] = np.asarray(value, np.float32).reshape(-1)
                elif piece.modality == "image":
                    out[key][b, i] = _image(a, piece, value)
                else:
                    tokens = _tokens(a, piece, value)
                    out[key][b, i, : tokens.size] = tokens
            if mask is not None and self.spec.action_kind == "discrete":  # a mask means nothing to Box actions
                mask = np.asarray(mask, bool).reshape(-1)
                avail = out["avail_actions"][b, i]
                avail[:] = False
                avail[: mask.size] = mask
            elif self._padded_avail[i]:  # an agent with fewer actions than the largest action space
                out["avail_actions"][b, i] = lay.default_avail[i]


def _slots(pieces: tuple[_Piece, ...]) -> list[tuple[_Piece, str, int]]:
    """Each entry of one agent's observation with its batched array and its offset in a vector row."""
    slots, offset = [], 0
    for piece in pieces:
        slots.append((piece, f"obs/{piece.modality}", offset))
        offset += piece.shape[0] if piece.modality == "vector" else 0
    return slots


def _image(agent: str, piece: _Piece, value: Any) -> np.ndarray:
    """An agent's image as uint8 CHW; anything else is refused (no silent float copies or casts)."""
    arr = np.asarray(value)
    want = (piece.shape[1], piece.shape[2], piece.shape[0]) if piece.hwc else piece.shape
    if arr.dtype != np.uint8 or arr.shape != want:
        raise EnvError(f"image of {agent}{f' (key {piece.key!r})' if piece.key else ''} is {arr.dtype} "
                       f"{arr.shape}, but its space says uint8 {want}; hint: return uint8 pixels of the space's shape")
    return arr.transpose(2, 0, 1) if piece.hwc else arr  # [H, W, C] -> [C, H, W]


def _tokens(agent: str, piece: _Piece, value: Any) -> np.ndarray:
    """Token ids of an agent's text (0 is padding); text over the limit is refused, never cut silently."""
    if piece.charset:
        if not isinstance(value, str):
            raise EnvError(f"text of {agent} (key {piece.key!r}) is a {type(value).__name__}, expected a str")
        index = {c: i + 1 for i, c in enumerate(piece.charset)}
        if unknown := sorted(set(value) - set(index)):
            raise EnvError(f"text of {agent} (key {piece.key!r}) has characters {unknown} outside its Text "
                           "space's charset; hint: add them to the charset")
        tokens = np.array([index[c] for c in value], np.int64)
    else:
        tokens = np.asarray(value).reshape(-1)
        if not np.issubdtype(tokens.dtype, np.integer) or tokens.size and (
                tokens.min() < 0 or tokens.max() >= piece.vocab):
            raise EnvError(f"text of {agent} (key {piece.key!r}) must hold integer token ids in "
                           f"[0, {piece.vocab}), got {tokens.dtype} values")
    if tokens.size > piece.shape[0]:
        raise EnvError(f"text of {agent} (key {piece.key!r}) has {tokens.size} tokens, over the limit of "
                       f"{piece.shape[0]} (its space's max length); hint: shorten it or raise the limit")
    return tokens.astype(np.int64)
