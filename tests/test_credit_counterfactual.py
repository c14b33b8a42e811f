"""COMA: the one-pass counterfactual baseline against brute force over each agent's actions."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from batches import random_batch

from accord.config import load_config
from accord.credit.attention import Attention, AttentionCritic
from accord.credit.base import policy_probs
from accord.credit.counterfactual import ComaCritic, Counterfactual, counterfactual_advantage, td_lambda_returns
from accord.envs.registry import make_env
from accord.errors import ConfigError
from accord.loop import build_learner, train_step
from accord.rollout import Rollout


def test_counterfactual_advantage_matches_brute_force_on_a_random_joint_q_table():
    g = torch.Generator().manual_seed(0)
    t, b, n, a = 3, 4, 3, 4
    table = torch.randn(t, b, *([a] * n), generator=g)  # Q(s, u) for every joint action
    actions = torch.randint(a, (t, b, n), generator=g)
    pi = torch.rand(t, b, n, a, generator=g).softmax(-1)

    def joint_q(tt: int, bb: int, u: list[int]) -> torch.Tensor:
        return table[(tt, bb, *u)]

    # What a COMA critic outputs: agent i's row holds Q with only u^i varied.
    q = torch.zeros(t, b, n, a)
    for tt, bb, i, ui in itertools.product(range(t), range(b), range(n), range(a)):
        u = actions[tt, bb].tolist()
        u[i] = ui
        q[tt, bb, i, ui] = joint_q(tt, bb, u)
    adv = counterfactual_advantage(q, pi, actions)
    for tt, bb, i in itertools.product(range(t), range(b), range(n)):
        u = actions[tt, bb].tolist()
        baseline = 0.0
        for ui in range(a):  # marginalize agent i's action only
            v = list(u)
            v[i] = ui
            baseline += pi[tt, bb, i, ui] * joint_q(tt, bb, v)
        assert adv[tt, bb, i].item() == pytest.approx((joint_q(tt, bb, u) - baseline).item(), abs=1e-5)


@pytest.mark.parametrize("critic_kind", ["coma", "attention"])
def test_one_critic_pass_equals_brute_force_passes_over_agent_actions(critic_kind):
    """Agent i's row of one pass equals i's Q from separate passes with u^i replaced, for every u^i."""
    torch.manual_seed(0)
    env = make_env(load_config(None, ["task.name=freerider", "task.num_envs=5"]).task)
    spec = env.spec
    batch = random_batch(spec, t=3, b=5, seed=1)
    critic = ComaCritic(spec, 32, shared=True) if critic_kind == "coma" else AttentionCritic(spec, 32, 4)
    with torch.no_grad():
        q = critic(batch).q  # [T, B, N, A]
        for i, ui in itertools.product(range(spec.n_agents), range(spec.n_actions)):
            other = batch.actions.clone()
            other[..., i] = ui
            q_other = critic(_with_actions(batch, other)).q
            # Q(s, (u^-i, u')) for agent i does not depend on which action i actually took.
            torch.testing.assert_close(q_other[..., i, :], q[..., i, :])


def _with_actions(batch: Rollout, actions: torch.Tensor) -> Rollout:
    return dataclasses.replace(batch, actions=actions)


def test_td_lambda_returns_match_the_recursive_definition():
    g = torch.Generator().manual_seed(2)
    t, b, n = 6, 3, 2
    batch = random_batch(make_env(load_config(None, ["task.name=freerider", "task.num_envs=3",
                                                     "task.params.n_agents=2"]).task).spec, t, b, seed=3)
    batch.truncated = torch.rand(t, b, generator=g) < 0.2
    batch.terminated = (torch.rand(t, b, generator=g) < 0.2) & ~batch.truncated
    r, q, boot = (torch.randn(t, b, n, generator=g) for _ in range(3))
    gamma, lam = 0.9, 0.7
    got = td_lambda_returns(r, q, boot, batch, gamma, lam)
    for e, i in itertools.product(range(b), range(n)):
        nxt = None  # G_{t+1}
        for s in reversed(range(t)):
            term, trunc = bool(batch.terminated[s, e]), bool(batch.truncated[s, e])
            if term:
                want = r[s, e, i]
            elif trunc or s == t - 1:
                want = r[s, e, i] + gamma * boot[s, e, i]
            else:
                want = r[s, e, i] + gamma * ((1 - lam) * q[s + 1, e, i] + lam * nxt)
            assert got[s, e, i].item() == pytest.approx(want.item(), abs=1e-5)
            nxt = want


def test_counterfactual_advantages_use_the_policy_and_record_per_agent_spread():
    cfg = load_config(None, ["task.name=freerider", "task.num_envs=4", "credit.name=counterfactual"])
    env = make_env(cfg.task)

    algo, runner = build_learner(cfg, env)
    train_step(algo, runner)
    stats = algo.credit.stats()
    assert set(stats) >= {f"credit/adv_std/{name}" for name in env.spec.agent_names}
    batch = runner.collect()
    pi = policy_probs(algo.actor, batch)
    torch.testing.assert_close(pi.sum(-1), torch.ones_like(pi[..., 0]))


def test_counterfactual_refuses_continuous_actions():
    cfg = load_config(None, ["task.name=spread", "task.params.continuous=true", "credit.name=counterfactual"])
    spec = make_env(cfg.task).spec
    with pytest.raises(ConfigError, match="needs discrete actions.*continuous"):
        Counterfactual(cfg, spec)


def test_attention_refuses_a_single_agent_at_config_load_and_at_build():
    with pytest.raises(ConfigError, match="'attention' needs at least 2 agents"):
        load_config(None, ["task.name=spread", "task.params.n_agents=1", "credit.name=attention"])
    cfg = load_config(None, ["task.name=spread", "credit.name=attention"])
    spec = make_env(load_config(None, ["task.name=spread", "task.params.n_agents=1"]).task).spec
    with pytest.raises(ConfigError, match="attention needs at least 2 agents"):
        Attention(cfg, spec)
