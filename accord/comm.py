"""Learned communication under a budget: a message channel wrapped around any discrete task.

Each step every agent chooses, besides its env action, whether to send (IC3Net's gate, Singh et al.
2019), which of ``2**size`` symbols to send (a fixed message size of ``size`` bits, discrete as in
RIAL, Foerster et al. 2016) and, in ``targeted`` mode, to which other agent (TarMAC's targeting,
Das et al. 2019, as a hard choice). The choices are one categorical factor of the agent's action, so
every PPO-family learner, the :class:`~accord.policy.Policy`, evaluation, the suites and export
carry messages with no change of their own:

    action = env_action * C + c,  C = 1 + V * R,  c = 0: silent,  c = 1 + target * V + symbol

with ``V = 2**size`` symbols and ``R`` receivers to choose from (1 in broadcast mode, N - 1 targeted).

A message sent at step t is in its receivers' observation at step t + 1 (never the same step), so
decentralized execution stays honest: an agent acts on its own observation and what reached it.
The observation's ``vector`` gains ``(N - 1) * V`` features: for each other agent (in index order,
skipping the receiver) the one-hot of the symbol it sent, zeros when nothing arrived.

Budget (``task.comm.budget``, per agent per episode, counted in messages or in bytes: a message costs
``ceil(size / 8)`` bytes per receiver): a message over it is dropped, or delivered with
``task.comm.penalty`` taken from the team reward and the sender's own reward. Each step reports per
agent in ``info``: ``comm_gate`` (the gate opened), ``comm_sent`` (messages delivered), ``comm_dropped``
and ``comm_bytes`` (bytes delivered); :mod:`accord.cost` turns them into per-agent figures.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step, VecEnv
from accord.envs.tasks._checks import check_discrete_actions
from accord.errors import ConfigError

if TYPE_CHECKING:
    from accord.config import CommConfig, TaskConfig


def supports_messages(target: Any) -> bool:
    """A task class declares message support with ``supports_messages = True`` (discrete actions and a
    vector observation; the channel checks both again when it is built)."""
    return bool(getattr(target, "supports_messages", False))


def comm_problems(task: TaskConfig) -> list[str]:
    """Config-time check: communication only on a task that supports messages."""
    from accord.envs.registry import TASKS

    try:
        target = TASKS.resolve(task.name).load()
    except ConfigError:
        return []  # task.name is reported on its own
    if supports_messages(target):
        return []
    able = [n for n, e in TASKS.items() if not e.per_env and supports_messages(_load_quiet(e))]
    return [f"task.comm.enabled: task '{task.name}' has no message support; tasks with it: {', '.join(able)}"]


def _load_quiet(entry: Any) -> Any:
    try:
        return entry.load()
    except ConfigError:  # an optional dependency (vmas) that is not installed
        return None


class CommChannel:
    """A :class:`VecEnv` whose agents also send messages; see the module docstring for the layout."""

    def __init__(self, env: VecEnv, cfg: CommConfig) -> None:
        spec = env.spec
        if spec.action_kind != "discrete" or "vector" not in spec.obs_shapes:
            raise ConfigError("task.comm.enabled: messages need discrete actions and a vector observation; "
                              f"this task has {spec.action_kind} actions and modalities {sorted(spec.obs_shapes)}")
        if spec.n_agents < 2:
            raise ConfigError("task.comm.enabled: messages need at least 2 agents")
        self.env, self.cfg = env, cfg
        self.num_envs, self.device = env.num_envs, env.device
        n = spec.n_agents
        self.symbols = 2 ** cfg.size  # V
        self.receivers = n - 1 if cfg.mode == "targeted" else 1  # R: receivers a sender chooses among
        self.choices = 1 + self.symbols * self.receivers  # C
        self.message_features = (n - 1) * self.symbols  # the last features of obs["vector"]
        self.bytes_per_message = math.ceil(cfg.size / 8)  # per receiver
        d = spec.obs_shapes["vector"][0]
        self.spec: EnvSpec = replace(spec, obs_shapes={**spec.obs_shapes, "vector": (d + self.message_features,)},
                                     n_actions=spec.n_actions * self.choices)
        not_self = ~torch.eye(n, dtype=torch.bool, device=self.device)
        # others[i] = the other agents of agent i in index order: receiver i's inbox slots, sender i's targets.
        self._others = torch.arange(n, device=self.device).expand(n, -1)[not_self].view(n, n - 1)  # [N, N-1]
        self._not_self = not_self
        self.inbox = torch.zeros(self.num_envs, n, n - 1, self.symbols, device=self.device)  # [B, N, N-1, V]
        self.used = torch.zeros(self.num_envs, n, device=self.device)  # budget used this episode [B, N]

    def __getattr__(self, attr: str) -> Any:
        if attr == "env":
            raise AttributeError(attr)
        return getattr(self.env, attr)

    def reset(self, seed: int | None = None) -> Step:
        self.inbox.zero_()
        self.used.zero_()
        return self._with_messages(self.env.reset(seed))

    def step(self, actions: Tensor) -> Step:
        b, n = self.num_envs, self.spec.n_agents
        actions = check_discrete_actions(actions, b, n, self.spec.n_actions, self.device)
        parts = split_action(actions, self.cfg, n)  # [B, N] each
        gate, symbol, target = parts["gate"], parts["symbol"], parts["receiver"]
        # receive[b, s, r]: sender s's message goes to agent r (all others, or the chosen one).
        if self.cfg.mode == "targeted":
            chosen = self._others[torch.arange(n, device=self.device), target]  # [B, N] receiver index
            receive = torch.nn.functional.one_hot(chosen, n).bool()  # [B, N(sender), N(receiver)]
        else:
            receive = self._not_self.expand(b, n, n)
        bytes_each = receive.sum(-1).float() * self.bytes_per_message  # [B, N] bytes if sent
        cost = torch.ones_like(bytes_each) if self.cfg.unit == "messages" else bytes_each
        over = gate & (self.used + cost > self.cfg.budget) if self.cfg.budget is not None else torch.zeros_like(gate)
        sent = gate & ~over if self.cfg.over_budget == "drop" else gate
        self.used += cost * sent

        step = self.env.step(parts["env_action"])
        # The inbox for t + 1: receiver r's slot k holds sender others[r, k]'s symbol if it reached r.
        delivered = (receive & sent[..., None]).transpose(1, 2)  # [B, N(receiver), N(sender)]
        from_slot = delivered.gather(2, self._others.expand(b, n, n - 1))  # [B, N, N-1]
        one_hot = torch.nn.functional.one_hot(symbol, self.symbols).float()  # [B, N, V]
        self.inbox = one_hot[:, self._others] * from_slot[..., None]  # [B, N, N-1, V]
        if self.cfg.over_budget == "penalty" and self.cfg.budget is not None:
            fine = self.cfg.penalty * over.float()  # [B, N]
            step = replace(step, reward=step.reward - fine.sum(-1), agent_reward=step.agent_reward - fine)
        info = {**step.info, "comm_gate": gate.float(), "comm_sent": sent.float(),
                "comm_dropped": (gate & ~sent).float(), "comm_bytes": bytes_each * sent}
        step = replace(step, info=info)
        if step.final_state is not None:  # the last observation of a finished episode, with what reached it
            step.final_obs = self._vector_with(step.final_obs, self.inbox)
        done = step.done[:, None]
        self.inbox = self.inbox * ~done[..., None, None]  # a new episode starts with an empty inbox
        self.used = self.used * ~done
        return self._with_messages(step)

    def close(self) -> None:
        self.env.close()

    def _with_messages(self, step: Step) -> Step:
        avail = step.avail_actions.repeat_interleave(self.choices, dim=-1)  # [B, N, A * C]
        return replace(step, obs=self._vector_with(step.obs, self.inbox), avail_actions=avail)

    def _vector_with(self, obs: dict[str, Tensor], inbox: Tensor) -> dict[str, Tensor]:
        return {**obs, "vector": torch.cat([obs["vector"], inbox.flatten(2)], dim=-1)}  # [B, N, D + (N-1) V]


def split_action(action: Tensor, comm: CommConfig, n_agents: int) -> dict[str, Tensor]:
    """Decode actions of a policy trained with ``comm`` into env action, gate, symbol and receiver
    (the index among the other agents; 0 in broadcast mode): what a deployment does with them."""
    symbols = 2 ** comm.size
    receivers = n_agents - 1 if comm.mode == "targeted" else 1
    c = action % (1 + symbols * receivers)
    return {"env_action": action // (1 + symbols * receivers), "gate": c > 0,
            "symbol": (c - 1).clamp_min(0) % symbols, "receiver": (c - 1).clamp_min(0) // symbols}
