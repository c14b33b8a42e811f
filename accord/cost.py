"""The cost meter: what each agent costs to run, to talk and to serve, next to what it earns.

Two kinds of figures, per agent:

- **Compute** (from the policy alone, :func:`agent_costs`): parameters and FLOPs per decision
  (:mod:`accord.models.cost`, the counts export reports), memory (the bytes of the weights the agent
  uses, plus its activations and recurrent state for one decision at batch 1), and the latency of
  one decision at batch 1 on one CPU thread, p50 and p99 (:func:`accord.models.cost.latency`, the
  timer export uses too). Written once per run to ``cost.json``.
- **Traffic** (counted from the env's ``info`` while training, :class:`CostMeter`): messages sent,
  dropped, bytes and gate rate (:mod:`accord.comm`), and tool calls and their cost: a task that calls
  tools reports ``info["tool_calls"]`` and ``info["tool_cost"]`` (float ``[B, N]``: calls made and
  their cost this step, per agent). Env retries come from the fault layer (``env_retries``,
  :mod:`accord.envs.resilient`). Logged at every log point as ``cost/<agent>/<figure>``.

Budgets (``task.cost.budget``) on tool calls and tool cost per agent per episode are enforced by the
same layer: over a budget, a penalty on the reward, or a cap (the agent plays the no-op until its
episode ends). Message budgets belong to the channel (``task.comm.budget``, :mod:`accord.comm`).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from accord.envs.base import Step, VecEnv
from accord.models.cost import agent_inputs, flops_per_decision, latency, param_count

if TYPE_CHECKING:
    from accord.config import CostBudgetConfig
    from accord.policy import Policy

COST_FILE = "cost.json"
# info key -> the figure it feeds, per agent (sums over a log window).
TRAFFIC = {"comm_sent": "messages", "comm_dropped": "dropped", "comm_bytes": "bytes", "tool_calls": "tool_calls",
           "tool_cost": "tool_cost", "capped": "capped_steps"}


def agent_costs(policy: Policy, calls: int = 500) -> list[dict[str, Any]]:
    """Compute figures of every agent of ``policy`` (see the module docstring); a hierarchical policy
    has a row per agent and level (the export's graphs: the manager's rows are named ``<agent>/manager``)."""
    from accord.export import levels

    out = []
    for level, level_policy in levels(policy).items():
        for i, name in enumerate(level_policy.spec.agent_names):
            params = param_count(level_policy, i)
            activations = _activation_bytes(level_policy, i)
            state = level_policy.hidden * 4
            with torch.inference_mode():
                lat = latency(functools.partial(_decide, level_policy.agent(i), agent_inputs(level_policy)), calls)
            out.append({"agent": name if level == "agent" else f"{name}/{level}", "params": params,
                        "flops": flops_per_decision(level_policy, i), "weight_bytes": params * 4,
                        "memory_bytes": params * 4 + activations + state,
                        "latency_p50_us": lat["p50_us"], "latency_p99_us": lat["p99_us"]})
    return out


def _decide(view: Any, inputs: tuple, _call: int) -> Any:
    return view.params(*inputs)


def _activation_bytes(policy: Policy, agent: int) -> int:
    """Bytes of every layer output of one decision at batch 1 (an upper bound on what is live at once)."""
    total = 0

    def hook(_m: nn.Module, _a: tuple, out: Any) -> None:
        nonlocal total
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, Tensor):
                total += t.numel() * t.element_size()

    leaves = [m for m in policy.actor.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            policy.agent(agent).params(*agent_inputs(policy))
    finally:
        for h in handles:
            h.remove()
    return total


def write_costs(run_path: str | Path, costs: list[dict[str, Any]]) -> None:
    from accord.store.atomic import atomic_write_text

    atomic_write_text(Path(run_path) / COST_FILE, json.dumps({"agents": costs}, indent=2) + "\n")


def read_costs(run_path: str | Path) -> list[dict[str, Any]]:
    """A run's compute figures ([] for runs written before the cost meter)."""
    path = Path(run_path) / COST_FILE
    return json.loads(path.read_text())["agents"] if path.is_file() else []


_ENDS_KEPT = 256  # steps whose done flags wait to be counted together


