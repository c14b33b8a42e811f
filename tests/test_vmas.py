"""VmasVecEnv: layout, padding, determinism, autoreset, errors, and a MAPPO smoke run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("vmas")

from accord.config import load_config  # noqa: E402
from accord.envs.base import VecEnv  # noqa: E402
from accord.envs.guard import GuardedVecEnv  # noqa: E402
from accord.envs.registry import make_env  # noqa: E402
from accord.envs.vmas import VmasVecEnv  # noqa: E402
from accord.errors import ConfigError  # noqa: E402
from accord.loop import train  # noqa: E402

CONFIG = Path(__file__).parents[1] / "configs" / "vmas_navigation_mappo.yaml"


def navigation(num_envs: int = 4, **params) -> GuardedVecEnv:
    return GuardedVecEnv(VmasVecEnv(num_envs, scenario="navigation", n_agents=3, **params))


def test_continuous_layout_and_rewards() -> None:
    env = navigation(max_steps=10)
    assert isinstance(env.env, VecEnv)
    spec = env.spec
    assert (spec.n_agents, spec.action_kind, spec.n_actions, spec.episode_limit) == (3, "continuous", 2, 10)
    assert (spec.action_low, spec.action_high) == (-1.0, 1.0)
    d = spec.obs_shapes["vector"][0]
    assert spec.state_dim == 3 * d and spec.agent_state_dim == d
    s = env.reset(seed=0)
    assert s.obs["vector"].shape == (4, 3, d) and s.avail_actions.shape == (4, 3, 0)
    assert torch.equal(s.state, s.obs["vector"].flatten(1))
    s = env.step(torch.full((4, 3, 2), 5.0))  # out of bounds: VMAS clamps to u_range
    assert torch.allclose(s.reward, s.agent_reward.sum(1))
    assert s.agent_mask.all() and s.final_state is None


def test_team_reward_mean_and_discrete_actions() -> None:
    env = navigation(continuous=False, team_reward="mean")
    assert env.spec.action_kind == "discrete" and env.spec.n_actions == 9
    env.reset(seed=0)
    s = env.step(torch.randint(0, 9, (4, 3)))
    assert s.avail_actions.shape == (4, 3, 9) and s.avail_actions.all()
    assert torch.allclose(s.reward, s.agent_reward.mean(1))


def test_uneven_agents_are_padded_and_masked() -> None:
    """Speaker (obs 3, 27 discrete actions) and listener (obs 11, 9 actions) share one layout."""
    env = GuardedVecEnv(VmasVecEnv(2, scenario="simple_speaker_listener", continuous=False))
    assert env.spec.obs_shapes == {"vector": (11,)} and env.spec.n_actions == 27
    s = env.reset(seed=0)
    assert (s.obs["vector"][:, 0, 3:] == 0).all()  # speaker padded
    assert s.avail_actions[:, 0].all() and s.avail_actions[:, 1].sum(-1).eq(9).all()
    env.step(torch.tensor([[26, 8], [0, 0]]))


def test_same_seed_same_episodes() -> None:
    def rollout() -> list[torch.Tensor]:
        env = navigation()
        out = [env.reset(seed=3).obs["vector"]]
        gen = torch.Generator().manual_seed(0)
        for _ in range(5):
            out.append(env.step(torch.rand(4, 3, 2, generator=gen) * 2 - 1).obs["vector"])
        return out

    first, second = rollout(), rollout()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_autoreset_on_truncation_keeps_final_obs() -> None:
    env = navigation(max_steps=3)
    env.reset(seed=0)
    zeros = torch.zeros(4, 3, 2)
    for _ in range(2):
        assert not env.step(zeros).done.any()
    s = env.step(zeros)
    assert s.truncated.all() and not s.terminated.any()
    assert not torch.equal(s.final_obs["vector"], s.obs["vector"])  # new episodes start
    assert torch.equal(s.final_state, s.final_obs["vector"].flatten(1))
    assert not env.step(zeros).done.any()  # the step counter restarted


def test_early_termination_resets_only_finished_envs() -> None:
    env = navigation(max_steps=50)
    env.reset(seed=0)
    zeros = torch.zeros(4, 3, 2)
    before = env.step(zeros).obs["vector"]
    finished = torch.tensor([False, True, False, False])
    env.env.env.scenario.done = lambda: finished.clone()  # as if env 1's agents all reached their goals
    s = env.step(zeros)
    assert s.terminated.tolist() == finished.tolist() and not s.truncated.any()
    assert torch.allclose(s.final_obs["vector"][1, :, :2], before[1, :, :2], atol=0.1)  # positions moved little
    kept = ~finished
    assert torch.equal(s.final_obs["vector"][kept], s.obs["vector"][kept])
    assert not torch.equal(s.final_obs["vector"][1], s.obs["vector"][1])


def test_user_errors_name_the_fix(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="did you mean 'navigation'"):
        VmasVecEnv(2, scenario="navigaton")
    with pytest.raises(ConfigError, match=r"\{'n_agent': 3\} unknown to VMAS scenario 'navigation'"):
        VmasVecEnv(2, scenario="navigation", n_agent=3)
    monkeypatch.setitem(sys.modules, "vmas", None)
    with pytest.raises(ConfigError, match=r"pip install 'accord\[vmas\]'"):
        VmasVecEnv(2, scenario="navigation")


def test_registry_builds_a_guarded_env() -> None:
    cfg = load_config(None, ["task.name=vmas", "task.params.scenario=balance", "task.num_envs=2"])
    env = make_env(cfg.task)
    assert isinstance(env, GuardedVecEnv) and env.spec.n_agents == 3
    env.reset(seed=0)
    env.step(torch.zeros(2, 3, 2))
    with pytest.raises(ConfigError, match="already vectorized"):
        load_config(None, ["task.name=vmas", "runner.kind=subproc"])


@pytest.mark.parametrize("continuous", [True, False])
def test_mappo_smoke_run(tmp_path, continuous: bool) -> None:
    cfg = load_config(CONFIG, [
        f"runs_dir={tmp_path}", f"task.params.continuous={continuous}", "task.num_envs=4",
        "task.params.max_steps=8", "ppo.rollout_len=10", "ppo.epochs=1", "ppo.minibatches=2",
        "model.hidden=16", "train.total_env_steps=80", "train.log_interval=40",
    ])
    result = train(cfg, progress=False)
    assert result.status == "finished" and result.env_steps == 80
    assert result.return_mean == result.return_mean  # episodes finished: not NaN
