"""The standalone Policy: loaded from a checkpoint alone, team and per-agent views agree, and the
learner's one-pass critic equals stepping the critic along the rollout."""

from __future__ import annotations

import pytest
import torch

from accord.config import load_config
from accord.envs.registry import make_env
from accord.errors import CheckpointError, EnvError, RunStoreError
from accord.loop import build_learner, seed_everything, train, train_step
from accord.policy import Policy
from accord.store import load_checkpoint, save_checkpoint

KINDS = {
    "mappo": [],
    "mappo-gru": ["model.recurrent=true"],
    "ippo-own-weights": ["architecture=decentralized", "model.share_params=false"],
    "continuous": ["task.params.continuous=true"],
    "qmix": ["algorithm=q", "credit.name=qmix", "q.batch_episodes=4", "q.buffer_episodes=32"],
}


def _learner(overrides: list[str]):
    cfg = load_config(None, ["task.name=spread", "task.num_envs=8", "ppo.rollout_len=10", "ppo.epochs=1",
                             "q.rollout_len=10", *overrides])
    seed_everything(cfg.seed)
    env = make_env(cfg.task)
    return cfg, env, *build_learner(cfg, env)


@pytest.mark.parametrize("kind", KINDS)
def test_per_agent_view_acts_like_the_team_and_survives_a_checkpoint(kind, tmp_path):
    _, env, learner, runner = _learner(KINDS[kind])
    for _ in range(6):
        train_step(learner, runner)
    path = save_checkpoint(tmp_path / "ckpt.pt", {"policy": learner.policy.record()})
    loaded = Policy.load(path)
    assert isinstance(loaded.actor, type(learner.policy.actor)) and not loaded.actor.training

    step = env.reset(seed=3)
    team_h = ref_h = None
    agent_h = [None] * env.spec.n_agents
    for _ in range(4):  # recurrent state carries over steps in every view
        obs, avail = step.obs, step.avail_actions
        act, team_h = loaded.act(obs, avail, team_h)
        ref, ref_h = learner.policy.act(obs, avail, ref_h)
        torch.testing.assert_close(act, ref)
        for i in range(env.spec.n_agents):
            a_i, agent_h[i] = loaded.agent(i).act({m: x[:, i] for m, x in obs.items()}, avail[:, i], agent_h[i])
            torch.testing.assert_close(a_i, act[:, i])
        step = env.step(act)


def test_policy_load_reads_a_run_by_name_and_refuses_what_it_cannot_use(tiny_config, tmp_path):
    result = train(tiny_config, progress=False)
    root = tiny_config.runs_dir
    by_name = Policy.load(result.run.name, root=root)
    by_path = Policy.load(result.run.path)
    for a, b in zip(by_name.parameters(), by_path.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(RunStoreError, match="no run 'nope'"):
        Policy.load("nope", root=root)
    with pytest.raises(CheckpointError, match="no checkpoint '7'"):
        Policy.load(result.run.name, checkpoint="7", root=root)

    ckpt = sorted(result.run.checkpoints_dir.iterdir())[-1]
    payload = load_checkpoint(ckpt)
    old = save_checkpoint(tmp_path / "old.pt", {k: v for k, v in payload.items() if k != "policy"})
    with pytest.raises(CheckpointError, match="holds no policy record"):
        Policy.load(old)
    payload["policy"]["weights"].popitem()
    broken = save_checkpoint(tmp_path / "broken.pt", payload)
    with pytest.raises(CheckpointError, match="incomplete or does not fit its model"):
        Policy.load(broken)
    data = bytearray(ckpt.read_bytes())
    data[-10] ^= 0xFF
    tampered = tmp_path / "tampered.pt"
    tampered.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        Policy.load(tampered)


def test_policy_refuses_observations_of_the_wrong_shape(tiny_config):
    policy = Policy.build(make_env(tiny_config.task).spec, tiny_config.model)
    n, d = policy.spec.n_agents, policy.spec.obs_shapes["vector"][0]
    actions, _ = policy.act(torch.zeros(5, n, d))  # a bare tensor is the vector modality
    assert actions.shape == (5, n)
    with pytest.raises(EnvError, match=r"expects \[B, N, " + str(d)):
        policy.act(torch.zeros(5, n, d + 1))
    with pytest.raises(EnvError, match="modalities"):
        policy.act({"image": torch.zeros(5, n, 3, 8, 8)})
    with pytest.raises(EnvError, match="available-action mask"):
        policy.act(torch.zeros(5, n, d), avail=torch.ones(5, n, 2, dtype=torch.bool))
    with pytest.raises(KeyError, match="agents: agent_0, agent_1"):
        policy.agent("agent_9")


@pytest.mark.parametrize("recurrent", [False, True], ids=["mlp", "gru"])
@pytest.mark.parametrize("critic", ["centralized", "local"])
def test_one_pass_critic_equals_stepping_it_along_the_rollout(recurrent, critic):
    """The learner's batched critic gives what a per-step critic during collection gave, truncations included."""
    _, env, learner, runner = _learner([f"model.recurrent={recurrent}", f"ppo.critic={critic}",
                                        "task.params.episode_limit=7", "ppo.rollout_len=16"])
    train_step(learner, runner)  # the critic's recurrent state now carries over from a batch
    h0 = None if learner._h_critic is None else learner._h_critic.clone()
    batch = runner.collect()
    learner.evaluate_critic(batch)
    assert batch.truncated.any()
    crit, h = learner.critic, h0
    with torch.no_grad():
        for t in range(batch.reward.shape[0]):
            obs = {m: x[t:t + 1] for m, x in batch.obs.items()}
            v, h = crit(obs, batch.state[t:t + 1], h, batch.starts[t:t + 1])
            torch.testing.assert_close(batch.values[t], v[0])
            final_obs = {m: x[t:t + 1] for m, x in batch.final_obs.items()}
            fv, _ = crit(final_obs, batch.next_state[t:t + 1], h, torch.zeros_like(batch.starts[t:t + 1]))
            torch.testing.assert_close(batch.final_values[t], fv[0] * batch.truncated[t, :, None])
        last, _ = crit({m: x[None] for m, x in batch.last_obs.items()}, batch.last_state[None], h,
                       batch.last_starts[None])
    torch.testing.assert_close(batch.last_values, last[0])
    if recurrent:
        torch.testing.assert_close(learner._h_critic, h)
