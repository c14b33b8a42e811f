"""MAAC-style attention critic: weights are a distribution over the other alive agents."""

from __future__ import annotations

import torch
from batches import random_batch

from accord.config import load_config
from accord.credit.attention import AttentionCritic
from accord.envs.registry import make_env
from accord.loop import build_learner, train_step


def _spec(n_agents: int = 4):
    return make_env(load_config(None, ["task.name=freerider", "task.num_envs=2",
                                       f"task.params.n_agents={n_agents}"]).task).spec


def test_weights_are_a_distribution_over_other_alive_agents():
    torch.manual_seed(0)
    spec = _spec(4)
    batch = random_batch(spec, t=5, b=6, seed=0, dead=0.3)
    _, _, w, _ = AttentionCritic(spec, 32, heads=4).attend(batch)  # [T, B, N, H, N]
    alive = batch.agent_mask  # [T, B, N]
    eye = torch.eye(4, dtype=torch.bool)
    assert (w >= 0).all()
    assert (torch.diagonal(w, dim1=2, dim2=4) == 0).all()  # never attends to itself
    assert (w * ~alive[:, :, None, None, :] == 0).all()  # never to a dead agent
    others_alive = (alive[:, :, None, :] & ~eye).any(-1)  # [T, B, N]
    total = w.sum(-1)  # [T, B, N, H]
    torch.testing.assert_close(total[others_alive], torch.ones_like(total[others_alive]))
    assert (total[~others_alive] == 0).all()  # nobody left to attend to: no weight at all


def test_a_dead_agent_changes_nobody_elses_q_through_its_action():
    torch.manual_seed(1)
    spec = _spec(3)
    batch = random_batch(spec, t=2, b=3, seed=2)
    batch.agent_mask[..., 1] = False
    critic = AttentionCritic(spec, 32, heads=2)
    with torch.no_grad():
        q = critic(batch).q
        batch.actions[..., 1] = (batch.actions[..., 1] + 1) % spec.n_actions
        torch.testing.assert_close(critic(batch).q[..., [0, 2], :], q[..., [0, 2], :])


def test_attention_credit_logs_attention_entropy_per_agent():
    cfg = load_config(None, ["task.name=freerider", "task.num_envs=4", "credit.name=attention"])
    env = make_env(cfg.task)
    algo, runner = build_learner(cfg, env)
    out = train_step(algo, runner)
    for name in env.spec.agent_names:
        ent = out[f"credit/attention_entropy/{name}"]
        assert 0.0 <= ent <= torch.log(torch.tensor(3.0)).item() + 1e-6  # at most uniform over 3 others
