"""User components named package.module:Name: imported and checked at config load, one line per problem."""

from __future__ import annotations

import functools
import pickle
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from accord.algos import resolve_algorithm
from accord.config import load_config
from accord.credit import CREDIT
from accord.envs.base import EnvSpec
from accord.envs.registry import make_env, user_env
from accord.errors import ConfigError
from accord.models.encoders import ObsEncoder

EXAMPLES = str(Path(__file__).resolve().parents[1] / "examples")

PLUGINS = """
import torch
from torch import nn

from accord.credit.individual import Individual
from accord.envs.tasks.spread import Spread
from mytasks import CoverEnv


class TeamOnly(Individual):
    '''A user credit method (PPO family) that only fits ctde.'''
    architectures = ("ctde",)


class VecCover(Spread):
    '''Vectorized: __init__ takes num_envs.'''


def cover(size=5):
    return CoverEnv(size=size)


class Halve(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.out_dim = shape[0] // 2

    def forward(self, x):
        return x[..., : self.out_dim]


NOT_A_CLASS = 3
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch) -> str:
    (tmp_path / "myplugins.py").write_text(textwrap.dedent(PLUGINS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(EXAMPLES)
    yield "myplugins"
    sys.modules.pop("myplugins", None)


def _problem(*overrides: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(None, list(overrides))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_user_tasks_of_every_kind_build_envs(plugins):
    per_env = load_config(None, ["task.name=mytasks:CoverEnv", "task.num_envs=3", "task.params.size=4",
                                 "task.params.team_reward=mean", "task.params.episode_limit=6"])
    env = make_env(per_env.task)
    assert env.num_envs == 3 and env.spec.n_agents == 2 and env.spec.episode_limit == 6
    assert env.spec.obs_shapes == {"vector": (4,)} and env.spec.n_actions == 3
    env.close()
    function = make_env(load_config(None, [f"task.name={plugins}:cover", "task.num_envs=2"]).task)
    assert function.spec.episode_limit == 10  # the env's max_cycles
    vectorized = make_env(load_config(None, [f"task.name={plugins}:VecCover", "task.params.n_agents=2",
                                             "task.num_envs=5"]).task)
    assert vectorized.num_envs == 5 and vectorized.spec.n_agents == 2


def test_a_module_with_parallel_env_is_a_task(plugins, tmp_path):
    (tmp_path / "coverpkg").mkdir()
    (tmp_path / "coverpkg" / "__init__.py").write_text("")  # does not import its submodule
    (tmp_path / "coverpkg" / "cover_v0.py").write_text("from mytasks import CoverEnv as parallel_env\n")
    env = make_env(load_config(None, ["task.name=coverpkg:cover_v0", "task.num_envs=2", "task.params.size=3"]).task)
    assert env.spec.n_agents == 2 and env.num_envs == 2
    env.close()


def test_the_per_env_factory_pickles_for_subprocess_workers(plugins):
    factory = pickle.loads(pickle.dumps(functools.partial(user_env, "mytasks:CoverEnv", {"size": 4})))
    env = factory()
    assert env.size == 4 and env.possible_agents == ["agent_0", "agent_1"]


def test_bad_user_tasks_are_one_line_each(plugins):
    assert _problem("task.name=nosuchmod:Foo") == ("invalid config: task.name: cannot import 'nosuchmod:Foo' "
                                                  "(No module named 'nosuchmod')")
    assert "module 'mytasks' has no attribute 'Nope'" in _problem("task.name=mytasks:Nope")
    msg = _problem(f"task.name={plugins}:NOT_A_CLASS")
    assert "task 'myplugins:NOT_A_CLASS' is int 3; expected a PettingZoo ParallelEnv class" in msg
    assert "task.params.sise: unknown parameter of 'mytasks:CoverEnv' (did you mean 'size'?)" in _problem(
        "task.name=mytasks:CoverEnv", "task.params.sise=3")
    assert "task.params.team_reward: got 'max'; allowed: sum, mean" in _problem(
        "task.name=mytasks:CoverEnv", "task.params.team_reward=max")
    assert "task.params.episode_limit: got 0" in _problem("task.name=mytasks:CoverEnv", "task.params.episode_limit=0")


def test_user_credit_methods_and_learners_resolve_through_the_registries(plugins):
    method = CREDIT[f"{plugins}:TeamOnly"]
    assert method.algorithms == ("ppo",) and method.architectures == ("ctde",)
    assert method.summary == "A user credit method (PPO family) that only fits ctde."
    load_config(None, [f"credit.name={plugins}:TeamOnly"])
    assert "needs architecture ctde, not 'decentralized'" in _problem(f"credit.name={plugins}:TeamOnly",
                                                                       "architecture=decentralized")
    assert "a subclass of accord.credit.base.CreditModule" in _problem(f"credit.name={plugins}:Halve")
    assert resolve_algorithm("accord.algos.ppo:PPO") is resolve_algorithm("ppo")
    assert "algorithm: learner 'myplugins:Halve' is the class Halve; expected a class with collects, update" in (
        _problem(f"algorithm={plugins}:Halve"))
    assert "algorithm: unknown algorithm 'pp'; allowed: ppo, q, or 'package.module:Name'" in _problem("algorithm=pp")


def test_user_encoders_replace_a_modality_encoder(plugins):
    cfg = load_config(None, [f"model.encoders.vector={plugins}:Halve"])
    spec = EnvSpec(n_agents=2, obs_shapes={"vector": (6,)}, state_dim=0, action_kind="discrete", n_actions=3,
                   episode_limit=5)
    enc = ObsEncoder(spec, cfg.model)
    assert enc.out_dim == 3 and enc({"vector": torch.arange(6.0).expand(2, 6)}).tolist()[0] == [0.0, 1.0, 2.0]
    assert "model.encoders.vector: encoder 'myplugins:NOT_A_CLASS' is int 3; expected an nn.Module" in _problem(
        f"model.encoders.vector={plugins}:NOT_A_CLASS")
