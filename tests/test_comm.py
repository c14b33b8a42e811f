"""Messages between agents (accord.comm) on the hidden-goal task: delivery, budgets, faults, refusals."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from pettingzoo.test import parallel_api_test
from torch import Tensor

from accord import cli
from accord.comm import CommChannel, split_action
from accord.config import CommConfig, load_config
from accord.envs.parallel_env import AsParallelEnv
from accord.envs.registry import make_env
from accord.envs.tasks.hidden_goal import HiddenGoal, optimal_return
from accord.suite.perturb import MessageDelay, MessageLoss


def channel(num_envs: int = 4, n_agents: int = 2, **comm) -> CommChannel:
    return CommChannel(HiddenGoal(num_envs, n_agents=n_agents), CommConfig(enabled=True, **comm))


def encode(env: CommChannel, env_action: Tensor, symbol: Tensor | int, receiver: Tensor | int = 0,
           send: Tensor | bool = True) -> Tensor:
    """The inverse of split_action: the channel's action for (env action, message or silence)."""
    c = torch.where(torch.as_tensor(send), 1 + torch.as_tensor(receiver) * env.symbols + torch.as_tensor(symbol), 0)
    return env_action * env.choices + c


def inbox(env: CommChannel, obs: Tensor) -> Tensor:
    """Received messages [B, N, N-1, V] from an observation."""
    return obs[..., -env.message_features:].reshape(*obs.shape[:2], env.spec.n_agents - 1, env.symbols)


def test_a_message_reaches_its_receiver_on_the_next_step_only():
    env = channel(num_envs=2, n_agents=3, mode="targeted", size=2)
    step = env.reset(seed=0)
    assert env.spec.n_actions == 5 * (1 + 4 * 2) and step.avail_actions.shape == (2, 3, 45)
    assert not inbox(env, step.obs["vector"]).any()  # nothing before anyone spoke
    # Agent 0 sends symbol 2 to its second other agent (agent 2); the others stay silent.
    act = encode(env, torch.zeros(2, 3, dtype=torch.long), 2, 1, torch.tensor([True, False, False]))
    assert split_action(act, env.cfg, 3)["receiver"][0, 0] == 1
    step = env.step(act)
    got = inbox(env, step.obs["vector"])  # [B, N, N-1, V]; agent 2's slot 0 is sender 0
    assert got[:, 2, 0].argmax(-1).tolist() == [2, 2] and got[:, 2, 0].sum().item() == 2
    assert not got[:, :2].any() and not got[:, 2, 1].any()  # no one else heard anything
    assert step.info["comm_sent"].tolist() == [[1.0, 0.0, 0.0]] * 2
    step = env.step(encode(env, torch.zeros(2, 3, dtype=torch.long), 0, send=False))
    assert not inbox(env, step.obs["vector"]).any()  # a message lasts one step


@pytest.mark.parametrize("unit", ["messages", "bytes"])
@pytest.mark.parametrize("budget", [0, 1, 2, 4])
def test_messages_sent_stay_within_the_budget(budget, unit):
    """Random senders (the gate opens often) never get more than the budget through, per agent and episode."""
    env = channel(num_envs=64, n_agents=3, budget=budget, unit=unit, mode="broadcast")
    per_message = 1 if unit == "messages" else 2 * env.bytes_per_message  # broadcast: 2 receivers
    step = env.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    used = torch.zeros(64, 3)
    episodes, at_cap = 0, 0
    for _ in range(10 * env.spec.episode_limit):
        step = env.step(torch.randint(0, env.spec.n_actions, (64, 3), generator=gen))
        used += step.info["comm_sent"] * per_message
        assert (step.info["comm_bytes"] == step.info["comm_sent"] * 2 * env.bytes_per_message).all()
        assert (used <= budget).all()
        done = step.done[:, None]
        episodes += int(done.sum())
        at_cap += int(((used + per_message > budget) & done).sum())
        used = used.masked_fill(done, 0)
    assert episodes >= 600 and at_cap > 0.5 * episodes * 3  # the budget binds: most agents spend it all


def test_over_budget_messages_are_penalized_when_asked():
    env = channel(num_envs=8, budget=2, over_budget="penalty", penalty=0.5)
    env.reset(seed=0)
    always = encode(env, torch.zeros(8, 2, dtype=torch.long), 3)  # wait and talk every step
    fines = []
    for _ in range(env.spec.episode_limit):
        step = env.step(always)
        assert step.info["comm_sent"].all()  # delivered anyway
        fines.append(-step.reward)
    assert torch.stack(fines).sum(0).tolist() == [0.5 * 2 * (6 - 2)] * 8  # 2 agents, 4 messages over each


