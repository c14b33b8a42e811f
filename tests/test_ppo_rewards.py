"""PPO's reward standardization and advantage normalization switches (EPyMARL's MAPPO standardizes
rewards and leaves advantages as they are; benchmarks/peers/ matches both)."""

from __future__ import annotations

import copy

import pytest
import torch
from batches import on_policy_batch, tiny_ppo

from accord.algos.ppo import PPO


def _weights(learner: PPO) -> list[torch.Tensor]:
    return [p.detach().clone() for p in [*learner.actor.parameters(), *learner.critic.parameters()]]


def _rescaled(batch, scale: float, shift: float):
    out = copy.deepcopy(batch)
    out.reward, out.agent_reward = batch.reward * scale + shift, batch.agent_reward * scale + shift
    return out


@pytest.mark.parametrize("stats", ["ema", "running"])
def test_standardized_rewards_make_the_update_blind_to_the_rewards_scale_and_offset(stats):
    after = {}
    for standardize in (True, False):
        for scale, shift in ((1.0, 0.0), (40.0, 3.0)):
            learner = tiny_ppo([f"ppo.standardize_rewards={standardize}", f"ppo.reward_stats={stats}"])
            batch = on_policy_batch(learner)
            learner.update(_rescaled(batch, scale, shift))
            after[standardize, scale] = _weights(learner)
    for a, b in zip(after[True, 1.0], after[True, 40.0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(a, b, rtol=1e-3, atol=1e-4)  # without it the scale does matter
               for a, b in zip(after[False, 1.0], after[False, 40.0], strict=True))


def test_the_runners_batch_keeps_its_rewards_and_the_statistics_travel_in_checkpoints():
    learner = tiny_ppo(["ppo.standardize_rewards=true"])
    batch = on_policy_batch(learner)
    before = batch.reward.clone(), batch.agent_reward.clone()
    learner.update(batch)
    assert torch.equal(batch.reward, before[0]) and torch.equal(batch.agent_reward, before[1])
    team, agents = learner.reward_norm
    torch.testing.assert_close(team.mean / team.debias, before[0][batch.agent_mask.any(-1)].mean())
    torch.testing.assert_close(agents.mean / agents.debias, before[1][batch.agent_mask].mean())
    fresh = tiny_ppo(["ppo.standardize_rewards=true"])
    fresh.load_state_dict(learner.state_dict())
    for a, b in zip(fresh.reward_norm.state_dict().values(), learner.reward_norm.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_advantages_are_normalized_only_when_asked():
    losses = {}
    for normalize in (True, False):
        learner = tiny_ppo([f"ppo.normalize_advantages={normalize}", "ppo.value_norm=false"])
        batch = _rescaled(on_policy_batch(learner), 1.0, 5.0)  # every advantage well above 0
        losses[normalize] = learner.update(batch)["policy_loss"]  # ratio 1: -(mean advantage)
    assert abs(losses[True]) < 1e-4  # normalized: mean 0 over alive agents
    assert losses[False] < -1.0


def test_running_reward_statistics_are_epymarls_pairwise_merge():
    """EPyMARL's RunningMeanStd: per batch the mean and unbiased variance, merged with the running
    ones by count from a prior of variance 1 and count 1e-4; the result is the whole data's moments."""
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, generator=g) * 0.05 + 0.01 for n in (500, 37, 500, 1)]
    learner = tiny_ppo(["ppo.standardize_rewards=true", "ppo.reward_stats=running"])
    stats = learner.reward_norm[0]
    mean, var, count = 0.0, 1.0, 1e-4  # EPyMARL's update_from_moments, step by step
    for x in batches:
        stats.update(x)
        n, bm = len(x), float(x.double().mean())
        bv = float(x.double().var()) if n > 1 else 0.0
        delta, total = bm - mean, count + n
        var = (var * count + bv * n + delta**2 * count * n / total) / total
        mean, count = mean + delta * n / total, total
    torch.testing.assert_close(stats.mean, torch.tensor(mean, dtype=torch.float64))
    torch.testing.assert_close(stats.var, torch.tensor(var, dtype=torch.float64))
    data = torch.cat(batches).double()
    assert abs(float(stats.mean) - float(data.mean())) < 1e-6 and abs(float(stats.var) / float(data.var()) - 1) < 0.01
    assert float(stats.var.sqrt()) < 0.1  # no floor: MAPPO's ValueNorm would hold the std at 0.1
    torch.testing.assert_close(stats.denormalize(stats.normalize(data.float())), data.float())
    fresh = tiny_ppo(["ppo.standardize_rewards=true", "ppo.reward_stats=running"])
    fresh.load_state_dict(learner.state_dict())
    assert torch.equal(fresh.reward_norm[0].var, stats.var) and torch.equal(fresh.reward_norm[0].count, stats.count)
