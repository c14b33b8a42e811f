"""LIIR: the meta-gradient of the intrinsic reward against finite differences on a tiny problem."""

from __future__ import annotations

import pytest
import torch
from batches import random_batch

from accord.config import load_config
from accord.credit.base import masked_mean, normalize, reward_gae
from accord.credit.shaped import Shaped, extrinsic_gradient, meta_objective, policy_sensitivity
from accord.envs.registry import make_env
from accord.loop import build_learner, train_step
from accord.models.actor_critic import Actor

# torch's forward-mode AD scripts its decompositions on first use; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

ALPHA = 0.3  # inner SGD step size
GAMMA, LAM = 0.9, 0.8


def _tiny_problem():
    torch.manual_seed(0)
    cfg = load_config(None, ["task.name=freerider", "task.num_envs=3", "task.params.n_agents=2",
                             "model.hidden=8", "model.layers=1", "credit.name=shaped", "credit.critic_hidden=8",
                             f"ppo.gamma={GAMMA}", f"ppo.gae_lambda={LAM}", "credit.intrinsic_scale=0.5"])
    spec = make_env(cfg.task).spec
    actor = Actor(spec, cfg.model).double()
    module = Shaped(cfg, spec).double()
    batch = random_batch(spec, t=4, b=3, seed=1, dead=0.2)
    batch.obs = {"vector": batch.obs["vector"].double()}
    batch.state, batch.reward = batch.state.double(), batch.reward.double()
    g = torch.Generator().manual_seed(2)
    values, next_values, adv_ex = (torch.randn(4, 3, 2, generator=g, dtype=torch.float64) for _ in range(3))
    return actor, module, batch, values, next_values, adv_ex


def _logp(actor: Actor, params: dict[str, torch.Tensor], batch) -> torch.Tensor:
    logits, _ = torch.func.functional_call(actor, params, (batch.obs, batch.avail, batch.h_actor, batch.starts))
    return actor.log_prob(logits, batch.actions)


def test_meta_gradient_matches_finite_differences_of_the_post_update_extrinsic_objective():
    actor, module, batch, values, next_values, adv_ex = _tiny_problem()
    mask = batch.agent_mask
    theta = {k: p.detach().clone() for k, p in actor.named_parameters()}
    batch.logp = _logp(actor, theta, batch).detach()

    def proxy_adv() -> torch.Tensor:  # normalized A^proxy(eta), differentiable in eta
        return normalize(reward_gae(module.proxy_reward(batch), batch, values, next_values, GAMMA, LAM), mask)

    def inner_step() -> dict[str, torch.Tensor]:
        p = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        l_in = masked_mean(_logp(actor, p, batch) * proxy_adv().detach(), mask)
        grads = torch.autograd.grad(l_in, list(p.values()))
        return {k: theta[k] + ALPHA * gk for k, gk in zip(p, grads, strict=True)}

    def j_ex() -> float:  # J^ex(theta'(eta)) with theta' one SGD step on the proxy objective
        new = inner_step()
        with torch.no_grad():
            return float(masked_mean(torch.exp(_logp(actor, new, batch) - batch.logp) * adv_ex, mask))

    # Analytic: alpha * grad_eta E[c A^proxy(eta)], c from a JVP at theta along grad J^ex(theta').
    theta_new = inner_step()
    with torch.no_grad():
        for k, p in actor.named_parameters():
            p.copy_(theta_new[k])
    c = policy_sensitivity(actor, theta, batch, extrinsic_gradient(actor, batch, adv_ex))
    eta = list(module.intrinsic.parameters())
    analytic = torch.autograd.grad(ALPHA * meta_objective(c, proxy_adv(), mask), eta)

    eps = 1e-6
    g = torch.Generator().manual_seed(3)
    checked = 0
    for p, grad in zip(eta, analytic, strict=True):
        flat, gflat = p.data.view(-1), grad.view(-1)
        for idx in torch.randint(flat.numel(), (3,), generator=g).tolist():
            old = flat[idx].item()
            flat[idx] = old + eps
            up = j_ex()
            flat[idx] = old - eps
            down = j_ex()
            flat[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - gflat[idx].item()) <= 1e-6 + 1e-4 * abs(numeric), (numeric, gflat[idx].item())
            checked += 1
    assert checked >= 12 and any(g.abs().max() > 1e-6 for g in analytic)  # a real, non-zero gradient


def test_shaped_credit_trains_and_reports_intrinsic_magnitude_bounded_by_one():
    cfg = load_config(None, ["task.name=freerider", "task.num_envs=8", "credit.name=shaped"])
    env = make_env(cfg.task)
    algo, runner = build_learner(cfg, env)
    for _ in range(2):
        out = train_step(algo, runner)
    for name in env.spec.agent_names:
        assert 0.0 <= out[f"credit/intrinsic_abs/{name}"] <= 1.0
    assert {"credit/meta_objective", "credit/extrinsic_value_loss"} <= set(out)