@pytest.mark.parametrize("budget", [None, 0, 1, 2, 4])
def test_a_scripted_protocol_reaches_the_documented_return(budget):
    """Tell the neighbour its goal every step, name what was heard (a guess otherwise): the closed form."""
    env = channel(num_envs=2048, budget=budget)
    step = env.reset(seed=0)
    gen = torch.Generator().manual_seed(99)  # not the task's seed: its guesses would equal the goals
    total = torch.zeros(2048)
    for _ in range(env.spec.episode_limit):
        obs = step.obs["vector"]
        seen = obs[..., :4].argmax(-1)  # the neighbour's goal, sent as the symbol
        heard = inbox(env, obs)[:, :, 0]  # [B, N, V]
        guess = torch.randint(0, 4, (2048, 2), generator=gen)
        name = torch.where(heard.any(-1), heard.argmax(-1), guess) + 1
        step = env.step(encode(env, name, seen))
        total += step.reward
    assert total.mean().item() == pytest.approx(optimal_return(6, 4, budget), abs=0.06)


def test_message_loss_and_delay_perturb_only_the_messages():
    env = channel(num_envs=16)
    lost, late = MessageLoss(channel(num_envs=16), 1.0, seed=0), MessageDelay(channel(num_envs=16), 0.2, seed=0)
    steps = [e.reset(seed=3) for e in (env, lost, late)]
    history = [steps[0].obs["vector"]]
    for t in range(5):
        act = encode(env, torch.ones(16, 2, dtype=torch.long), t % 4)
        steps = [e.step(act) for e in (env, lost, late)]
        clean, gone, delayed = (s.obs["vector"] for s in steps)
        history.append(clean)
        assert torch.equal(gone[..., :5], clean[..., :5]) and not inbox(env, gone).any()
        assert torch.equal(delayed[..., :5], clean[..., :5])
        assert torch.equal(inbox(env, delayed), inbox(env, history[-2]))  # k = max(1, round(5 * 0.2)) = 1
    assert MessageLoss(HiddenGoal(4), 1.0).reset(seed=0).obs["vector"].shape == (4, 2, 5)  # no channel: unchanged


def test_the_channel_is_a_pettingzoo_parallel_env_too():
    cfg = load_config(None, ["task.name=hidden_goal", "task.num_envs=1", "task.comm.enabled=true",
                             "task.comm.mode=targeted", "task.params.n_agents=3"])
    env = AsParallelEnv(make_env(cfg.task))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=60)


@pytest.mark.parametrize("override, says", [
    ("task.comm.budget=-1", "task.comm.budget: input should be greater than or equal to 0"),
    ("task.name=two_step", "task.comm.enabled: task 'two_step' has no message support; tasks with it:"),
    ("task.params.continuous=true", "task.comm.enabled: messages need discrete actions"),
])
def test_bad_communication_input_is_one_line_and_exit_2(tmp_path, override, says):
    task = [] if override.startswith("task.name") else ["task.name=spread"]
    code, _, err = cli.run_captured(["train", "--runs-dir", str(tmp_path), "task.comm.enabled=true", *task,
                                     override, "train.total_env_steps=10"])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and lines[-1].startswith("error: ") and says in lines[-1], err
    assert "Traceback" not in err


@pytest.mark.slow
def test_mappo_learns_to_talk_beyond_any_silent_policy(tmp_path):
    """Without messages no policy beats T / K = 1.5 in expectation; with them MAPPO nears 5.25."""
    from accord.evaluate import evaluate_run
    from accord.loop import train

    cfg = load_config(Path(__file__).parents[1] / "configs/hidden_goal_comm.yaml",
                      [f"runs_dir={tmp_path}", "train.total_env_steps=60000", "train.checkpoint_interval_s=1e9"])
    result = train(cfg, progress=False)
    greedy = evaluate_run(result.run.path, root=tmp_path, episodes=512)["policy"]["return_mean"]
    assert greedy > 3.0, greedy


def test_policy_and_export_carry_the_message_path(tmp_path):
    """A stored policy acts on observations with messages; its ONNX graphs match torch on them."""
    pytest.importorskip("onnxruntime")
    from accord import export
    from accord.loop import train
    from accord.policy import Policy

    cfg = load_config(None, [f"runs_dir={tmp_path}", "task.name=hidden_goal", "task.comm.enabled=true",
                             "task.comm.mode=targeted", "task.params.n_agents=3", "task.num_envs=4",
                             "ppo.rollout_len=12", "train.total_env_steps=240", "eval.interval=0",
                             "logging.tensorboard=false"])
    run = train(cfg, progress=False).run.path
    policy = Policy.load(run)
    env = make_env(cfg.task)
    act, _ = policy.act(env.reset(seed=0).obs)
    parts = split_action(act, cfg.task.comm, 3)
    assert act.shape == (4, 3) and int(parts["env_action"].max()) <= 4 and int(parts["receiver"].max()) <= 1
    res = export.export_run(run, tmp_path / "bundle", parity_obs=50, latency_calls=20)
    assert res.max_abs_diff <= 1e-5 and res.manifest["task"]["comm"]["mode"] == "targeted"
    assert res.manifest["spec"]["obs_shapes"]["vector"] == [5 + 2 * 4]