class CostMeter:
    """A :class:`VecEnv` layer that counts each agent's traffic (``TRAFFIC`` info keys) per episode and
    enforces the budgets on tool calls and tool cost (``task.cost.budget``): a cap or a penalty."""

    def __init__(self, env: VecEnv, budget: CostBudgetConfig | None = None) -> None:
        self.env, self.spec, self.num_envs, self.device = env, env.spec, env.num_envs, env.device
        self.seen: set[str] = set()  # the info keys this env reports (zeros in a quiet window are figures too)
        limits = {} if budget is None else {"tool_calls": budget.tool_calls, "tool_cost": budget.tool_cost}
        self.limits = {k: v for k, v in limits.items() if v is not None}
        self.budget = budget
        # This episode's spending per env and agent [B, N], and who has spent a budget (cap).
        self.spent = {k: torch.zeros(self.num_envs, self.spec.n_agents, device=self.device) for k in self.limits}
        self.capped = torch.zeros(self.num_envs, self.spec.n_agents, dtype=torch.bool, device=self.device)
        self.cap = budget is not None and budget.over == "cap" and bool(self.limits)
        self._broke = any(v <= 0 for v in self.limits.values())  # a zero budget caps from an episode's start
        self._clear()

    def __getattr__(self, attr: str) -> Any:
        if attr == "env":
            raise AttributeError(attr)
        return getattr(self.env, attr)

    def _clear(self) -> None:
        n = self.spec.n_agents
        self.sums = {k: torch.zeros(n, device=self.device) for k in (*TRAFFIC, "comm_gate", "capped")}
        # Finished episodes: each step's done flags (Step.done, made once per step and read by the runner
        # too) are kept and counted in bulk; a sum per step cost two more ops (about 10 us an env step).
        self.agent_steps, self.episodes, self._ends = 0, 0, []

    def reset(self, seed: int | None = None) -> Step:
        self.capped.fill_(self.cap and self._broke)
        for spent in self.spent.values():
            spent.zero_()
        return self.env.reset(seed)

    def step(self, actions: Tensor) -> Step:
        if self.cap:  # agents that spent a budget play the no-op until their episode ends
            self.sums["capped"] += self.capped.float().sum(0)
            self.seen.add("capped")
            mask = self.capped.view(*self.capped.shape, *([1] * (actions.dim() - 2)))
            actions = actions.masked_fill(mask, 0)
        step = self.env.step(actions)
        per_agent = {}
        for key, total in self.sums.items():
            x = step.info.get(key)
            if x is not None:
                per_agent[key] = (x if x.dim() == 2 else x[:, None].expand(-1, self.spec.n_agents)).float()
                total += per_agent[key].sum(0)
                self.seen.add(key)
        if self.limits:
            step = self._budget(step, per_agent)
        self.agent_steps += self.num_envs
        self._ends.append(step.done)
        if len(self._ends) >= _ENDS_KEPT:
            self._count_ends()
        return step

    def _count_ends(self) -> None:
        if self._ends:
            self.episodes += int(torch.stack(self._ends).sum())
            self._ends = []

    def _budget(self, step: Step, per_agent: dict[str, Tensor]) -> Step:
        """Spending this episode against each limit: over = cap or penalty (``task.cost.budget``)."""
        fine = torch.zeros(self.num_envs, self.spec.n_agents, device=self.device)
        for key, limit in self.limits.items():
            before = self.spent[key]
            after = before + per_agent.get(key, torch.zeros_like(before))
            fine += (after - limit).clamp_min(0) - (before - limit).clamp_min(0)  # the amount newly over [B, N]
            self.capped |= (after >= limit) & self.cap
            self.spent[key] = after
        if not self.cap:
            fine = self.budget.penalty * fine
            step = replace(step, reward=step.reward - fine.sum(-1), agent_reward=step.agent_reward - fine)
        done = step.done[:, None]
        self.capped = self.capped.masked_fill(done, self.cap and self._broke)
        for key in self.spent:
            self.spent[key] = self.spent[key].masked_fill(done, 0)
        return step

    def close(self) -> None:
        self.env.close()

    def cost_counts(self) -> dict[str, float]:
        """Per-agent traffic since the last call: per episode, and the gate's opening rate per step."""
        out: dict[str, float] = {}
        self._count_ends()
        episodes = max(self.episodes, 1)
        for i, name in enumerate(self.spec.agent_names):
            for key, figure in TRAFFIC.items():
                if key in self.seen:
                    out[f"cost/{name}/{figure}_per_episode"] = float(self.sums[key][i]) / episodes
            if "comm_gate" in self.seen:
                out[f"cost/{name}/gate_rate"] = float(self.sums["comm_gate"][i]) / max(self.agent_steps, 1)
        self._clear()
        return out


def cost_rows(run_path: str | Path, record: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple]]:
    """A per-agent table: compute figures from ``cost.json``, traffic from a metrics ``record``."""
    traffic = sorted({k.split("/")[2] for k in record if k.startswith("cost/")})
    header = ("agent", "params", "FLOPs/decision", "memory (KiB)", "latency p50/p99 (us)", *traffic)
    rows = []
    for c in read_costs(run_path):
        figures = [record.get(f"cost/{c['agent']}/{t}") for t in traffic]
        rows.append((c["agent"], c["params"], c["flops"], round(c["memory_bytes"] / 1024, 1),
                     f"{c['latency_p50_us']:.0f} / {c['latency_p99_us']:.0f}",
                     *("-" if v is None or math.isnan(v) else round(v, 3) for v in figures)))
    return header, rows


def retries_note(record: dict[str, Any]) -> str:
    """The team's env retries from a metrics record (the fault layer's count; an env call serves all agents)."""
    if record.get("env_retries") is None:
        return ""
    return f"env retries (team, since the process started): {record['env_retries']}"


def run_point(run_path: str | Path) -> dict[str, Any] | None:
    """A run as one point of the return-cost plane: its last training return and its cost per agent
    (mean over agents): FLOPs per decision, latency p50, messages per episode. None without cost.json."""
    from accord.store import MetricsLog

    costs = read_costs(run_path)
    records = [r for r in MetricsLog.read(run_path) if r.get("return_mean") is not None]
    if not costs or not records:
        return None
    last = records[-1]
    sent = [v for k, v in last.items() if k.endswith("/messages_per_episode") and v is not None]
    return {"run": Path(run_path).name, "return": float(last["return_mean"]),
            "flops": sum(c["flops"] for c in costs) / len(costs),
            "latency_p50_us": sum(c["latency_p50_us"] for c in costs) / len(costs),
            "messages": sum(sent) / len(sent) if sent else 0.0}


def pareto_front(points: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """The points no other point beats on both axes (higher return, lower ``cost``), by rising cost."""
    ranked = sorted(points, key=lambda p: (p[cost], -p["return"]))
    front: list[dict[str, Any]] = []
    for p in ranked:
        if not front or p["return"] > front[-1]["return"]:
            front.append(p)
    return front
