"""benchmarks/peers: accord's matched-work settings derived from each peer's own config load in accord
and give the peer's batch shape and gradient work; differences it cannot remove are marked; ratios
come from adjacent pairs only. The peer configs here are the values their runners read at the
pinned commits (JaxMARL c793d09 ippo_ff_mpe.yaml, BenchMARL 1.5.2, EPyMARL cbc38c0)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from accord.config import load_config

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"


def load(name: str):
    sys.path.insert(0, str(PEERS))
    spec = importlib.util.spec_from_file_location(name, PEERS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


settings = load("settings")
peers = load("peers")

JAXMARL = {"LR": 2.5e-4, "NUM_ENVS": 16, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": 1e7, "UPDATE_EPOCHS": 4,
           "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01,
           "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ENV_NAME": "MPE_simple_spread_v3",
           "ANNEAL_LR": True, "num_agents": 3, "max_steps": 25, "hidden": 64}
BENCHMARL = {"task_name": "navigation", "frames": 120000, "num_envs": 10, "frames_per_batch": 6000,
             "minibatch_size": 400,
             "n_minibatch_iters": 45, "num_cells": [256, 256], "activation": "tanh", "share_param_critic": True,
             "use_tanh_normal": True, "lr": 5e-5, "adam_eps": 1e-6, "gamma": 0.99, "lmbda": 0.9,
             "clip_epsilon": 0.2, "entropy_coef": 0.0, "critic_coef": 1.0, "loss_critic_type": "l2",
             "max_grad_norm": 5.0, "evaluation_interval": 120000, "evaluation_episodes": 10,
             "task": {"max_steps": 100, "n_agents": 3, "collisions": True, "agents_with_same_goal": 1,
                      "observe_all_goals": False, "shared_rew": False, "split_goals": False,
                      "lidar_range": 0.35, "agent_radius": 0.1}}
EPYMARL = {"batch_size_run": 10, "batch_size": 10, "buffer_size": 10, "env_args": {
    "key": "lbforaging:Foraging-8x8-2p-2f-coop-v3", "time_limit": 50}, "env_limit": 50, "hidden_dim": 128,
    "epochs": 4, "use_rnn": True, "agent": "rnn", "critic_type": "cv_critic", "obs_agent_id": True, "lr": 3e-4,
    "gamma": 0.99, "q_nstep": 5, "target_update_interval_or_tau": 0.01, "standardise_rewards": True,
    "eps_clip": 0.2, "entropy_coef": 0.001, "grad_norm_clip": 10, "test_interval": 50000, "test_nepisode": 100,
    "t_max": 200000, "test_greedy": True}


def matched(name: str, peer: dict):
    rows = settings.DERIVE[name](peer)
    return rows, load_config(None, ["algorithm=ppo", *settings.overrides(rows)])


def test_jaxmarl_matched_work():
    rows, cfg = matched("jaxmarl", JAXMARL)
    p = cfg.ppo
    assert (cfg.task.name, cfg.task.num_envs, p.rollout_len, p.epochs, p.minibatches) == ("spread", 16, 128, 4, 4)
    # JaxMARL's minibatch: NUM_ACTORS * NUM_STEPS / NUM_MINIBATCHES agent samples; accord's: whole envs.
    assert cfg.task.num_envs * p.rollout_len // p.minibatches == 16 * 128 // 4
    assert not cfg.centralized_critic and (cfg.model.hidden, cfg.model.layers, cfg.model.activation) == (64, 2, "tanh")
    assert (p.lr, p.critic_lr, p.value_coef, p.max_grad_norm, p.huber_delta, p.value_norm) == (
        2.5e-4, 2.5e-4, 0.5, 0.5, None, False)
    assert not cfg.model.agent_id and not cfg.model.input_norm and cfg.eval.interval == 0
    differs = {r.name for r in rows if r.differs}
    assert {"lr schedule", "minibatch sampling", "advantage normalization", "grad-norm clip"} <= differs
    assert "lr schedule" not in {r.name for r in settings.jaxmarl({**JAXMARL, "ANNEAL_LR": False}) if r.differs}


def test_benchmarl_matched_gradient_work():
    rows, cfg = matched("navigation", BENCHMARL)
    p = cfg.ppo
    assert cfg.task.num_envs * p.rollout_len == 6000 and p.epochs * p.minibatches == 675
    assert cfg.task.num_envs * p.rollout_len // p.minibatches == 400  # BenchMARL's minibatch, in frames
    assert cfg.credit.name == "individual" and cfg.task.params["lidar_range"] == 0.35 and p.lr == 5e-5
    assert not p.normalize_advantages  # BenchMARL's ClipPPOLoss(normalize_advantage=False)
    assert cfg.train.compile == "auto"  # how accord runs the same work, as at JaxMARL's settings
    # BenchMARL evaluates 10 episodes after its first batch and at 120k; accord at 120k and its best
    # checkpoint, greedy and sampled: 2 x 10 = 2 x 2 x 5 episodes.
    assert (cfg.eval.interval, cfg.eval.episodes, cfg.eval.final_factor) == (120000, 5, 1)
    _, short = matched("navigation", {**BENCHMARL, "frames": 6000})
    assert (short.eval.interval, short.eval.episodes) == (6000, 2)  # 1 x 10 ~ 2 x 2 x 2 (rounded)
    assert next(r for r in rows if r.name == "Adam eps").differs  # 1e-6 vs accord's 1e-5
    with pytest.raises(ValueError, match="minibatches"):
        settings.batch_rows(10, 25, 3, 1, "shuffled frames")  # 250 env steps cannot make 3 equal minibatches


def test_epymarl_matched_with_gru():
    rows, cfg = matched("lbf", EPYMARL)
    p = cfg.ppo
    assert (cfg.task.name, cfg.task.num_envs, p.rollout_len, p.epochs, p.minibatches) == ("gymma", 10, 50, 4, 1)
    assert cfg.model.recurrent and cfg.model.layers == 1 and cfg.model.hidden == 128
    critic = cfg.model.for_critic()  # EPyMARL's cv_critic: MLP 128-128 on the state, no GRU
    assert not critic.recurrent and critic.layers == 2 and critic.hidden == 128
    assert (p.lr, p.entropy_coef, p.max_grad_norm, p.value_norm) == (3e-4, 0.001, 10, False)
    assert p.standardize_rewards and not p.normalize_advantages  # as EPyMARL's ppo_learner does
    assert not matched("lbf", {**EPYMARL, "standardise_rewards": False})[1].ppo.standardize_rewards
    assert (p.nstep, p.target_tau) == (5, 0.01)  # 5-step returns from a soft-updated target critic
    hard = matched("lbf", {**EPYMARL, "target_update_interval_or_tau": 200})
    assert (hard[1].ppo.nstep, hard[1].ppo.target_tau) == (5, None)
    assert next(r for r in hard[0] if r.name == "value targets").differs  # copies every 200 updates
    differs = {r.name for r in rows if r.differs}
    assert "reward standardization" in differs
    assert not {"critic", "advantage normalization", "value targets"} & differs
    assert "critic" in {r.name for r in settings.epymarl({**EPYMARL, "obs_last_action": True}) if r.differs}
    # EPyMARL tests 100 episodes at 0, 50k, ..., 200k; accord at 50k, ..., 200k and its best checkpoint,
    # greedy and sampled: 5 x 100 = 5 x 2 x 50 episodes.
    assert (cfg.eval.interval, cfg.eval.episodes, cfg.eval.final_factor) == (50000, 50, 1)
    _, short = matched("lbf", {**EPYMARL, "t_max": 20000})
    assert (short.eval.interval, short.eval.episodes) == (20000, 25)  # 1 x 100 = 2 x 2 x 25
    table = settings.table(rows, "epymarl")
    assert table.count("DIFFERS") == len(differs) and "EPyMARL" not in table.splitlines()[0]


def test_ratios_only_within_pairs():
    runs = [{"pair": 0, "variant": "peer", "fps": 100.0}, {"pair": 0, "variant": "matched", "fps": 300.0},
            {"pair": 1, "variant": "peer", "fps": 50.0}, {"pair": 1, "variant": "matched", "fps": 200.0},
            {"pair": 2, "variant": "matched", "fps": 999.0}]  # no peer run in pair 2: no ratio
    assert peers.ratios(runs, "matched", "fps") == [3.0, 4.0]
    assert peers.summarize(runs, ["peer", "matched"])["matched"]["median_ratio_fps"] == 3.5


def test_epymarl_smaclite_patch_is_one_optional_import():
    init = 'import os\nfrom .gymma import GymmaWrapper\n' + peers.SMACLITE + 'REGISTRY = {}\n'
    patched = init.replace(peers.SMACLITE, peers.SMACLITE_OPTIONAL, 1)
    namespace: dict = {}
    exec(compile(patched.replace("from .gymma import GymmaWrapper\n", "").replace(".smaclite_wrapper",
                                                                                   "no_such_smaclite"),
                 "envs", "exec"), namespace)
    assert namespace["SMACliteWrapper"] is None
