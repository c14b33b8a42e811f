import pytest
import torch

from accord.config import ModelConfig
from accord.envs.base import EnvSpec
from accord.models import gru as gru_module
from accord.models import layers
from accord.models.actor_critic import Actor, Critic
from accord.models.gru import MaskedGRUSequence
from accord.models.layers import AgentLinear, MaskedGRU, Tanh, rational_tanh

SPEC = EnvSpec(n_agents=3, obs_shapes={"vector": (4,)}, state_dim=6, action_kind="discrete",
               n_actions=5, episode_limit=10)


def test_per_agent_linear_equals_a_loop_of_separate_layers():
    layer = AgentLinear(4, 2, n_agents=3, shared=False)
    x = torch.randn(5, 3, 4)
    loop = torch.stack([x[:, i] @ layer.weight[i] + layer.bias[i] for i in range(3)], dim=1)
    assert torch.allclose(layer(x), loop, atol=1e-6)


def test_unavailable_actions_are_never_sampled():
    actor = Actor(SPEC, ModelConfig())
    obs = {"vector": torch.randn(1, 64, 3, 4)}
    avail = torch.zeros(1, 64, 3, 5, dtype=torch.bool)
    avail[..., 2] = avail[..., 4] = True
    params, _ = actor(obs, avail)
    for _ in range(20):
        act, logp = actor.sample(params[0])
        assert set(act.unique().tolist()) <= {2, 4}
        assert torch.allclose(logp, actor.log_prob(params[0], act))


def test_log_prob_entropy_is_log_prob_and_entropy():
    actor = Actor(SPEC, ModelConfig())
    avail = torch.rand(2, 8, 3, 5) > 0.3
    avail[..., 0] = True
    params, _ = actor({"vector": torch.randn(2, 8, 3, 4)}, avail)
    act, _ = actor.sample(params)
    logp, ent = actor.log_prob_entropy(params, act)
    torch.testing.assert_close(logp, actor.log_prob(params, act))
    torch.testing.assert_close(ent, actor.entropy(params))


def test_continuous_log_prob_matches_torch_normal():
    spec = EnvSpec(n_agents=2, obs_shapes={"vector": (3,)}, state_dim=0, action_kind="continuous",
                   n_actions=2, episode_limit=5)
    actor = Actor(spec, ModelConfig(), log_std_init=-0.3)
    params, _ = actor({"vector": torch.randn(1, 4, 2, 3)}, torch.zeros(1, 4, 2, 0, dtype=torch.bool))
    act, logp = actor.sample(params)
    ref = torch.distributions.Normal(params, actor.log_std.exp()).log_prob(act).sum(-1)
    assert torch.allclose(logp, ref, atol=1e-5)
    ent = torch.distributions.Normal(params, actor.log_std.exp()).entropy().sum(-1)
    assert torch.allclose(actor.entropy(params), ent, atol=1e-5)


def test_gru_state_resets_at_episode_starts():
    gru = MaskedGRU(2, 3)
    x = torch.randn(4, 1, 2)
    h0 = torch.randn(1, 3)
    starts = torch.tensor([[False], [False], [True], [False]])
    out, _ = gru(x, h0, starts)
    fresh, _ = gru(x[2:], torch.zeros(1, 3), torch.zeros(2, 1, dtype=torch.bool))
    assert torch.allclose(out[2:], fresh, atol=1e-6)


def _cell_loop(gru: MaskedGRU, x: torch.Tensor, h: torch.Tensor, starts: torch.Tensor) -> tuple:
    outs = []
    for t in range(x.shape[0]):
        h = gru.cell(x[t].reshape(-1, x.shape[-1]), (h * (~starts[t]).unsqueeze(-1)).reshape(-1, h.shape[-1]))
        h = h.view(*starts.shape[1:], -1)
        outs.append(h)
    return torch.stack(outs), h


