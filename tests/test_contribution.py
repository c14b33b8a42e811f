"""Contribution monitoring: Shapley values on known games, ablation on scripted teams, and the flags."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from accord.config import ModelConfig
from accord.envs.tasks.freerider import FreeRider
from accord.eval.contribution import contribution_report, exact_shapley, sampled_shapley
from accord.eval.flags import RewardHackingMonitor, mark_lazy, reward_hacking
from accord.eval.stats import bootstrap_ci, iqm
from accord.policy import Policy


def _game(values: dict[frozenset, float], n: int):
    return lambda mask: torch.tensor(values[frozenset(i for i in range(n) if mask >> i & 1)], dtype=torch.float64)


def test_exact_shapley_of_the_glove_game():
    # Player 0 holds a left glove, players 1 and 2 right gloves; a pair is worth 1.
    n = 3
    values = {frozenset(c): float(0 in c and len(c) >= 2) for k in range(n + 1)
              for c in itertools.combinations(range(n), k)}
    phi = exact_shapley(_game(values, n), n)
    torch.testing.assert_close(phi, torch.tensor([2 / 3, 1 / 6, 1 / 6], dtype=torch.float64))


def test_exact_shapley_is_efficient_symmetric_and_additive_on_random_games():
    g = torch.Generator().manual_seed(0)
    for n in (2, 4, 6):
        v = torch.randn(1 << n, 5, generator=g, dtype=torch.float64)  # per-episode values of each coalition
        phi = exact_shapley(lambda mask, v=v: v[mask], n)
        torch.testing.assert_close(phi.sum(0), v[(1 << n) - 1] - v[0])  # efficiency, episode by episode
    w = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    additive = exact_shapley(lambda mask: sum(w[i] for i in range(4) if mask >> i & 1) + 7.0, 4)
    torch.testing.assert_close(additive, w)


def test_sampled_shapley_is_unbiased_for_exact_values():
    g = torch.Generator().manual_seed(1)
    n = 5
    v = torch.randn(1 << n, generator=g, dtype=torch.float64)
    exact = exact_shapley(lambda mask: v[mask], n)
    samples = sampled_shapley(lambda mask: v[mask], n, permutations=4000, gen=torch.Generator().manual_seed(2))
    se = samples.std(0) / math.sqrt(len(samples))
    assert ((samples.mean(0) - exact).abs() < 4 * se + 1e-9).all()
    torch.testing.assert_close(samples.sum(1), (v[-1] - v[0]).expand(len(samples)))  # every order is efficient


class ScriptedTeam(nn.Module):
    """Workers answer the cue they see; the rider answers right (``rider_works``) or idles."""

    def __init__(self, env: FreeRider, rider_works: bool) -> None:
        super().__init__()
        self.env, self.rider_works = env, rider_works

    def forward(self, obs: dict[str, Tensor], avail: Tensor, h=None, starts=None) -> tuple[Tensor, None]:
        k = self.env.n_cues
        seen = obs["vector"].argmax(-1)  # [1, B, N]
        answer = 1 + (seen + torch.tensor([0] * (self.env.n - 1) + [1])) % k
        if not self.rider_works:
            answer[..., -1] = 0
        return nn.functional.one_hot(answer, avail.shape[-1]).float() * 10.0, None

    def sample(self, params: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        return params.argmax(-1), params.new_zeros(params.shape[:-1])


def scripted(env: FreeRider, rider_works: bool) -> Policy:
    return Policy(env.spec, ScriptedTeam(env, rider_works), ModelConfig())  # type: ignore[arg-type]


@pytest.mark.parametrize("rider_works", [True, False])
def test_ablation_finds_each_agents_share_and_flags_an_idle_rider(rider_works):
    env = FreeRider(256)
    report = contribution_report(env, scripted(env, rider_works), seed=3)
    flags = mark_lazy(report, tolerance=0.05, success_threshold=0.5)
    workers, rider = report.agents[:3], report.agents[3]
    for w in workers:  # a worker right 62.5 % of the time adds 10 * 5 * (0.625 - 0.375) = 12.5 on average
        assert 10.0 < w.ablation < 15.0 and w.ablation_ci[0] < 12.5 < w.ablation_ci[1]
        assert w.shapley == pytest.approx(w.ablation)  # the task is additive: Shapley = ablation
        assert not w.lazy
    assert report.success_rate > 0.5 and report.shapley_method == "exact"
    assert sum(a.shapley for a in report.agents) == pytest.approx(report.team_return - report.empty_return)
    if rider_works:
        assert rider.ablation == pytest.approx(6.0) and not rider.lazy and not flags  # 10 right answers x 0.6
    else:
        assert rider.ablation == 0.0 and rider.ablation_ci == (0.0, 0.0)  # same seeds: exactly nothing
        assert rider.lazy and [f["agent"] for f in flags] == ["rider"]


def test_teams_above_six_agents_get_sampled_shapley_with_an_interval():
    env = FreeRider(64, n_agents=7)
    report = contribution_report(env, scripted(env, True), seed=0, permutations=8)
    assert report.shapley_method == "sampled (8 permutations)"
    for a in report.agents:  # additive game, same seeds: every order gives the same marginal contribution
        assert a.shapley == pytest.approx(a.ablation)
        assert a.shapley_ci[0] == pytest.approx(a.shapley) and a.shapley_ci[1] == pytest.approx(a.shapley)


def test_reward_hacking_needs_a_rising_return_and_a_significantly_falling_goal():
    up = [float(i) for i in range(8)]
    assert reward_hacking(up, [0.9 - 0.05 * i for i in range(8)], min_drop=0.1) is not None
    assert reward_hacking(up, [0.3 + 0.05 * i for i in range(8)], min_drop=0.1) is None  # goal rises too
    assert reward_hacking(up, [0.5 - 0.001 * i for i in range(8)], min_drop=0.1) is None  # too small a fall
    noisy = [0.5, 0.48, 0.52, 0.47, 0.5, 0.49, 0.51, 0.46]
    assert reward_hacking(up, noisy, min_drop=0.01) is None  # not significant


def test_the_monitor_fires_once_per_episode_of_hacking():
    mon = RewardHackingMonitor(window=5, min_drop=0.1)
    records = [{"env_steps": i, "return_mean": float(i), "success_rate": max(0.0, 0.8 - 0.1 * i)} for i in range(12)]
    fired = [r["env_steps"] for r in records if mon.observe(r)]
    assert fired == [4]
    assert mon.observe({"env_steps": 99, "return_mean": 1.0}) is None  # no goal metric: nothing to judge


def test_iqm_and_bootstrap_interval():
    x = [1.0, 2.0, 3.0, 4.0, 100.0]
    assert iqm(x) == pytest.approx(3.0)
    lo, hi = bootstrap_ci(x, iqm)
    assert lo <= iqm(x) <= hi
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_accord_contribution_reports_any_checkpoint_and_stores_its_flags(tmp_path, capsys):
    import json

    from accord.cli import main
    from accord.config import load_config
    from accord.loop import train
    from accord.store import list_checkpoints, read_flags

    cfg = load_config(None, ["task.name=freerider", "task.num_envs=16", "ppo.rollout_len=10", "ppo.epochs=1",
                             f"runs_dir={tmp_path}", "name=tiny", "train.total_env_steps=320",
                             "train.checkpoint_interval_s=0.0001", "train.keep_checkpoints=5"])
    train(cfg, progress=False)
    first = list_checkpoints(tmp_path / "tiny" / "checkpoints")[0]
    with pytest.raises(SystemExit) as exit_code:
        main(["contribution", "tiny", "--root", str(tmp_path), "--checkpoint", first.name, "--episodes", "32",
              "--json"])
    assert exit_code.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"]["checkpoint"] == first.name and out["episodes"] == 32
    assert [a["name"] for a in out["agents"]] == ["worker_0", "worker_1", "worker_2", "rider"]
    assert len(read_flags(tmp_path / "tiny")) == len(out["flags"])  # lazy flags are stored in the run
    with pytest.raises(SystemExit):
        main(["contribution", "tiny", "--root", str(tmp_path), "--checkpoint", "999"])
    assert "no checkpoint '999' in run tiny" in capsys.readouterr().err


def _report(ci: tuple[float, float]):
    from accord.eval.contribution import AgentContribution, ContributionReport

    agents = [AgentContribution(f"agent_{i}", 3.0, (2.0, 4.0), 3.0, (2.0, 4.0), None) for i in range(2)]
    agents.append(AgentContribution("agent_2", sum(ci) / 2, ci, sum(ci) / 2, ci, None))
    return ContributionReport(agents, team_return=10.0, team_return_ci=(9.0, 11.0), empty_return=0.0,
                              success_rate=0.9, shapley_method="exact", episodes=64, replacement="noop",
                              deterministic=False, source={"run": "r", "checkpoint": "c", "env_steps": 1})


def test_lazy_means_the_whole_interval_is_below_the_tolerance():
    # A modest but real share (17 % of the team's gain, CI clear of zero) is not lazy...
    assert mark_lazy(_report((0.9, 2.5)), tolerance=0.05, success_threshold=0.5) == []
    # ...nor is one whose interval merely reaches below the tolerance.
    assert mark_lazy(_report((-0.2, 1.5)), tolerance=0.05, success_threshold=0.5) == []
    flags = mark_lazy(_report((-0.1, 0.3)), tolerance=0.05, success_threshold=0.5)
    assert [f["agent"] for f in flags] == ["agent_2"]
    assert "the whole interval is below 0.05 x the team's gain = 0.5" in flags[0]["detail"]
