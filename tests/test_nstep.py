"""n-step value targets with a target critic (``ppo.nstep``, ``ppo.target_tau``): EPyMARL's MAPPO."""

from __future__ import annotations

import pytest
import torch
from batches import on_policy_batch, tiny_ppo

import accord.credit.base
from accord.algos.ppo import Minibatch
from accord.config import load_config
from accord.credit.gae import gae
from accord.credit.nstep import nstep_returns
from accord.errors import ConfigError

EPYMARL = ["ppo.nstep=5", "ppo.target_tau=0.25", "ppo.value_norm=false", "ppo.normalize_advantages=false"]


def naive_nstep(r, v_next, term, done, gamma, n):
    """Step by step: add rewards until n steps, an episode end or the batch end, then bootstrap."""
    t_len, b, _ = r.shape
    out = torch.zeros_like(r)
    for t in range(t_len):
        for e in range(b):
            for k in range(n):
                j = t + k
                out[t, e] += gamma**k * r[j, e]
                if k == n - 1 or done[j, e] or j == t_len - 1:
                    if not term[j, e]:
                        out[t, e] += gamma ** (k + 1) * v_next[j, e]
                    break
    return out


def _random_steps(t_len=12, b=5, n=3):
    g = torch.Generator().manual_seed(0)
    r, v, v_next = (torch.randn(t_len, b, n, generator=g) for _ in range(3))
    term = torch.rand(t_len, b, generator=g) < 0.15
    trunc = (torch.rand(t_len, b, generator=g) < 0.15) & ~term
    return r, v, v_next, term, term | trunc


@pytest.mark.parametrize("n", [1, 3, 5, 40])
def test_nstep_returns_match_the_step_by_step_definition(n):
    r, _, v_next, term, done = _random_steps()
    torch.testing.assert_close(nstep_returns(r, v_next, term, done, 0.9, n), naive_nstep(r, v_next, term, done, 0.9, n))


def test_one_step_returns_are_td0_and_whole_batch_returns_are_gae_lambda_1():
    r, v, v_next, term, done = _random_steps()
    td0 = gae(r, v, v_next, term, done, 0.9, 0.0) + v
    torch.testing.assert_close(nstep_returns(r, v_next, term, done, 0.9, 1), td0)
    # GAE(1) telescopes to the same sum when V(s_{t+1}) is the next step's V inside an episode.
    v_next = torch.cat([torch.where(done[:-1, :, None], v_next[:-1], v[1:]), v_next[-1:]])
    gae1 = gae(r, v, v_next, term, done, 0.9, 1.0) + v
    torch.testing.assert_close(nstep_returns(r, v_next, term, done, 0.9, 12), gae1)


def test_the_target_critic_follows_by_tau_and_travels_in_checkpoints():
    learner = tiny_ppo(EPYMARL)
    before = [p.detach().clone() for p in learner.critic.parameters()]
    learner.update(on_policy_batch(learner))
    for target, old, new in zip(learner.target_critic.parameters(), before, learner.critic.parameters(), strict=True):
        assert not torch.equal(old, new)
        torch.testing.assert_close(target, 0.75 * old + 0.25 * new)
    fresh = tiny_ppo(EPYMARL)
    fresh.load_state_dict(learner.state_dict())
    for a, b in zip(fresh.target_critic.parameters(), learner.target_critic.parameters(), strict=True):
        assert torch.equal(a, b)


def test_returns_bootstrap_from_the_target_critic(monkeypatch):
    learner = tiny_ppo(EPYMARL)
    with torch.no_grad():
        for p in learner.target_critic.parameters():
            p.add_(0.5)  # a target critic well apart from the critic
    seen = {}

    def spy(rewards, next_values, *args):
        seen["next_values"] = next_values
        return nstep_returns(rewards, next_values, *args)

    monkeypatch.setattr(accord.credit.base, "nstep_returns", spy)
    batch = on_policy_batch(learner)
    with torch.no_grad():
        v_target = learner.target_critic(batch.obs, batch.state, None, batch.starts)[0]
    learner.update(batch)
    inside = ~(batch.terminated | batch.truncated)[:-1]  # V(s_{t+1}) is the next row's observation
    torch.testing.assert_close(seen["next_values"][:-1][inside], v_target[1:][inside])
    assert not torch.allclose(v_target, batch.values)


def _policy_loss(learner, batch, adv, targets):
    mb = Minibatch(batch.obs, batch.avail, batch.actions, batch.logp, batch.values, batch.state,
                   batch.agent_mask.float(), adv, targets, starts=batch.starts)
    return learner._minibatch_losses(mb)[0]


@pytest.mark.parametrize("nstep", [5, None])
def test_nstep_advantages_are_the_targets_minus_the_critic_as_it_trains(nstep):
    """The minibatch's stored advantages are not read: R - V(s) comes from the critic's own pass."""
    learner = tiny_ppo([*EPYMARL[1:], f"ppo.nstep={'null' if nstep is None else nstep}"])
    batch = on_policy_batch(learner)
    targets = torch.randn(batch.values.shape, generator=torch.Generator().manual_seed(2))
    a = _policy_loss(learner, batch, torch.zeros_like(targets), targets)
    b = _policy_loss(learner, batch, torch.full_like(targets, 100.0), targets)
    if nstep is None:  # GAE: the stored advantages are what the surrogate weighs
        assert not torch.allclose(a, b)
        return
    with torch.no_grad():
        v, _ = learner.critic(batch.obs, batch.state, None, batch.starts)
    mask = batch.agent_mask.float()
    expected = -((targets - v) * mask).sum() / mask.sum()  # ratio 1: minus the mean advantage
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(b, expected)
    a.backward()  # the advantage is a constant to the policy loss: no gradient reaches the critic
    assert all(p.grad is None or not p.grad.any() for p in learner.critic.parameters())
    assert any(p.grad is not None and p.grad.any() for p in learner.actor.parameters())


@pytest.mark.parametrize("overrides, message", [
    (["credit.name=counterfactual", "ppo.nstep=5"], "ppo.nstep: credit 'counterfactual'"),
    (["runner.kind=async", "ppo.nstep=5"], "lagged actors"),
    (["model.recurrent=true", "ppo.target_tau=0.01"], "feed-forward critic"),
])
def test_settings_that_cannot_work_are_refused_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_refreshed_advantages_are_normalized_over_alive_agents_when_asked():
    learner = tiny_ppo([*EPYMARL[:-1], "ppo.normalize_advantages=true"])
    batch = on_policy_batch(learner)
    targets = torch.randn(batch.values.shape, generator=torch.Generator().manual_seed(2)) + 5.0
    loss = _policy_loss(learner, batch, torch.zeros_like(targets), targets)
    assert abs(float(loss)) < 1e-5  # ratio 1: minus the mean of advantages normalized to mean 0
    assert float(_policy_loss(tiny_ppo(EPYMARL), batch, torch.zeros_like(targets), targets)) < -1.0
