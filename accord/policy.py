"""``Policy``: the acting half of a learner, and all a deployment needs.

A policy holds the actor network (encoders, input normalization, agent ids, per-agent or shared
weights), the task's action spec and nothing else: no critic, optimizer, replay or env. Training
collects with it (the learner shares its modules with it, so a gradient step is visible at once),
evaluation and export load it from a checkpoint alone::

    policy = Policy.load("runs/spread__ppo__0__...")        # or a checkpoint file
    actions, h = policy.act(obs)                             # the whole team, obs {modality: [B, N, ...]}
    a0, h0 = policy.agent(0).act(obs_of_agent_0)             # decentralized: agent 0's own obs [B, ...]

Recurrent state is explicit: ``act`` takes and returns it (``None`` starts fresh episodes).
Checkpoints carry the policy as plain data (:meth:`Policy.record`): spec, model config and weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from accord.config import ModelConfig
from accord.envs.base import EnvSpec, Step
from accord.errors import CheckpointError, EnvError
from accord.models.actor_critic import Actor
from accord.models.numpy_actor import NumpyActor
from accord.models.q_agent import QAgent

RECORD_FORMAT = 1
Obs = Mapping[str, Any] | Tensor | np.ndarray


def spec_to_dict(spec: EnvSpec) -> dict[str, Any]:
    """An EnvSpec as plain data (lists, not tuples: it is stored in checkpoints and manifests)."""
    d = asdict(spec)
    d["obs_shapes"] = {m: list(s) for m, s in spec.obs_shapes.items()}
    d["agent_names"] = list(spec.agent_names)
    return d


def spec_from_dict(d: Mapping[str, Any]) -> EnvSpec:
    d = dict(d)
    d["obs_shapes"] = {m: tuple(int(x) for x in s) for m, s in d["obs_shapes"].items()}
    d["agent_names"] = tuple(d.get("agent_names", ()))
    return EnvSpec(**d)


def check_spec_fits(stored: Mapping[str, Any], here: Mapping[str, Any], where: str) -> None:
    """One line naming the first way a checkpoint's spec (plain data) differs from this env's."""
    if stored.get("n_agents") != here["n_agents"]:
        raise CheckpointError(f"{where}: checkpoint has {stored.get('n_agents')} agents, this config "
                              f"{here['n_agents']}")
    for key in ("obs_shapes", "state_dim", "action_kind", "n_actions"):
        if stored.get(key) != here.get(key):
            raise CheckpointError(f"{where}: the env's {key} is {stored.get(key)!r} in the checkpoint vs "
                                  f"{here.get(key)!r} in this config's task")


class Policy(nn.Module):
    """Team policy ``pi(u | o)`` over ``[B, N, ...]`` observations; greedy or sampled actions."""

    def __init__(self, spec: EnvSpec, actor: Actor, model: ModelConfig) -> None:
        super().__init__()
        self.spec, self.actor, self.model = spec, actor, model
        self.hidden = model.hidden if model.recurrent else 0
        self._numpy = NumpyActor.of(actor)  # small CPU batches act here (accord/models/numpy_actor.py)

    @classmethod
    def build(cls, spec: EnvSpec, model: ModelConfig, value_based: bool = False, log_std_init: float = -0.5,
              device: str | torch.device = "cpu") -> Policy:
        """A freshly initialized policy: Q-value agents (``value_based``) or a stochastic actor."""
        actor = QAgent(spec, model) if value_based else Actor(spec, model, log_std_init)
        return cls(spec, actor.to(device), model)

    @property
    def value_based(self) -> bool:
        """Greedy over Q-values (epsilon-greedy when sampled) instead of a distribution over actions."""
        return isinstance(self.actor, QAgent)

    @property
    def epsilon(self) -> float:
        return self.actor.epsilon if isinstance(self.actor, QAgent) else 0.0

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        if isinstance(self.actor, QAgent):
            self.actor.epsilon = value

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters(), torch.empty(0)).device  # a scripted actor may have none

    def initial_state(self, batch: int, agents: int | None = None) -> Tensor | None:
        """Zero recurrent state ``[batch, N, H]`` (None for feed-forward policies)."""
        if not self.hidden:
            return None
        return torch.zeros(batch, agents or self.spec.n_agents, self.hidden, device=self.device)

    # -- acting --------------------------------------------------------------------------------
    def step(self, obs: Mapping[str, Tensor], avail: Tensor, state: Tensor | None, starts: Tensor,
             deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """One step on validated tensors ``[B, N, ...]``: raw actions (not clamped), log pi, next state.

        What runners call; ``starts`` [B] resets the recurrent state where an episode begins. Small CPU
        batches without gradients run as numpy ops (``accord/models/numpy_actor.py``): the same actions
        from the same seed, log-probabilities and state to float rounding.
        """
        fast = self._numpy
        if fast is not None and fast.fits(x := obs["vector"]):
            return fast.step(x, avail, state, starts, deterministic)
        params, state = self.actor({m: x.unsqueeze(0) for m, x in obs.items()}, avail.unsqueeze(0), state,
                                   starts.unsqueeze(0))
        act, logp = self.actor.sample(params[0], deterministic)
        return act, logp, state

    def step_on(self, step: Step, state: Tensor | None, starts: Tensor, deterministic: bool = False
                ) -> tuple[Tensor, Tensor, Tensor | None]:
        """:meth:`step` on an env's ``Step``; a policy that reads the env's ``info`` (hierarchical) gets it."""
        return self.step(step.obs, step.avail_actions, state, starts, deterministic)

    @torch.no_grad()
    def act(self, obs: Obs, avail: Tensor | np.ndarray | None = None, state: Tensor | None = None,
            deterministic: bool = True) -> tuple[Tensor, Tensor | None]:
        """Actions of the whole team for observations ``{modality: [B, N, ...]}`` (or the vector alone).

        ``avail`` [B, N, A] masks discrete actions (default: all available); ``state`` is what the last
        call returned, None at the start of episodes. Continuous actions are clamped to the action box.
        """
        obs_t = self._obs(obs, agent=False)
        b = next(iter(obs_t.values())).shape[0]
        avail_t = self._avail(avail, (b, self.spec.n_agents))
        starts = torch.zeros(b, dtype=torch.bool, device=self.device) if state is not None else \
            torch.ones(b, dtype=torch.bool, device=self.device)
        if state is None:
            state = self.initial_state(b)
        act, _, state = self.step(obs_t, avail_t, state, starts, deterministic)
        return self.clamp_actions(act), state

    def agent(self, i: int | str) -> AgentPolicy:
        """Agent ``i``'s policy alone (by index or name): it needs only its own observation."""
        if isinstance(i, str):
            if i not in self.spec.agent_names:
                raise KeyError(f"no agent '{i}'; agents: {', '.join(self.spec.agent_names)}")
            i = self.spec.agent_names.index(i)
        if not 0 <= i < self.spec.n_agents:
            raise IndexError(f"agent index {i} out of range (0..{self.spec.n_agents - 1})")
        return AgentPolicy(self, i)

    # -- validation ----------------------------------------------------------------------------
    def _obs(self, obs: Obs, agent: bool) -> dict[str, Tensor]:
        if not isinstance(obs, Mapping):
            obs = {"vector": obs}
        expected = self.spec.obs_shapes
        if set(obs) != set(expected):
            raise EnvError(f"observation modalities {sorted(obs)} do not match the policy's {sorted(expected)}")
        out = {}
        for m, x in obs.items():
            x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, device=self.device)
            lead = 1 if agent else 2
            if tuple(x.shape[lead:]) != tuple(expected[m]):
                want = ("B", *expected[m]) if agent else ("B", "N", *expected[m])
                raise EnvError(f"observation '{m}' has shape {tuple(x.shape)}, the policy expects "
                               f"[{', '.join(map(str, want))}]")
            if not agent and x.shape[1] != self.spec.n_agents:
                raise EnvError(f"observation '{m}' holds {x.shape[1]} agents, the policy {self.spec.n_agents}")
            out[m] = x.float() if m == "vector" else x.to(torch.uint8 if m == "image" else torch.long)
        return out

    def _avail(self, avail: Tensor | np.ndarray | None, lead: tuple[int, ...]) -> Tensor:
        width = self.spec.avail_dim
        if avail is None:
            return torch.ones(*lead, width, dtype=torch.bool, device=self.device)
        a = torch.as_tensor(np.asarray(avail) if not isinstance(avail, Tensor) else avail, device=self.device)
        if tuple(a.shape) != (*lead, width):
            raise EnvError(f"available-action mask has shape {tuple(a.shape)}, expected {(*lead, width)}")
        return a.bool()

    def clamp_actions(self, act: Tensor) -> Tensor:
        """Continuous actions into the action box (sampling can leave it); discrete ones unchanged."""
        if self.spec.action_kind == "continuous":
            return act.clamp(self.spec.action_low, self.spec.action_high)
        return act

    # -- storage -------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """Everything needed to rebuild this policy, as checkpoint-safe plain data and tensors."""
        return {"format": RECORD_FORMAT, "spec": spec_to_dict(self.spec), "model": self.model.model_dump(),
                "value_based": self.value_based, "epsilon": float(self.epsilon),
                "weights": {k: v.detach().clone() for k, v in self.actor.state_dict().items()}}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], device: str | torch.device = "cpu",
                    where: str = "checkpoint") -> Policy:
        if isinstance(record, Mapping) and record.get("hierarchical") is not None and cls is Policy:
            from accord.hierarchy import HierarchicalPolicy  # manager + workers (architecture: hierarchical)

            return HierarchicalPolicy.from_record(record, device, where)
        if int(record.get("format", -1)) != RECORD_FORMAT:
            raise CheckpointError(f"{where}: policy record format {record.get('format')} is not {RECORD_FORMAT}")
        try:
            spec = spec_from_dict(record["spec"])
            policy = cls.build(spec, ModelConfig.model_validate(record["model"]), bool(record["value_based"]),
                               device=device)
            policy.actor.load_state_dict(record["weights"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{where}: the policy record is incomplete or does not fit its model ({first})"
                                  ) from None
        policy.epsilon = float(record.get("epsilon", 0.0))
        return policy.eval()

    def check_fits(self, spec: EnvSpec, where: str = "checkpoint") -> None:
        """Refuse (one line) an env this policy was not trained for: agents, observations, actions."""
        check_spec_fits(spec_to_dict(self.spec), spec_to_dict(spec), where)

    @classmethod
    def load(cls, source: str | Path, checkpoint: str | Path | None = None, root: str | Path = "runs",
             device: str | torch.device = "cpu") -> Policy:
        """From a checkpoint file, a run folder, or a run name under ``root`` (latest checkpoint by default)."""
        from accord.store import load_checkpoint, resolve_checkpoint

        path = resolve_checkpoint(source, checkpoint, root)
        return cls.from_checkpoint(load_checkpoint(path), str(path), device)

    @classmethod
    def from_checkpoint(cls, payload: Mapping[str, Any], where: str, device: str | torch.device = "cpu") -> Policy:
        """The policy of an already loaded checkpoint payload (``where`` names it in errors)."""
        if not isinstance(payload.get("policy"), Mapping):
            raise CheckpointError(f"{where} holds no policy record (written by an older accord); "
                                  "resume the run once with this version to store one")
        return cls.from_record(payload["policy"], device, where=where)


class AgentPolicy:
    """Agent ``i``'s view of a team policy: own observation ``[B, ...]`` in, own action ``[B]`` out."""

    def __init__(self, team: Policy, index: int) -> None:
        self.team, self.index = team, index
        self.name = team.spec.agent_names[index]

    def params(self, obs: Mapping[str, Tensor], avail: Tensor, state: Tensor | None, starts: Tensor
               ) -> tuple[Tensor, Tensor | None]:
        """Distribution parameters ``[B, A]`` (logits or Q-values with unavailable actions at -1e9, or
        the Gaussian mean) and the next state ``[B, H]``, from validated tensors; what export traces."""
        obs = {m: x[None, :, None] for m, x in obs.items()}  # [1, B, 1, ...]
        h = None if state is None else state[:, None]
        params, h = self.team.actor(obs, avail[None, :, None], h, starts[None], agent=self.index)
        return params[0, :, 0], (None if h is None else h[:, 0])

    @torch.no_grad()
    def act(self, obs: Obs, avail: Tensor | np.ndarray | None = None, state: Tensor | None = None,
            deterministic: bool = True) -> tuple[Tensor, Tensor | None]:
        """Actions ``[B]`` (or ``[B, D]``) from this agent's observation ``{modality: [B, ...]}``."""
        team = self.team
        obs_t = team._obs(obs, agent=True)
        b = next(iter(obs_t.values())).shape[0]
        starts = torch.full((b,), state is None, dtype=torch.bool, device=team.device)
        if state is None and team.hidden:
            state = torch.zeros(b, team.hidden, device=team.device)
        params, state = self.params(obs_t, team._avail(avail, (b,)), state, starts)
        act, _ = team.actor.sample(params, deterministic)
        return team.clamp_actions(act), state
