"""Value-based family, piece by piece: replay layout, TD(lambda) targets, mixers, acting, refusals, state."""

from __future__ import annotations

import io
import math

import pytest
import torch

from accord.algos.q import QLearner, lambda_targets
from accord.config import load_config
from accord.credit.qatten import Qatten
from accord.credit.qmix import QMIX
from accord.envs.base import EnvSpec
from accord.envs.registry import make_env
from accord.envs.tasks.matrix import MatrixGame, TwoStep
from accord.envs.tasks.spread import Spread
from accord.errors import CheckpointError, ConfigError, EnvError
from accord.loop import build_learner, seed_everything, train_step
from accord.models.q_agent import QAgent
from accord.replay import EpisodeBuffer, EpisodeBuilder, episode_bytes
from accord.runners import Runner

Q = ["algorithm=q", "credit.name=qmix"]
SPEC = EnvSpec(n_agents=3, obs_shapes={"vector": (4,)}, state_dim=14, action_kind="discrete", n_actions=5,
               episode_limit=6, agent_state_dim=4)


def small_learner(*overrides: str) -> tuple[QLearner, Runner]:
    cfg = load_config(None, [*Q, "task.name=foraging", "task.params={grid_size: 5, n_food: 1, episode_limit: 10}",
                             "task.num_envs=4", "q.rollout_len=10", "q.batch_episodes=4", "q.buffer_episodes=64",
                             *overrides])
    seed_everything(cfg.seed)
    return build_learner(cfg, make_env(cfg.task))


# -- replay ------------------------------------------------------------------------------------

def record(builder: EpisodeBuilder, buf: EpisodeBuffer, step, actions, nxt) -> None:
    """What a runner and a learner do between them: episodes the step finishes go to replay."""
    done = builder.add(step, actions, nxt)
    if done is not None:
        buf.extend(done)


def test_buffer_stores_whole_episodes_with_final_observation_and_padding():
    env = TwoStep(3)
    buf = EpisodeBuffer(env.spec, capacity=4, device=torch.device("cpu"))
    builder = EpisodeBuilder(env.spec, 3, torch.device("cpu"))
    step = env.reset()
    for _ in range(2):
        actions = torch.tensor([[1, 1], [0, 1], [1, 0]])
        nxt = env.step(actions)
        record(builder, buf, step, actions, nxt)
        step = nxt
    assert buf.size == 3 and buf.ptr == 3
    s = buf.store
    assert s.length[:3].tolist() == [2, 2, 2]
    assert s.reward[:3].tolist() == [[0.0, 8.0], [0.0, 7.0], [0.0, 1.0]]  # 2B/(1,1), 2A, 2B/(1,0)
    assert s.terminated[:3, 1].all() and not s.terminated[:3, 0].any()
    # Step 2 holds the final observation (2A or 2B), not the next episode's first (state 1).
    assert s.state[:3, 2].argmax(-1).tolist() == [2, 1, 2]
    # Two more episodes wrap around the ring and overwrite the oldest.
    for _ in range(2):
        actions = torch.zeros(3, 2, dtype=torch.long)
        nxt = env.step(actions)
        record(builder, buf, step, actions, nxt)
        step = nxt
    assert buf.size == 4 and buf.ptr == 2 and buf.episodes == 6
    assert s.reward[0].tolist() == [0.0, 7.0]  # slot 0 now holds a 2A episode

    batch = buf.sample(5)  # time-major, cut to the longest sampled episode
    assert batch.obs["vector"].shape == (3, 5, 2, 3) and batch.actions.shape == (2, 5, 2)
    assert batch.filled.all()


