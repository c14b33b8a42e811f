"""architecture: hierarchical: the keydoor task, semi-Markov GAE, both levels in training, storage and CLI."""

from __future__ import annotations

import pytest
import torch

from accord import cli
from accord.algos.hierarchical import Hierarchical, HierBatch, WithIntrinsic, option_return, semi_markov_gae
from accord.config import load_config
from accord.credit import CREDIT
from accord.credit.base import CreditContext
from accord.credit.gae import gae
from accord.envs.registry import make_env
from accord.envs.tasks.keydoor import KeyDoor, scripted_actions
from accord.evaluate import evaluate_run
from accord.hierarchy import HierarchicalPolicy
from accord.loop import build_learner, train, train_step
from accord.policy import Policy
from accord.runners import make_runner

# -- the planning task -----------------------------------------------------------------------------


def test_keydoor_layout_and_subgoal_info() -> None:
    env = KeyDoor(6, n_agents=3, n_stations=4)
    step = env.reset(seed=0)
    assert step.obs["vector"].shape == (6, 3, 2 + 2 * 2 + 3 * 4) and step.state.shape == (6, 2 * 3 + 3 * 4)
    assert env.spec.n_subgoals == 4 and step.info["subgoal"].shape == (6, 3)
    assert (env.stations[:, :, None] == env.stations[:, None]).all(-1).sum((1, 2)).eq(4).all()  # distinct cells
    step = env.step(torch.zeros(6, 3, dtype=torch.long))
    on = (env.pos[:, :, None] == env.stations[:, None]).all(-1)  # [B, N, K]
    expected = torch.where(on.any(-1), on.float().argmax(-1), -1)
    assert torch.equal(step.info["subgoal"], expected)


def test_stations_count_only_in_order_and_only_the_last_pays() -> None:
    env = KeyDoor(1, grid_size=5, n_agents=1, n_stations=3, episode_limit=50)
    env.reset(seed=0)
    env.stations[0] = torch.tensor([[0, 0], [0, 2], [0, 4]])
    env.pos[0, 0] = torch.tensor([0, 1])
    # East over stations 1 and 2 (not due yet), west to station 0, east again over 1 and 2.
    moves = [4, 4, 4, 3, 3, 3, 3, 4, 4, 4, 4]
    stages, rewards = [], []
    for a in moves:
        step = env.step(torch.tensor([[a]]))
        stages.append(int(env.stage) if not step.done.item() else 3)
        rewards.append(float(step.reward))
    assert stages == [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3]
    assert rewards == [0.0] * 10 + [1.0] and bool(step.terminated.item()) and float(step.info["success"]) == 1.0


def test_scripted_policy_is_optimal_and_random_is_poor() -> None:
    env = KeyDoor(512)
    env.reset(seed=3)
    done = torch.zeros(512, dtype=torch.bool)
    success = torch.zeros(512)
    for _ in range(env.spec.episode_limit):
        step = env.step(scripted_actions(env))
        success += step.info["success"] * ~done
        done |= step.done
    assert done.all() and success.mean() == 1.0


# -- semi-Markov returns ---------------------------------------------------------------------------


def _semi_markov_reference(reward, values, next_values, decision, terminated, done, gamma, lam):
    """Naive per-agent loop over the options: find each decision's end, sum its rewards, recurse."""
    t_len, b, n = values.shape
    out = torch.zeros_like(values)
    for e in range(b):
        for a in range(n):
            adv_next = 0.0
            for t in range(t_len - 1, -1, -1):
                if not decision[t, e, a]:
                    continue
                ret, j = 0.0, t
                while True:
                    ret += gamma ** (j - t) * float(reward[j, e])
                    if done[j, e]:
                        boot, chain = float(next_values[j, e, a]) * (not terminated[j, e]), False
                        break
                    if j + 1 == t_len:
                        boot, chain = float(next_values[j, e, a]), False
                        break
                    if decision[j + 1, e, a]:
                        boot, chain = float(values[j + 1, e, a]), True
                        break
                    j += 1
                disc = gamma ** (j + 1 - t)
                adv = ret + disc * boot - float(values[t, e, a]) + (lam * disc * adv_next if chain else 0.0)
                out[t, e, a] = adv
                adv_next = adv
    return out


