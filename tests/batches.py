"""Random rollouts for the credit-method tests (imported as `batches`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch

from accord.algos.ppo import PPO
from accord.config import load_config
from accord.envs.base import EnvSpec
from accord.envs.registry import make_env
from accord.rollout import Rollout

TINY_PPO = ["architecture=decentralized", "task.params.n_agents=2", "task.num_envs=4", "ppo.rollout_len=8",
            "model.hidden=16", "model.activation=tanh", "ppo.epochs=1", "ppo.minibatches=1"]


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


def tiny_ppo(overrides: list[str]) -> PPO:
    """A small PPO learner on built-in spread (``TINY_PPO`` plus ``overrides``), seeded."""
    cfg = load_config(None, TINY_PPO + overrides)
    torch.manual_seed(0)
    return PPO(cfg, make_env(cfg.task).spec, torch.device("cpu"))


def on_policy_batch(learner: PPO) -> Rollout:
    """A random batch whose behaviour log-probabilities are the actor's own (PPO's ratio is 1)."""
    batch = random_batch(make_env(learner.cfg.task).spec, 8, 4, seed=1, dead=0.2)
    with torch.no_grad():
        params, _ = learner.actor(batch.obs, batch.avail, None, batch.starts)
        batch.logp = learner.actor.log_prob(params, batch.actions)
    return batch