def test_buffer_masks_padding_of_short_episodes():
    env = MatrixGame(2, payoff=[[1.0, 0.0], [0.0, 1.0]])  # one-step episodes in a 1-step layout
    buf = EpisodeBuffer(env.spec, capacity=8, device=torch.device("cpu"))
    builder = EpisodeBuilder(env.spec, 2, torch.device("cpu"))
    step = env.reset()
    actions = torch.tensor([[0, 0], [0, 1]])
    record(builder, buf, step, actions, env.step(actions))
    assert buf.store.length[:2].tolist() == [1, 1] and buf.store.reward[:2, 0].tolist() == [1.0, 0.0]
    spec = EnvSpec(n_agents=1, obs_shapes={"vector": (1,)}, state_dim=1, action_kind="discrete", n_actions=2,
                   episode_limit=4)
    buf = EpisodeBuffer(spec, capacity=4, device=torch.device("cpu"))
    builder = EpisodeBuilder(spec, 1, torch.device("cpu"))
    buf.store.length[:2] = torch.tensor([2, 4])
    buf.size = 2
    filled = buf.sample(16).filled  # [T, E]
    assert filled.shape[0] == 4 and set(filled.sum(0).tolist()) <= {2, 4}


def test_buffer_refuses_an_episode_longer_than_the_limit():
    env = MatrixGame(1, payoff=[[1.0, 0.0], [0.0, 1.0]], episode_limit=3)
    spec = EnvSpec(n_agents=2, obs_shapes={"vector": (1,)}, state_dim=1, action_kind="discrete", n_actions=2,
                   episode_limit=2)  # claims 2, plays 3
    buf = EpisodeBuffer(spec, capacity=4, device=torch.device("cpu"))
    builder = EpisodeBuilder(spec, 1, torch.device("cpu"))
    step = env.reset()
    actions = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(EnvError, match="ran past the env's episode_limit"):
        for _ in range(3):
            nxt = env.step(actions)
            record(builder, buf, step, actions, nxt)
            step = nxt


def test_buffer_too_large_for_memory_is_refused_before_allocating():
    assert 10**9 * episode_bytes(Spread(1).spec) > 2**40  # > 1 TiB: allocating would crash, not raise
    with pytest.raises(ConfigError, match=r"replay buffer of 1000000000 episodes .* needs .* GiB .* lower "
                                          r"q\.buffer_episodes"):
        small_learner("q.buffer_episodes=1000000000")


# -- targets ------------------------------------------------------------------------------------

def forward_view_lambda_return(r: list[float], q_next: list[float], terminal: bool, gamma: float,
                               lam: float) -> list[float]:
    """Reference: G_t = (1 - lam) sum_n lam^(n-1) G_t^(n) + lam^(L-t-1) G_t^(L-t), n-step returns
    G_t^(n) = sum_{k<n} gamma^k r_{t+k} + gamma^n Q_{t+n} (no bootstrap past a termination)."""
    length = len(r)
    out = []
    for t in range(length):
        def n_step(n: int, t: int = t) -> float:
            boot = 0.0 if (terminal and t + n == length) else gamma**n * q_next[t + n - 1]
            return sum(gamma**k * r[t + k] for k in range(n)) + boot
        horizon = length - t
        g = sum((1 - lam) * lam ** (n - 1) * n_step(n) for n in range(1, horizon))
        out.append(g + lam ** (horizon - 1) * n_step(horizon))
    return out


@pytest.mark.parametrize("lam", [0.0, 0.6, 1.0])
def test_lambda_targets_equal_the_forward_view_with_padding(lam):
    gen = torch.Generator().manual_seed(0)
    lengths, terminal = [5, 3, 1], [True, False, False]
    t_max, gamma = 5, 0.9
    reward = torch.randn(t_max, 3, 1, generator=gen)
    next_q = torch.randn(t_max, 3, 2, generator=gen)  # K = 2 outputs (e.g. independent agents)
    steps = torch.arange(t_max)[:, None]
    length = torch.tensor(lengths)
    terminated = (steps == length - 1) & torch.tensor(terminal)  # [T, B]
    last = (steps == length - 1)[..., None]
    y = lambda_targets(reward, next_q, terminated[..., None], last, gamma, lam)
    for b, n in enumerate(lengths):
        for k in range(2):
            ref = forward_view_lambda_return(reward[:n, b, 0].tolist(), next_q[:n, b, k].tolist(), terminal[b],
                                             gamma, lam)
            assert torch.allclose(y[:n, b, k], torch.tensor(ref), atol=1e-5)


