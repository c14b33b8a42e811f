"""PPO's reward standardization and advantage normalization switches (EPyMARL's MAPPO standardizes
rewards and leaves advantages as they are; benchmarks/peers/ matches both)."""

from __future__ import annotations

import copy

import torch
from batches import random_batch

from accord.algos.ppo import PPO
from accord.config import load_config
from accord.envs.registry import make_env

TINY = ["architecture=decentralized", "task.params.n_agents=2", "task.num_envs=4", "ppo.rollout_len=8",
        "model.hidden=16", "model.activation=tanh", "ppo.epochs=1", "ppo.minibatches=1"]


def _learner(overrides: list[str]) -> PPO:
    cfg = load_config(None, TINY + overrides)
    torch.manual_seed(0)
    return PPO(cfg, make_env(cfg.task).spec, torch.device("cpu"))


def _on_policy_batch(learner: PPO):
    """A random batch whose behaviour log-probabilities are the actor's own (PPO's ratio is 1)."""
    batch = random_batch(make_env(learner.cfg.task).spec, 8, 4, seed=1, dead=0.2)
    with torch.no_grad():
        params, _ = learner.actor(batch.obs, batch.avail, None, batch.starts)
        batch.logp = learner.actor.log_prob(params, batch.actions)
    return batch


def _weights(learner: PPO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in [*learner.actor.parameters(), *learner.critic.parameters()]]


def _rescaled(batch, scale: float, shift: float):
    out = copy.deepcopy(batch)
    out.reward, out.agent_reward = batch.reward * scale + shift, batch.agent_reward * scale + shift
    return out


def test_standardized_rewards_make_the_update_blind_to_the_rewards_scale_and_offset():
    after = {}
    for standardize in (True, False):
        for scale, shift in ((1.0, 0.0), (40.0, 3.0)):
            learner = _learner([f"ppo.standardize_rewards={standardize}"])
            batch = _on_policy_batch(learner)
            learner.update(_rescaled(batch, scale, shift))
            after[standardize, scale] = _weights(learner)
    for a, b in zip(after[True, 1.0], after[True, 40.0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(a, b, rtol=1e-3, atol=1e-4)  # without it the scale does matter
               for a, b in zip(after[False, 1.0], after[False, 40.0], strict=True))


def test_the_runners_batch_keeps_its_rewards_and_the_statistics_travel_in_checkpoints():
    learner = _learner(["ppo.standardize_rewards=true"])
    batch = _on_policy_batch(learner)
    before = batch.reward.clone(), batch.agent_reward.clone()
    learner.update(batch)
    assert torch.equal(batch.reward, before[0]) and torch.equal(batch.agent_reward, before[1])
    team, agents = learner.reward_norm
    torch.testing.assert_close(team.mean / team.debias, before[0][batch.agent_mask.any(-1)].mean())
    torch.testing.assert_close(agents.mean / agents.debias, before[1][batch.agent_mask].mean())
    fresh = _learner(["ppo.standardize_rewards=true"])
    fresh.load_state_dict(learner.state_dict())
    for a, b in zip(fresh.reward_norm.state_dict().values(), learner.reward_norm.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_advantages_are_normalized_only_when_asked():
    losses = {}
    for normalize in (True, False):
        learner = _learner([f"ppo.normalize_advantages={normalize}", "ppo.value_norm=false"])
        batch = _rescaled(_on_policy_batch(learner), 1.0, 5.0)  # every advantage well above 0
        losses[normalize] = learner.update(batch)["policy_loss"]  # ratio 1: -(mean advantage)
    assert abs(losses[True]) < 1e-4  # normalized: mean 0 over alive agents
    assert losses[False] < -1.0
