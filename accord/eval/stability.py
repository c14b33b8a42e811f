"""Stability beyond learning curves: do the seeds of a study learn the same behaviour?

A fixed **probe set** of observations is recorded from the task (uniform random play on the eval
seed, so it depends on neither seed's policy). Every seed's policy (``best.pt``, else the latest
checkpoint) is asked for its action distribution on the probes, per agent:

- discrete actions: **agreement** of greedy actions (share of seeds choosing the modal action,
  averaged over probes; 1 = all seeds act alike) and the generalized **Jensen-Shannon divergence**
  of the seeds' action distributions (entropy of the mixture minus mean entropy, in nats; 0 = same
  distributions); value-based policies have no distribution, so only agreement;
- continuous actions: the **spread of the means** (std across seeds, averaged over probes and
  action dimensions).

A seed is flagged **hypersensitive to initialization** when its divergence from the other seeds
(its mean JS to their mixture, or its distance to their mean action) is an outlier: above the
median of all seeds by more than ``threshold`` scaled median absolute deviations (and above an
absolute floor). Also reported: the CV of the absolute-metric return across seeds, and **policy
churn** per seed (share of probes whose greedy action changed between consecutive checkpoints).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from accord.config import build_config
from accord.envs.registry import make_env
from accord.evaluate import random_actions
from accord.policy import Policy
from accord.store import RunDir, list_checkpoints, load_checkpoint

HYPERSENSITIVE = "hypersensitive_seed"


@torch.no_grad()
def record_probes(cfg: Any, probes: int = 256, seed: int = 4242) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Observations ``{m: [P, N, ...]}`` and available actions ``[P, N, A]`` from random play."""
    task = cfg.task.model_copy()
    task.num_envs = min(32, probes)
    env = make_env(task, cfg.runner.kind, cfg.runner.workers, cfg.train.device)
    gen = torch.Generator(device=env.device).manual_seed(seed)
    obs: list[dict[str, torch.Tensor]] = []
    avail: list[torch.Tensor] = []
    try:
        step = env.reset(seed=seed)
        while sum(a.shape[0] for a in avail) < probes:
            for _ in range(3):  # spread the probes over the episode
                step = env.step(random_actions(env, step.avail_actions, gen))
            obs.append({m: x.clone() for m, x in step.obs.items()})
            avail.append(step.avail_actions.clone())
    finally:
        env.close()
    return ({m: torch.cat([o[m] for o in obs])[:probes] for m in obs[0]}, torch.cat(avail)[:probes])


@torch.no_grad()
def action_params(policy: Policy, obs: dict[str, torch.Tensor], avail: torch.Tensor) -> torch.Tensor:
    """Distribution parameters ``[P, N, A]`` on the probes (fresh recurrent state)."""
    p = avail.shape[0]
    starts = torch.ones(p, dtype=torch.bool)
    params, _ = policy.actor({m: x.unsqueeze(0) for m, x in obs.items()}, avail.unsqueeze(0),
                             policy.initial_state(p), starts.unsqueeze(0))
    return params[0].float()


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(-1)


def _outliers(score: np.ndarray, threshold: float, floor: float) -> list[int]:
    if score.size < 3:
        return []
    med = np.median(score)
    mad = 1.4826 * np.median(np.abs(score - med)) + 1e-12
    return [int(i) for i in np.flatnonzero((score - med) / mad > threshold) if score[i] - med > floor]


@dataclass
class StabilityReport:
    runs: list[str]
    seeds: list[Any]
    action_kind: str
    agents: list[dict[str, Any]]  # per agent: agreement, js (discrete) or mean_spread (continuous)
    per_seed_divergence: list[float]
    hypersensitive: list[str]
    return_cv: float | None
    churn: dict[str, list[float]] = field(default_factory=dict)
    flags: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _policy_of(run: RunDir, device: str) -> Policy:
    best = run.checkpoints_dir / "best.pt"
    path = best if best.is_file() else list_checkpoints(run.checkpoints_dir)[-1]
    return Policy.from_checkpoint(load_checkpoint(path), str(path), device)


def stability(runs: list[RunDir], probes: int = 256, threshold: float = 3.5, floor: float = 0.05,
              return_cv: float | None = None) -> StabilityReport:
    """Across-seed action variance of ``runs`` (one study) on one probe set."""
    cfg = build_config(runs[0].load_config())
    obs, avail = record_probes(cfg, probes)
    policies = [_policy_of(r, cfg.train.device) for r in runs]
    params = torch.stack([action_params(p, obs, avail) for p in policies]).numpy()  # [S, P, N, A]
    spec = policies[0].spec
    names = list(spec.agent_names)
    agents, per_seed = [], np.zeros(len(runs))
    if spec.action_kind == "discrete":
        greedy = params.argmax(-1)  # [S, P, N]
        value_based = policies[0].value_based
        probs = None
        if not value_based:
            z = params - params.max(-1, keepdims=True)
            probs = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        for i, name in enumerate(names):
            g = greedy[:, :, i]  # [S, P]
            counts = np.stack([(g == a).sum(0) for a in range(params.shape[-1])])  # [A, P]
            row = {"agent": name, "agreement": float((counts.max(0) / g.shape[0]).mean())}
            if probs is not None:
                pi = probs[:, :, i]  # [S, P, A]
                row["js"] = float((_entropy(pi.mean(0)) - _entropy(pi).mean(0)).mean())
            agents.append(row)
        for s in range(len(runs)):
            others = np.delete(np.arange(len(runs)), s)
            if probs is not None:
                mix = 0.5 * (probs[s] + probs[others].mean(0))
                js = _entropy(mix) - 0.5 * (_entropy(probs[s]) + _entropy(probs[others].mean(0)))
                per_seed[s] = float(js.mean())
            else:
                per_seed[s] = float((greedy[s][None] != greedy[others]).mean())
    else:
        for i, name in enumerate(names):
            agents.append({"agent": name, "mean_spread": float(params[:, :, i].std(0).mean())})
        for s in range(len(runs)):
            others = np.delete(np.arange(len(runs)), s)
            per_seed[s] = float(np.abs(params[s] - params[others].mean(0)).mean())
    flagged = _outliers(per_seed, threshold, floor)
    churn = {}
    for run in runs:
        ckpts = list_checkpoints(run.checkpoints_dir)
        if len(ckpts) >= 2 and spec.action_kind == "discrete":
            acts = [action_params(Policy.from_checkpoint(load_checkpoint(c), str(c)), obs, avail).argmax(-1)
                    for c in ckpts]
            churn[run.name] = [float((a != b).float().mean()) for a, b in zip(acts, acts[1:], strict=False)]
    flags = [{"flag": HYPERSENSITIVE, "run": runs[s].name, "divergence": float(per_seed[s]),
              "median": float(np.median(per_seed)),
              "detail": f"seed {runs[s].meta().get('seed')} acts unlike the other seeds on the probe set "
                        f"(divergence {per_seed[s]:.3f} vs median {np.median(per_seed):.3f})"} for s in flagged]
    return StabilityReport(runs=[r.name for r in runs], seeds=[r.meta().get("seed") for r in runs],
                           action_kind=spec.action_kind, agents=agents, per_seed_divergence=per_seed.tolist(),
                           hypersensitive=[runs[s].name for s in flagged], return_cv=return_cv, churn=churn,
                           flags=flags)