# -- mixers -------------------------------------------------------------------------------------

def test_qmix_equals_a_per_sample_reference():
    mixer = QMIX(load_config(None, Q), SPEC)
    q, state = torch.randn(2, 3, 3), torch.randn(2, 3, 14)
    out = mixer(q, state)  # [2, 3, 1]
    for i in range(2):
        for j in range(3):
            s = state[i, j]
            w1 = mixer.hyper_w1(s).abs().view(3, -1)
            h = torch.nn.functional.elu(q[i, j] @ w1 + mixer.hyper_b1(s))
            ref = h @ mixer.hyper_w2(s).abs() + mixer.value(s)
            assert torch.allclose(out[i, j], ref, atol=1e-5)


def test_qatten_equals_a_per_head_reference_over_the_agents_state_slices():
    mixer = Qatten(load_config(None, [*Q, "q.attention_heads=2"]), SPEC)
    q, state = torch.randn(4, 3), torch.randn(4, 14)
    out = mixer(q, state)  # [4, 1]
    for i in range(4):
        s = state[i]
        units = s[:12].view(3, 4)  # agent a: state[4a : 4a + 4]
        keys = mixer.key(units).view(3, 2, -1)
        queries = mixer.query(s).view(2, -1)
        total = mixer.bias(s)
        for h in range(2):
            attn = (keys[:, h] @ queries[h] / math.sqrt(mixer.embed)).softmax(0)
            total = total + mixer.head_w(s).abs()[h] * (attn * q[i]).sum()
        assert torch.allclose(out[i], total, atol=1e-5)
    assert mixer.regularizer(state, torch.ones(4)) > 0


# -- acting -------------------------------------------------------------------------------------

def test_agent_acts_only_on_available_actions_greedy_or_exploring():
    agent = QAgent(SPEC, load_config(None, Q).model)
    avail = torch.zeros(1, 256, 3, 5, dtype=torch.bool)
    avail[..., 1] = avail[..., 3] = True
    q, _ = agent({"vector": torch.randn(1, 256, 3, 4)}, avail)
    agent.epsilon = 1.0
    act, logp = agent.sample(q[0])
    assert set(act.unique().tolist()) == {1, 3}
    assert torch.allclose(logp.exp(), torch.full_like(logp, 0.5))
    greedy, logp = agent.sample(q[0], deterministic=True)
    assert torch.equal(greedy, q[0].argmax(-1)) and set(greedy.unique().tolist()) <= {1, 3}
    assert (logp == 0).all()


def test_epsilon_is_linear_in_env_steps():
    learner, _ = small_learner("q.epsilon_start=1.0", "q.epsilon_finish=0.1", "q.epsilon_anneal_steps=1000")
    for steps, eps in ((0, 1.0), (500, 0.55), (1000, 0.1), (5000, 0.1)):
        learner.env_steps = steps
        assert learner.epsilon == pytest.approx(eps)


# -- refusals -----------------------------------------------------------------------------------

def test_incompatible_choices_are_refused_at_config_load():
    with pytest.raises(ConfigError, match="credit.name: 'vdn' needs architecture ctde"):
        load_config(None, ["algorithm=q", "credit.name=vdn", "architecture=decentralized"])
    with pytest.raises(ConfigError, match="credit.name: 'shared' does not work with algorithm 'q'; allowed: .*qmix"):
        load_config(None, ["algorithm=q"])
    with pytest.raises(ConfigError, match="q.batch_episodes: 64 is more than the replay buffer holds"):
        load_config(None, [*Q, "q.batch_episodes=64", "q.buffer_episodes=32"])
    assert load_config(None, ["algorithm=q", "credit.name=iql", "architecture=decentralized"])


class _NoStateEnv:
    """Just enough of a VecEnv to build a learner: its spec has no global state."""

    spec = EnvSpec(n_agents=2, obs_shapes={"vector": (3,)}, state_dim=0, action_kind="discrete", n_actions=2,
                   episode_limit=5)
    num_envs, device = 2, torch.device("cpu")