@pytest.mark.parametrize("aten", [False, True], ids=["sigmoid-tanh", "aten-tanh"])  # the BPTT's two tanh forms
@pytest.mark.parametrize("mid_starts", [False, True], ids=["aligned", "resets-inside"])
def test_gru_paths_equal_the_cell_loop_in_values_and_gradients(monkeypatch, mid_starts, aten):
    """Training (hand-written BPTT, accord/models/gru.py) and no-grad paths (one torch.gru call, or the
    cell loop when an episode starts inside) give the cell loop's outputs; the BPTT gives its gradients
    for the inputs, the initial state and every weight."""
    monkeypatch.setattr(gru_module, "ATEN_TANH", aten)
    torch.manual_seed(0)
    gru = MaskedGRU(4, 6)
    x, h0 = torch.randn(7, 3, 2, 4, requires_grad=True), torch.randn(3, 2, 6, requires_grad=True)
    starts = torch.zeros(7, 3, 2, dtype=torch.bool)
    starts[0, 1] = True
    if mid_starts:
        starts[3, 0, 1] = starts[5, 2] = True
    out, h = gru(x, h0, starts)
    ref, h_ref = _cell_loop(gru, x, h0, starts)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-6)
    weights = [x, h0, *gru.parameters()]
    loss = (out * torch.linspace(-1, 1, 6)).sum() + h.square().sum()
    loss_ref = (ref * torch.linspace(-1, 1, 6)).sum() + h_ref.square().sum()
    for got, want in zip(torch.autograd.grad(loss, weights), torch.autograd.grad(loss_ref, weights), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(gru(x, h0, starts)[0], ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("aten", [False, True], ids=["sigmoid-tanh", "aten-tanh"])
def test_gru_backward_passes_gradcheck(monkeypatch, aten):
    """Finite differences in float64 against the hand-written backward, resets included."""
    monkeypatch.setattr(gru_module, "ATEN_TANH", aten)
    torch.manual_seed(0)
    cell = torch.nn.GRUCell(3, 4).double()
    x, h0 = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    keep = torch.ones(5, 2, 1, dtype=torch.float64)
    keep[2, 1] = 0.0
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    inputs = [t.detach().requires_grad_() for t in (x, h0, *weights)]
    assert torch.autograd.gradcheck(lambda x, h0, *w: MaskedGRUSequence.apply(x, h0, keep, *w),
                                    tuple(inputs), eps=1e-6, atol=1e-5)


def test_centralized_critic_sees_state_and_local_critic_sees_obs():
    obs = {"vector": torch.randn(1, 2, 3, 4)}
    state = torch.randn(1, 2, 6)
    central, local = Critic(SPEC, ModelConfig(), True), Critic(SPEC, ModelConfig(), False)
    v_c, _ = central(obs, state)
    v_l, _ = local(obs, state)
    assert v_c.shape == v_l.shape == (1, 2, 3)
    # Changing the state moves the centralized critic only.
    assert not torch.allclose(central(obs, state + 1)[0], v_c)
    assert torch.allclose(local(obs, state + 1)[0], v_l)


def test_recurrent_actor_with_a_feed_forward_critic_of_its_own_depth():
    """model.critic_recurrent / critic_layers (EPyMARL's MAPPO: GRU actor, MLP 2-layer critic): the
    critic carries no recurrent state, the actor keeps its GRU, and an update trains both."""
    from accord.config import load_config
    from accord.envs.registry import make_env
    from accord.loop import build_learner, train_step

    cfg = load_config(None, ["model.recurrent=true", "model.layers=1", "model.critic_recurrent=false",
                             "model.critic_layers=2", "task.num_envs=4", "ppo.rollout_len=25"])
    env = make_env(cfg.task)
    learner, runner = build_learner(cfg, env)
    assert learner.actor.body.gru is not None and learner.critic.body.gru is None
    assert sum(isinstance(m, AgentLinear) for m in learner.critic.body.mlp) == 2
    assert sum(isinstance(m, AgentLinear) for m in learner.actor.body.mlp) == 1
    before = [p.clone() for p in learner.critic.parameters()]
    out = train_step(learner, runner)
    assert runner.batch.h_critic is None and runner.batch.h_actor is not None
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.critic.parameters(), strict=True))
    env.close()


@pytest.mark.parametrize("aten", [False, True])  # 2 sigmoid(2x) - 1, or ATen's tanh (AVX-512 CPUs)
def test_tanh_without_autograd_is_tanh_to_float_precision(monkeypatch, aten):
    monkeypatch.setattr(layers, "ATEN_TANH", aten)
    x = torch.cat([torch.linspace(-30, 30, 10001), torch.tensor([0.0, 1e-30, -1e-30, float("nan")])])
    with torch.no_grad():
        fast = Tanh()(x)
    torch.testing.assert_close(fast, torch.tanh(x), rtol=0, atol=2.5e-7, equal_nan=True)
    assert fast[:-1].abs().max() <= 1.0 and fast[-1].isnan()
    y = x[:-1].clone().requires_grad_()
    assert torch.equal(Tanh()(y), torch.tanh(y))  # with autograd: ATen's tanh and its gradient


def test_rational_tanh_is_tanh_to_float_precision():
    x = torch.cat([torch.linspace(-30, 30, 200001), torch.tensor([0.0, 1e-30, -1e-30, 1e-6, float("nan")])])
    y = rational_tanh(x)
    exact = torch.tanh(x.double())
    rel = ((y.double() - exact).abs() / exact.abs().clamp_min(1e-30))[:-1]
    assert rel.max() < 4e-7 and y[:-1].abs().max() <= 1.0 and y[-1].isnan()


def test_compiled_tanh_layer_is_rational_without_autograd_and_atens_with_it():
    x = torch.linspace(-10, 10, 1001)
    layer = torch.compile(Tanh(), dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), rational_tanh(x), rtol=0, atol=1e-7)  # inductor's own tanh: 3e-7 off
    xg = x.clone().requires_grad_()
    y = layer(xg)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(y, torch.tanh(x), rtol=0, atol=2.5e-7)
    torch.testing.assert_close(xg.grad, 1 - torch.tanh(x) ** 2, rtol=0, atol=1e-6)