def test_semi_markov_gae_matches_a_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    t, b, n = 13, 5, 3
    reward = torch.randn(t, b, generator=g)
    values, next_values = torch.randn(t, b, n, generator=g), torch.randn(t, b, n, generator=g)
    decision = torch.rand(t, b, n, generator=g) < 0.35
    decision[0] = True
    terminated = torch.rand(t, b, generator=g) < 0.1
    done = terminated | (torch.rand(t, b, generator=g) < 0.1)
    decision[1:] |= done[:-1, :, None]  # a new episode starts with a decision
    fast = semi_markov_gae(reward, values, next_values, decision, terminated, done, 0.9, 0.8)
    slow = _semi_markov_reference(reward, values, next_values, decision, terminated, done, 0.9, 0.8)
    torch.testing.assert_close(fast, slow)


def test_deciding_every_step_is_ordinary_gae() -> None:
    g = torch.Generator().manual_seed(1)
    t, b, n = 9, 4, 2
    reward = torch.randn(t, b, generator=g)
    values, next_values = torch.randn(t, b, n, generator=g), torch.randn(t, b, n, generator=g)
    terminated = torch.rand(t, b, generator=g) < 0.15
    done = terminated | (torch.rand(t, b, generator=g) < 0.15)
    every = torch.ones(t, b, n, dtype=torch.bool)
    # With one-step options V(s_t') is values[t + 1] = next_values[t] inside an episode.
    next_values[:-1] = torch.where(done[:-1, :, None], next_values[:-1], values[1:])
    torch.testing.assert_close(semi_markov_gae(reward, values, next_values, every, terminated, done, 0.95, 0.9),
                               gae(reward[..., None].expand(t, b, n), values, next_values, terminated, done, 0.95, 0.9))


def test_option_return_sums_the_intrinsic_reward_to_the_option_end_only() -> None:
    # One agent, one env: options start at t = 0, 3, 5; the episode ends after t = 6.
    reached = torch.tensor([0, 0, 1, 0, 1, 0, 1, 1], dtype=torch.float)[:, None, None]
    decision = torch.tensor([1, 0, 0, 1, 0, 1, 0, 1], dtype=torch.bool)[:, None, None]
    done = torch.tensor([0, 0, 0, 0, 0, 0, 1, 0], dtype=torch.bool)[:, None]
    g = 0.5
    expected = torch.tensor([g * g, g, 1, g, 1, g, 1, 1])[:, None, None]  # nothing crosses an option's end
    torch.testing.assert_close(option_return(reached, decision, done, g), expected)


def test_workers_add_the_option_return_to_their_credit_methods_advantages() -> None:
    cfg = load_config(None, ["task.name=keydoor", "architecture=hierarchical", "task.num_envs=8", "ppo.rollout_len=30"])
    env = make_env(cfg.task)
    learner = Hierarchical(cfg, env.spec, torch.device("cpu"))
    batch = make_runner(env, learner, cfg.seed).collect()
    w = batch.worker
    g = torch.Generator().manual_seed(2)
    values, next_values = torch.randn(*w.agent_mask.shape, generator=g), torch.randn(*w.agent_mask.shape, generator=g)
    ctx = CreditContext(values, next_values, w.next_state, learner.worker.actor)
    shared = CREDIT["shared"].fn(cfg, learner.worker.policy.spec)
    credit = WithIntrinsic(shared, cfg, learner.worker.policy.spec)
    credit.bonus = option_return(batch.reached.float(), batch.decision, w.terminated | w.truncated, 0.99)
    got, plain = credit.advantages(w, ctx), shared.advantages(w, ctx)
    torch.testing.assert_close(got.advantages, plain.advantages + credit.bonus)
    torch.testing.assert_close(got.returns, plain.returns)  # the critic keeps the credit method's targets
    assert batch.reached.any() and (credit.bonus > 0).any()