@pytest.mark.parametrize("credit", ["qmix", "qatten"])
def test_state_mixers_refuse_an_env_without_state(credit):
    cfg = load_config(None, ["algorithm=q", f"credit.name={credit}"])
    with pytest.raises(ConfigError, match=f"credit '{credit}' conditions its mixing on the global state"):
        QLearner(cfg, _NoStateEnv().spec, torch.device("cpu"))


def test_qatten_refuses_a_state_without_per_agent_slices():
    cfg = load_config(None, ["algorithm=q", "credit.name=qatten"])
    with pytest.raises(ConfigError, match="no per-agent state slice .*agent_state_dim=0"):
        QLearner(cfg, TwoStep(2).spec, torch.device("cpu"))


def test_continuous_actions_are_refused():
    cfg = load_config(None, [*Q, "task.params.continuous=true"])
    with pytest.raises(ConfigError, match="need discrete actions"):
        build_learner(cfg, make_env(cfg.task))


# -- checkpoint state ---------------------------------------------------------------------------

def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_state_dict_restores_networks_optimizer_counters_and_replay():
    a, runner = small_learner()
    for _ in range(6):
        train_step(a, runner)
    assert a.updates > 0 and a.buffer.size > 4
    b, _ = small_learner()
    b.load_state_dict(_roundtrip(a.state_dict()))
    assert (b.env_steps, b.updates, b.epsilon) == (a.env_steps, a.updates, a.epsilon)
    assert (b.buffer.size, b.buffer.ptr, b.buffer.episodes) == (a.buffer.size, a.buffer.ptr, a.buffer.episodes)
    for name, x in a.buffer.store.tensors().items():
        y = getattr(b.buffer.store, name)
        assert all(torch.equal(x[m], y[m]) for m in x) if isinstance(x, dict) else torch.equal(x, y)
    for net in ("agent", "target_agent", "mixer", "target_mixer"):
        for p, r in zip(getattr(a, net).parameters(), getattr(b, net).parameters(), strict=True):
            assert torch.equal(p, r)
    assert b.opt.state_dict()["state"][0]["step"] == a.opt.state_dict()["state"][0]["step"]
    # The next update is identical: same sampled episodes, same step.
    torch.manual_seed(5)
    ma = a.gradient_step(a.buffer.sample(4))
    torch.manual_seed(5)
    mb = b.gradient_step(b.buffer.sample(4))
    assert ma == mb


def test_buffer_can_stay_out_of_checkpoints_and_capacity_must_match():
    a, runner = small_learner("q.checkpoint_buffer=false")
    train_step(a, runner)
    state = a.state_dict()
    assert state["buffer"] is None
    b, _ = small_learner()
    b.load_state_dict(state)
    assert b.buffer.size == 0 and b.env_steps == a.env_steps
    full = small_learner()[0].state_dict()
    with pytest.raises(CheckpointError, match="resume with q.buffer_episodes=64"):
        small_learner("q.buffer_episodes=32")[0].load_state_dict(full)


# -- every combination runs -----------------------------------------------------------------------

@pytest.mark.parametrize("recurrent", [False, True], ids=["mlp", "gru"])
@pytest.mark.parametrize("credit", ["iql", "vdn", "qmix", "qatten"])
def test_every_mixer_and_agent_kind_trains(credit, recurrent):
    learner, runner = small_learner(f"credit.name={credit}", f"model.recurrent={recurrent}", "q.td_lambda=0.5",
                            "q.double_q=false", "q.standardize_rewards=true")
    for _ in range(3):
        metrics = train_step(learner, runner)
    assert learner.updates >= 1 and all(math.isfinite(v) for v in metrics.values())
    assert metrics["buffer_episodes"] == learner.buffer.size > 0


def test_bootstrap_without_double_q_is_the_target_max():
    from accord.algos.q import bootstrap_utilities

    online, target = torch.randn(4, 3, 2, 5), torch.randn(4, 3, 2, 5)
    assert torch.equal(bootstrap_utilities(online, target, False), target.max(-1).values)
    pick = online.argmax(-1, keepdim=True)
    assert torch.equal(bootstrap_utilities(online, target, True), target.gather(-1, pick).squeeze(-1))
