"""Who does the work: per-agent contribution measured by evaluation, from a run's checkpoint.

The value of a coalition C is the team return when the agents in C play the trained policy and
every other agent is replaced by a stand-in (the no-op action, or uniform random actions):

    v(C) = E[team return | agents in C act, the rest stand in]

Every coalition plays the first episode of each of E envs reset with the same seed, and the
policy draws the same random numbers (common random numbers), so differences between coalitions
come from the agents, not from luck. From v:

- ablation: ``Delta_i = v(N) - v(N \\ {i})``, the measured difference reward (Wolpert & Tumer 2001);
- Shapley values (Shapley 1953): ``phi_i = sum_{C in N \\ {i}} |C|! (n - |C| - 1)! / n! [v(C + i) - v(C)]``,
  exact over all 2^n coalitions for n <= 6; above, the mean marginal contribution along M random
  orders (Castro et al. 2009) with a Student-t interval over the orders. Exact values satisfy
  efficiency: ``sum_i phi_i = v(N) - v({})``.

Intervals over episodes are percentile-bootstrap intervals of the mean (:mod:`accord.eval.stats`).
The correlation of an agent's per-episode ablation with the team's per-episode success says
whether its work is what decides success.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from accord.config import build_config
from accord.envs.base import Step, VecEnv
from accord.envs.registry import make_env
from accord.errors import CheckpointError, ConfigError
from accord.eval.flags import mark_lazy
from accord.eval.stats import bootstrap_ci, mean_ci_t
from accord.evaluate import first_episodes, random_actions
from accord.policy import Policy
from accord.progress import phase
from accord.store import RunDir, load_checkpoint, resolve_checkpoint

EXACT_MAX_AGENTS = 6
Value = Callable[[int], Tensor]  # coalition bitmask -> per-episode team returns [E]


@dataclass
class AgentContribution:
    name: str
    ablation: float  # v(N) - v(N \ {i}), mean over episodes
    ablation_ci: tuple[float, float]
    shapley: float
    shapley_ci: tuple[float, float]
    success_corr: float | None  # Pearson correlation of the per-episode ablation with team success
    lazy: bool = False


@dataclass
class ContributionReport:
    agents: list[AgentContribution]
    team_return: float  # v(N)
    team_return_ci: tuple[float, float]
    empty_return: float  # v({}): every agent stands in
    success_rate: float | None  # of the full team, if the env reports info["success"]
    shapley_method: str  # "exact" or "sampled (M permutations)"
    episodes: int
    replacement: str
    deterministic: bool
    source: dict[str, Any] = field(default_factory=dict)  # run, checkpoint and env steps it came from
    flags: list[dict[str, Any]] = field(default_factory=list)  # lazy-agent flags (accord.eval.flags)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coalition_returns(env: VecEnv, policy: Policy, present: Tensor, seed: int, replacement: str = "noop",
                      noop_action: int = 0, deterministic: bool = False) -> tuple[Tensor, Tensor | None]:
    """Team return ``[E]`` (and success ``[E]``, if reported) of the first episode of each env.

    Agents with ``present[i]`` False play the stand-in. Env and policy random numbers depend only on
    ``seed``, so every coalition meets the same episodes.
    """
    spec, dev = env.spec, env.device
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    keep = present.to(dev).view(1, -1)  # [1, N]
    if spec.action_kind == "continuous":
        keep = keep.unsqueeze(-1)  # [1, N, 1]

    def stand_in(act: Tensor, step: Step) -> Tensor:
        return torch.where(keep, act, _stand_in(env, step.avail_actions, gen, replacement, noop_action))

    return first_episodes(env, policy, seed, deterministic, replace=stand_in)


def _stand_in(env: VecEnv, avail: Tensor, gen: torch.Generator, replacement: str, noop_action: int) -> Tensor:
    spec = env.spec
    if replacement == "random":
        return random_actions(env, avail, gen)
    if spec.action_kind == "discrete":
        return torch.full(avail.shape[:2], noop_action, dtype=torch.long, device=avail.device)
    zero = min(max(0.0, spec.action_low), spec.action_high)
    return torch.full((env.num_envs, spec.n_agents, spec.n_actions), zero, device=avail.device)


def exact_shapley(value: Value, n: int) -> Tensor:
    """Shapley values ``[N, ...]`` of the game ``value`` (bitmask -> tensor) over all 2^n coalitions."""
    weight = [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
    phi = []
    for i in range(n):
        bit = 1 << i
        terms = [weight[c.bit_count()] * (value(c | bit) - value(c)) for c in range(1 << n) if not c & bit]
        phi.append(torch.stack(terms).sum(0))
    return torch.stack(phi)


def sampled_shapley(value: Value, n: int, permutations: int, gen: torch.Generator) -> Tensor:
    """Marginal contributions ``[M, N, ...]`` along M random orders; their mean estimates the Shapley values."""
    rows = []
    for _ in range(permutations):
        coalition, row = 0, [torch.empty(0)] * n
        for i in torch.randperm(n, generator=gen).tolist():
            row[i] = value(coalition | 1 << i) - value(coalition)
            coalition |= 1 << i
        rows.append(torch.stack(row))
    return torch.stack(rows)


def contribution_report(env: VecEnv, policy: Policy, *, seed: int = 12345, replacement: str = "noop",
                        noop_action: int = 0, deterministic: bool = False, permutations: int = 64,
                        advance: Callable[[int], None] | None = None) -> ContributionReport:
    """Ablation and Shapley values of every agent over one episode per env of ``env`` (E = num_envs).

    ``advance(1)`` is called after each coalition played (for progress display).
    """
    spec = env.spec
    n = spec.n_agents
    if spec.action_kind == "discrete" and not 0 <= noop_action < spec.n_actions:
        raise ConfigError(f"credit.monitor.noop_action: {noop_action} is not an action of this task "
                          f"(0..{spec.n_actions - 1})")
    cache: dict[int, Tensor] = {}
    team_success: list[Tensor | None] = [None]

    def value(mask: int) -> Tensor:
        if mask not in cache:
            present = torch.tensor([bool(mask >> i & 1) for i in range(n)])
            ret, success = coalition_returns(env, policy, present, seed, replacement, noop_action, deterministic)
            cache[mask] = ret.double().cpu()
            if advance is not None:
                advance(1)
            if mask == (1 << n) - 1:
                team_success[0] = None if success is None else success.cpu()
        return cache[mask]

    full = (1 << n) - 1
    v_full = value(full).numpy()
    ablation = np.stack([v_full - value(full & ~(1 << i)).numpy() for i in range(n)])  # [N, E]
    if n <= EXACT_MAX_AGENTS:
        phi = exact_shapley(value, n).numpy()  # [N, E]
        shapley = [(float(p.mean()), bootstrap_ci(p)) for p in phi]
        method = "exact"
    else:
        marg = sampled_shapley(value, n, permutations, torch.Generator().manual_seed(seed)).mean(-1).numpy()
        m, lo, hi = mean_ci_t(marg)  # over permutations, [N] each
        shapley = [(float(m[i]), (float(lo[i]), float(hi[i]))) for i in range(n)]
        method = f"sampled ({permutations} permutations)"
    success = team_success[0]
    agents = [AgentContribution(spec.agent_names[i], float(ablation[i].mean()), bootstrap_ci(ablation[i]),
                                shapley[i][0], shapley[i][1], _correlation(ablation[i], success))
              for i in range(n)]
    return ContributionReport(
        agents=agents, team_return=float(v_full.mean()), team_return_ci=bootstrap_ci(v_full),
        empty_return=float(value(0).mean()), success_rate=None if success is None else float(success.mean()),
        shapley_method=method, episodes=env.num_envs, replacement=replacement, deterministic=deterministic)


def _correlation(x: np.ndarray, success: Tensor | None) -> float | None:
    """Pearson correlation of ``x`` [E] with success [E]; None when either does not vary."""
    if success is None:
        return None
    s = success.numpy()
    if np.ptp(x) == 0 or np.ptp(s) == 0:
        return None
    return float(np.corrcoef(x, s)[0, 1])


def report_run(run: str | Path, root: str | Path = "runs", checkpoint: str | Path | None = None,
               episodes: int | None = None, replacement: str | None = None,
               deterministic: bool | None = None, seed: int = 12345, progress: bool = False) -> ContributionReport:
    """Contribution report of a stored run's checkpoint (latest by default), rebuilt from the run store.

    Unset options come from the run's ``credit.monitor`` config; lazy agents are marked and flagged
    (:func:`accord.eval.flags.mark_lazy`). ``progress`` shows the coalitions played (accord.progress).
    """
    run_dir = RunDir.open(root, run)
    cfg = build_config(run_dir.load_config())
    mon = cfg.credit.monitor
    ckpt_path = resolve_checkpoint(run_dir.path, checkpoint)
    payload = load_checkpoint(ckpt_path)
    policy = Policy.from_checkpoint(payload, str(ckpt_path), cfg.train.device)
    algo = payload.get("algo")
    if not isinstance(algo, dict) or not isinstance(algo.get("env_steps"), int):
        raise CheckpointError(f"{ckpt_path} lacks the field 'algo.env_steps' (incomplete or not written by "
                              "accord train)")
    cfg.task.num_envs = episodes or mon.contribution_episodes or 128
    env = make_env(cfg.task, cfg.runner.kind, cfg.runner.workers, cfg.train.device)
    try:
        policy.check_fits(env.spec, str(ckpt_path))
        n = env.spec.n_agents
        with phase(f"contribution ({cfg.task.num_envs} episodes per coalition)",
                   2**n if n <= EXACT_MAX_AGENTS else None, "coalition") if progress else nullcontext() as advance:
            report = contribution_report(
                env, policy, seed=seed, replacement=replacement or mon.replacement,
                noop_action=mon.noop_action,
                deterministic=mon.deterministic if deterministic is None else deterministic,
                permutations=mon.shapley_permutations, advance=advance)
    finally:
        env.close()
    report.source = {"run": run_dir.name, "checkpoint": ckpt_path.name, "env_steps": algo["env_steps"]}
    report.flags = mark_lazy(report, mon.lazy_tolerance, mon.success_threshold)
    return report

