"""Potential-based shaping: telescoping sums, learned potentials, and a wrong-shaped potential refused."""

from __future__ import annotations

import textwrap

import pytest
import torch
from batches import random_batch

from accord.config import load_config
from accord.credit.base import CreditContext, team_reward
from accord.credit.potential import Potential
from accord.envs.registry import make_env
from accord.errors import ConfigError
from accord.loop import build_learner, train_step


def _write_module(tmp_path, monkeypatch, name: str, body: str) -> str:
    """An importable module ``name`` (unique per test: imported modules stay cached)."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _cfg(*extra: str):
    return load_config(None, ["task.name=freerider", "task.num_envs=2", "credit.name=potential", *extra])


def test_a_potential_of_the_wrong_shape_is_refused_before_training(tmp_path, monkeypatch):
    mod = _write_module(tmp_path, monkeypatch, "potentials_shape", """
        def per_feature(states):
            return states * 2.0
    """)
    cfg = _cfg(f"credit.potential={mod}:per_feature")
    with pytest.raises(ConfigError, match=r"returned shape \[2, 3, 16\] .* must return one potential per state, "
                                          r"shape \[2, 3\]"):
        Potential(cfg, make_env(cfg.task).spec)


def test_a_missing_potential_or_a_malformed_name_is_refused(tmp_path, monkeypatch):
    mod = _write_module(tmp_path, monkeypatch, "potentials_missing", "X = 3\n")
    spec = make_env(_cfg().task).spec
    with pytest.raises(ConfigError, match="cannot import 'potentials_missing:nope'"):
        Potential(_cfg(f"credit.potential={mod}:nope"), spec)
    with pytest.raises(ConfigError, match="potential 'potentials_missing:X' is int 3; expected a function"):
        Potential(_cfg(f"credit.potential={mod}:X"), spec)
    with pytest.raises(ConfigError, match="credit.potential: potential 'no_colon' must look like"):
        _cfg("credit.potential=no_colon")


def test_shaping_telescopes_to_minus_the_first_potential_of_each_episode(tmp_path, monkeypatch):
    mod = _write_module(tmp_path, monkeypatch, "potentials_first", """
        def first_feature(states):
            return states[..., 0] * 3.0 - 1.0
    """)
    cfg = _cfg(f"credit.potential={mod}:first_feature", "ppo.gamma=1.0")
    spec = make_env(cfg.task).spec
    module = Potential(cfg, spec)
    t, b = 6, 2
    batch = random_batch(spec, t, b, seed=0)
    batch.truncated[2, 0] = batch.truncated[5, :] = True  # episodes: env 0 steps 0-2 and 3-5; env 1 steps 0-5
    next_state = torch.cat([batch.state[1:], torch.rand(1, b, spec.state_dim)])
    ctx = CreditContext(torch.zeros(t, b, 4), torch.zeros(t, b, 4), next_state, None)
    shaping = (module.reward(batch, ctx) - team_reward(batch, 4))[..., 0]  # [T, B]
    phi = batch.state[..., 0] * 3.0 - 1.0
    assert shaping[0:3, 0].sum().item() == pytest.approx(-phi[0, 0].item(), abs=1e-5)
    assert shaping[3:6, 0].sum().item() == pytest.approx(-phi[3, 0].item(), abs=1e-5)
    assert shaping[:, 1].sum().item() == pytest.approx(-phi[0, 1].item(), abs=1e-5)


def test_the_learned_potential_is_fitted_and_checkpointed():
    cfg = _cfg("task.num_envs=8")

    algo, runner = build_learner(cfg, make_env(cfg.task))
    out = train_step(algo, runner)
    assert "credit/potential_loss" in out
    state = algo.credit.state_dict()
    assert any(k.startswith("fn.") for k in state) and "_extra_state" in state