# -- both levels in training ------------------------------------------------------------------------


def _tiny(tmp_path, *extra: str):
    return load_config(None, [f"runs_dir={tmp_path / 'runs'}", "task.name=keydoor", "architecture=hierarchical",
                              "task.num_envs=8", "ppo.rollout_len=10", "ppo.epochs=2", "hierarchical.k=3",
                              "train.total_env_steps=480", "train.log_interval=160", "eval.interval=0",
                              "credit.monitor.contribution_episodes=0", *extra])


def test_batch_layout_holds_both_levels_decisions_every_k_steps(tmp_path) -> None:
    cfg = _tiny(tmp_path)
    learner, runner = build_learner(cfg, make_env(cfg.task))
    batch: HierBatch = runner.collect()
    t, b, n = 10, 8, 2
    assert batch.worker.obs["vector"].shape == (t, b, n, 2 + 2 + 12 + 4)  # env obs + one-hot sub-goal
    assert batch.manager.obs["vector"].shape == (t, b, n, 2 + 2 + 12) and batch.manager.avail.shape == (t, b, n, 4)
    goal_in_obs = batch.worker.obs["vector"][..., -4:].argmax(-1)
    assert torch.equal(goal_in_obs, batch.manager.actions)  # workers saw the manager's sub-goal
    # Decisions: every k = 3 steps and at episode starts; the sub-goal holds in between.
    starts = batch.worker.starts
    assert batch.decision[0].all() and torch.equal(batch.manager.agent_mask, batch.decision)
    for step in range(1, t):
        changed = batch.manager.actions[step] != batch.manager.actions[step - 1]
        assert not (changed & ~batch.decision[step]).any()
    gaps = torch.diff(torch.nonzero(batch.decision[:, 0, 0]).flatten())
    assert (gaps <= 3).all() and (batch.decision.sum(0) >= (t // 3)).all()
    assert (batch.manager.logp[batch.decision] < 0).all() and (batch.manager.logp[~batch.decision] == 0).all()
    assert starts.shape == (t, b)
    out = learner.update(batch)
    assert {"policy_loss", "manager/policy_loss", "manager/value_loss", "worker/subgoals_reached"} <= set(out)
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())


def test_train_checkpoint_resume_and_policy_load_cover_both_levels(tmp_path) -> None:
    cfg = _tiny(tmp_path, "name=h")
    train(cfg, progress=False)
    policy = Policy.load(tmp_path / "runs" / "h")
    assert isinstance(policy, HierarchicalPolicy) and policy.k == 3
    assert policy.manager.spec.n_actions == 4 and policy.worker.spec.obs_shapes["vector"] == (20,)
    acts, state = policy.act(torch.zeros(5, 2, 16))
    assert acts.shape == (5, 2) and state.shape == (5, 2, 2)
    from accord.store import latest_checkpoint, load_checkpoint

    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "runs" / "h" / "checkpoints"))
    assert ckpt["algo"]["env_steps"] == 480 and set(ckpt["policy"]) >= {"manager", "worker", "hierarchical"}
    result = evaluate_run("h", tmp_path / "runs", episodes=8)
    assert 0 <= result["policy"]["return_mean"] <= 1
    # Resume from the checkpoint: same weights at both levels, then more steps.
    res = train(resume="h", overrides=[f"runs_dir={tmp_path / 'runs'}", "train.total_env_steps=800"],
                cfg=cfg, progress=False)
    assert res.env_steps >= 800 and res.status == "finished"


