"""The numpy acting step (accord/models/numpy_actor.py) computes what the torch actor computes: the same
actions from the same seed, log-probabilities and recurrent state to float rounding; it acts only where
it applies, and sees an optimizer step at once."""

from __future__ import annotations

import itertools

import pytest
import torch

from accord.config import ModelConfig
from accord.envs.base import EnvSpec
from accord.models import numpy_actor
from accord.models.numpy_actor import NumpyActor
from accord.policy import Policy

N, F, A, B = 3, 7, 5, 6
MODELS = {  # every part the numpy step knows, each in some case
    f"{kind}-{'gru' if rec else 'mlp'}-{'norm' if norm else 'raw'}-{act}-{layers}{'' if ids else '-noid'}":
        (kind, dict(hidden=16, recurrent=rec, input_norm=norm, activation=act, layers=layers, agent_id=ids))
    for kind, rec, norm, act, layers, ids in itertools.product(["discrete", "continuous"], [False, True],
                                                               [False, True], ["relu", "tanh"], [1, 2], [True])
    if layers == 2 or (norm and act == "relu")
} | {"discrete-gru-noid": ("discrete", dict(hidden=16, recurrent=True, agent_id=False))}


def _policy(kind: str, **model) -> Policy:
    spec = EnvSpec(n_agents=N, obs_shapes={"vector": (F,)}, state_dim=9, action_kind=kind, n_actions=A,
                   episode_limit=10)
    return Policy.build(spec, ModelConfig(**model))


def _inputs(policy: Policy, b: int = B) -> tuple:
    obs = {"vector": torch.randn(b, N, F)}
    avail = torch.rand(b, N, A) > 0.4
    avail[..., 1] = True
    h = policy.initial_state(b)
    return obs, avail, None if h is None else torch.randn_like(h), torch.arange(b) % 3 == 0  # some episodes start


def _both(policy: Policy, inputs: tuple, deterministic: bool, seed: int = 3) -> tuple[tuple, tuple]:
    """``Policy.step`` through numpy, then through torch, from the same seed."""
    fast = policy._numpy
    out = []
    for path in (fast, None):
        policy._numpy = path
        torch.manual_seed(seed)
        with torch.inference_mode():
            out.append(policy.step(*inputs, deterministic=deterministic))
    policy._numpy = fast
    return out[0], out[1]


@pytest.mark.parametrize("name", MODELS)
def test_numpy_step_draws_the_torch_actions(name):
    kind, model = MODELS[name]
    torch.manual_seed(0)
    policy = _policy(kind, **model)
    assert policy._numpy is not None
    with torch.no_grad():  # weights far from their init: the head's small gain would hide a wrong layer
        for p in policy.actor.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    inputs = _inputs(policy)
    for deterministic in (False, True):
        (a1, l1, h1), (a2, l2, h2) = _both(policy, inputs, deterministic)
        assert a1.shape == a2.shape and a1.dtype == a2.dtype and l1.dtype == l2.dtype == torch.float32
        if kind == "discrete":
            assert torch.equal(a1, a2)
            assert bool(inputs[1].gather(-1, a1.unsqueeze(-1)).all())  # never an unavailable action
        else:
            torch.testing.assert_close(a1, a2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-5)
        assert (h1 is None) == (h2 is None) == (not model["recurrent"])
        if h1 is not None:
            torch.testing.assert_close(h1, h2, rtol=1e-5, atol=1e-6)
            assert h1[inputs[3]].abs().sum() > 0  # the reset rows were recomputed, not left at zero


def test_numpy_step_sees_an_optimizer_step_at_once():
    """A fused Adam writes the weights in place without marking them changed: nothing may be cached."""
    torch.manual_seed(0)
    policy = _policy("discrete", hidden=16, recurrent=True)
    opt = torch.optim.Adam(policy.parameters(), lr=0.5, fused=True)
    inputs = _inputs(policy)
    before, _ = _both(policy, inputs, deterministic=True)
    for _ in range(3):
        obs, avail, h, starts = inputs
        logits, _ = policy.actor({"vector": obs["vector"][None]}, avail[None], h, starts[None])
        opt.zero_grad()
        (logits.clamp(-1e3).square().mean()).backward()
        opt.step()
    after, torch_after = _both(policy, inputs, deterministic=True)
    assert not torch.allclose(before[1], after[1])
    torch.testing.assert_close(after[1], torch_after[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after[2], torch_after[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", [
    dict(share_params=False), dict(fusion="attention"), dict(drop_modalities=["vector"]),
])
def test_actors_with_other_parts_act_through_torch(model):
    assert _policy("discrete", hidden=16, **model)._numpy is None


def test_q_agents_and_other_modalities_act_through_torch():
    spec = EnvSpec(n_agents=N, obs_shapes={"vector": (F,), "text": (4,)}, state_dim=9, action_kind="discrete",
                   n_actions=A, episode_limit=10, vocab_size=12)
    assert Policy.build(spec, ModelConfig(hidden=16))._numpy is None
    assert _policy("discrete", hidden=16)._numpy is not None
    vector = EnvSpec(n_agents=N, obs_shapes={"vector": (F,)}, state_dim=9, action_kind="discrete", n_actions=A,
                     episode_limit=10)
    assert Policy.build(vector, ModelConfig(hidden=16), value_based=True)._numpy is None


def test_torch_acts_with_gradients_and_for_large_batches(monkeypatch):
    policy = _policy("discrete", hidden=16, recurrent=True)
    calls = []
    step = NumpyActor.step
    monkeypatch.setattr(NumpyActor, "step", lambda self, *a, **k: calls.append(1) or step(self, *a, **k))
    _, logp, _ = policy.step(*_inputs(policy))  # gradients on: torch, and its graph
    assert logp.requires_grad and not calls
    with torch.no_grad():
        policy.step(*_inputs(policy, numpy_actor.MAX_ROWS // N + 1))
        assert not calls
        policy.step(*_inputs(policy, numpy_actor.MAX_ROWS // N))
        assert calls == [1]
        actions, _ = policy.act({"vector": torch.randn(2, N, F)})  # deployment's entry point too
    assert calls == [1, 1] and actions.shape == (2, N)


def test_threads_acting_with_one_policy_get_their_own_answers():
    """A server may act for several callers at once: the numpy step keeps no state between calls."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    policy = _policy("discrete", hidden=16, recurrent=True)
    inputs = [{"vector": torch.randn(B, N, F)} for _ in range(16)]
    with torch.no_grad():
        alone = [policy.act(obs)[0] for obs in inputs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda obs: policy.act(obs)[0], inputs * 8))
    assert all(torch.equal(a, b) for a, b in zip(alone * 8, together, strict=True))