def test_resumed_learner_has_the_stored_weights_of_both_levels(tmp_path) -> None:
    cfg = _tiny(tmp_path)
    torch.manual_seed(0)
    a, runner = build_learner(cfg, make_env(cfg.task))
    train_step(a, runner)
    b, _ = build_learner(cfg, make_env(cfg.task))
    b.load_state_dict(a.state_dict())
    for level in ("manager", "worker"):
        for (k, x), y in zip(getattr(a, level).actor.state_dict().items(),
                             getattr(b, level).actor.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, msg=f"{level}.{k}")
    assert b.env_steps == a.env_steps == 80


@pytest.mark.parametrize("credit", ["shared", "counterfactual"])
def test_credit_modules_apply_at_the_worker_level(tmp_path, credit) -> None:
    cfg = _tiny(tmp_path, f"credit.name={credit}")
    learner, runner = build_learner(cfg, make_env(cfg.task))
    assert isinstance(learner.worker.credit.inner, CREDIT[credit].fn)
    out = train_step(learner, runner)
    assert any(k.startswith("credit/adv_std/") for k in out)


# -- bad input: one line, exit 2 --------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (["algorithm=q", "credit.name=iql"], "architecture: 'hierarchical' composes PPO learners"),
    (["hierarchical.k=0"], "hierarchical.k: input should be greater than or equal to 1"),
    (["hierarchical.intrinsic=-1"], "hierarchical.intrinsic: input should be greater than or equal to 0"),
    (["task.name=spread"], "architecture 'hierarchical' needs a task with sub-goals"),
])
def test_bad_hierarchical_config_is_one_line_and_exit_2(tmp_path, overrides, message) -> None:
    args = ["train", f"runs_dir={tmp_path / 'runs'}", "task.name=keydoor", "architecture=hierarchical",
            "train.total_env_steps=10", *overrides]
    code, _, err = cli.run_captured(args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_export_writes_manager_and_worker_graphs_with_parity(tmp_path) -> None:
    from accord.export import export_run

    cfg = _tiny(tmp_path, "name=h")
    train(cfg, progress=False)
    result = export_run("h", tmp_path / "bundle", root=tmp_path / "runs", parity_obs=64, latency_calls=20)
    files = sorted(p.name for p in (tmp_path / "bundle").glob("*.onnx"))
    assert files == ["agent_0.onnx", "agent_1.onnx", "manager_0.onnx", "manager_1.onnx"]
    graphs = {a["graph"]: a for a in result.manifest["agents"]}
    assert graphs["manager_0.onnx"]["outputs"][0]["shape"] == ["batch", 4]  # logits over the 4 sub-goals
    assert graphs["agent_0.onnx"]["inputs"][0]["shape"] == ["batch", 16 + 4]  # obs + one-hot sub-goal
    assert all(a["parity"]["max_abs_diff"] <= 1e-5 for a in result.manifest["agents"])
    assert result.manifest["hierarchical"]["k"] == 3


def test_policy_replans_when_the_env_says_the_sub_goal_was_reached(tmp_path) -> None:
    cfg = _tiny(tmp_path, "hierarchical.k=5")
    learner, _ = build_learner(cfg, make_env(cfg.task))
    policy = learner.policy
    env = KeyDoor(16)
    step = env.reset(seed=0)
    starts = torch.ones(16, dtype=torch.bool)
    _, _, state = policy.step_on(step, None, starts)
    assert (state[..., 1] == 1).all()  # every agent decided at the episode start
    goal = state[..., 0].long()
    reached = torch.zeros(16, 2, dtype=torch.bool)
    reached[:8, 0] = True
    step.info["subgoal"] = torch.where(reached, goal, -1)
    _, _, after = policy.step_on(step, state, torch.zeros(16, dtype=torch.bool))
    assert torch.equal(after[..., 1] == 1, reached)  # a new option exactly where the sub-goal was reached
    # Without info (Policy.act, deployment) a sub-goal holds k = 5 steps.
    obs, h, ages = step.obs, None, []
    for _ in range(6):
        _, h = policy.act(obs, state=h)
        ages.append(int(h[0, 0, 1]))
    assert ages == [1, 2, 3, 4, 5, 1]
