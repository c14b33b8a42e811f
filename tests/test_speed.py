"""The fast update path (docs/speed.md): shuffled env-step minibatches equal the sequence layout's
maths, compiled and eager updates agree, and a failing compile falls back to eager cleanly."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys

import pytest
import torch
from batches import random_batch

from accord.algos.ppo import PPO, Minibatch, _Nets, minibatches
from accord.compile import FIRST_CALLS, compile_seconds, compiled
from accord.config import load_config
from accord.envs.registry import make_env
from accord.errors import ConfigError
from accord.optim import clip_grad_norms

TINY = ["architecture=decentralized", "task.params.n_agents=2", "task.num_envs=4", "ppo.rollout_len=8",
        "model.hidden=16", "model.activation=tanh", "ppo.epochs=1", "ppo.value_norm=false"]


def _learner(overrides: list[str]) -> tuple[PPO, object]:
    cfg = load_config(None, TINY + overrides)
    spec = make_env(cfg.task).spec
    torch.manual_seed(0)
    return PPO(cfg, spec, torch.device("cpu")), random_batch(spec, 8, 4, seed=1, dead=0.2)


def _grads(learner: PPO, mb: Minibatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    for p in [*learner.actor.parameters(), *learner.critic.parameters()]:
        p.grad = None
    policy_loss, v_loss, entropy, _, _ = learner._minibatch_losses(mb)
    loss = policy_loss - 0.01 * entropy + 0.5 * v_loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in [*learner.actor.parameters(), *learner.critic.parameters()]]


def test_shuffled_env_steps_give_the_loss_and_gradient_of_the_sequence_layout():
    learner, batch = _learner(["train.compile=false"])
    learner.evaluate_critic(batch)
    g = torch.Generator().manual_seed(3)
    adv, targets = torch.randn(8, 4, 2, generator=g), torch.randn(8, 4, 2, generator=g)
    # The old maths: one pass over the [T, B, N] layout (what env-split minibatches computed).
    whole = Minibatch(batch.obs, batch.avail, batch.actions, batch.logp, batch.values, batch.state,
                      batch.agent_mask.float(), adv, targets)
    flat = next(minibatches(batch, batch.logp, adv, targets, 1, recurrent=False))  # [T * B] shuffled
    assert flat.adv.shape == (32, 2)
    loss_ref, grads_ref = _grads(learner, whole)
    loss, grads = _grads(learner, flat)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_minibatches_partition_the_env_steps_once_per_epoch():
    _, batch = _learner(["train.compile=false"])
    ids = torch.arange(8 * 4 * 2, dtype=torch.float32).view(8, 4, 2)
    for recurrent in (False, True):
        if recurrent:
            batch.h_actor = batch.h_critic = torch.zeros(4, 2, 16)
        parts = list(minibatches(batch, batch.logp, ids, ids, 4, recurrent))
        assert len(parts) == 4
        seen = torch.cat([mb.adv.reshape(-1) for mb in parts]).sort().values
        torch.testing.assert_close(seen, ids.reshape(-1))
        assert all(torch.equal(mb.adv, mb.targets) for mb in parts)  # fields stay aligned


@pytest.mark.slow  # compiles the loss (tens of seconds on one core); not a learning test
@pytest.mark.parametrize("activation", ["tanh", "relu"])  # relu: compiled as (x + |x|) / 2 (models/layers.py)
def test_compiled_update_gives_the_eager_parameters(activation):
    eager, batch = _learner(["train.compile=false", "ppo.minibatches=2", f"model.activation={activation}"])
    fast, _ = _learner(["train.compile=true", "ppo.minibatches=2", f"model.activation={activation}"])
    fast.actor.load_state_dict(eager.actor.state_dict())
    fast.critic.load_state_dict(eager.critic.state_dict())
    torch.manual_seed(5)
    eager.update(copy.deepcopy(batch))
    torch.manual_seed(5)  # the same minibatch order
    fast.update(copy.deepcopy(batch))
    assert fast._fused_step is not None  # feed-forward: the whole minibatch step is one compiled program
    _assert_same_state(eager, fast, rtol=1e-4, atol=1e-5)
    # A lowered learning rate (the non-finite guard halves it) is data to the compiled step: no recompile.
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for learner in (eager, fast):
        for opt in (learner.actor_opt, learner.critic_opt):
            opt.param_groups[0]["lr"] *= 0.5
        torch.manual_seed(6)
        learner.update(copy.deepcopy(batch))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    _assert_same_state(eager, fast, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(eager.actor.state_dict().values(),
                                                   _learner(["train.compile=false"])[0].actor.state_dict().values(),
                                                   strict=True))  # the update did move the weights


def _assert_same_state(eager: PPO, fast: PPO, rtol: float, atol: float) -> None:
    """The same weights and the same Adam state (moments and step counts: what a checkpoint holds)."""
    for name in ("actor", "critic", "actor_opt", "critic_opt"):
        a, b = getattr(eager, name).state_dict(), getattr(fast, name).state_dict()
        if name.endswith("opt"):
            a, b = a["state"], b["state"]
            assert a.keys() == b.keys() and a, name
            a = {f"{i}.{k}": v for i, s in a.items() for k, v in s.items()}
            b = {f"{i}.{k}": v for i, s in b.items() for k, v in s.items()}
        assert a.keys() == b.keys(), name
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=rtol, atol=atol, msg=f"{name}.{key}")


# n-step advantages come from the critic's pass, detached inside torch.func's gradient as in autograd's.
@pytest.mark.parametrize("targets", [[], ["ppo.nstep=3", "ppo.value_norm=true", "ppo.target_tau=0.1"]],
                         ids=["gae", "nstep"])
def test_the_functional_minibatch_step_is_the_autograd_step(targets):
    """What ``train.compile`` compiles for feed-forward networks (torch.func gradients, accord.optim's
    clipping and Adam on the optimizers' state), run eagerly, against backward + torch's fused Adam."""
    settings = ["train.compile=false", "ppo.minibatches=2", "ppo.epochs=2", "ppo.max_grad_norm=0.05", *targets]
    eager, batch = _learner(settings)
    functional, _ = _learner(settings)
    functional._nets, functional._fused_step = _Nets(functional), functional._functional_step
    logs = []
    for learner in (eager, functional):
        torch.manual_seed(5)
        logs.append(learner.update(copy.deepcopy(batch)))
    _assert_same_state(eager, functional, rtol=1e-5, atol=1e-6)
    assert eager.actor_opt.state_dict()["state"][0]["step"] == 4  # 2 epochs x 2 minibatches
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "actor_grad_norm", "critic_grad_norm"):
        assert logs[1][key] == pytest.approx(logs[0][key], rel=1e-5, abs=1e-7), key
    assert logs[0]["actor_grad_norm"] > 0.05  # the clipping did act


def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@pytest.fixture
def broken_compiler(monkeypatch, tmp_path):
    """A C++ compiler that fails every build, and nothing compiled before to fall back on."""
    import torch._inductor.config as inductor

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    with inductor.patch({"cpp.cxx": (None, "false"), "fx_graph_cache": False}):
        yield
    torch._dynamo.reset()


def test_auto_falls_back_to_eager_with_one_warning(caplog, broken_compiler):
    fn = compiled(_double, "auto", "a test function")
    with caplog.at_level(logging.WARNING, logger="accord.compile"):
        torch.testing.assert_close(fn(torch.ones(3)), torch.full((3,), 2.0))
        torch.testing.assert_close(fn(torch.ones(3)), torch.full((3,), 2.0))
    warnings = [r for r in caplog.records if "running eager" in r.getMessage()]
    assert len(warnings) == 1 and "a test function" in warnings[0].getMessage()


def test_compile_true_fails_with_one_clear_error(broken_compiler):
    fn = compiled(_double, True, "a test function")
    with pytest.raises(ConfigError, match=r"train.compile=true: torch.compile failed on a test function"):
        fn(torch.ones(3))


class _Scale(torch.nn.Module):
    """A linear layer times a Python float: a module whose Python state can change."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = torch.nn.Linear(2, 2)
        self.factor = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.factor


def test_guards_built_with_dict_tags_still_see_a_changed_module():
    torch._dynamo.reset()
    module = _Scale()
    fn = compiled(module, True, "a test module")
    x = torch.ones(1, 2)
    with torch.no_grad():
        for _ in range(FIRST_CALLS + 2):  # past the calls whose guards use the dict tags
            torch.testing.assert_close(fn(x), module.inner(x) * 2.0)
        module.factor = 3.0  # a Python attribute of the outer module
        torch.testing.assert_close(fn(x), module.inner(x) * 3.0)
        module.inner.bias.add_(1.0)  # a parameter changed in place
        torch.testing.assert_close(fn(x), module.inner(x) * 3.0)
        module.inner = torch.nn.Linear(2, 2)  # a submodule replaced
        torch.testing.assert_close(fn(x), module.inner(x) * 3.0)


def test_shapes_programs_are_compiled_per_shape_value_and_run_without_guards():
    """What ``shapes`` (the fused collection step, PPO's minibatch step) gives and what it gives up: a
    program per value of ``shapes``, called with no check, so it must read no Python state that changes."""
    module = _Scale()
    fn = compiled(module.forward, True, "a test module", shapes=lambda x: x.shape)
    other = _Scale()  # the same code and shapes, other Python state: its own programs
    other.factor = 5.0
    x = torch.randn(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(fn(x), module.inner(x) * 2.0)
        torch.testing.assert_close(compiled(other.forward, True, "another", shapes=lambda x: x.shape)(x),
                                   other.inner(x) * 5.0)
        for shape in ((3, 2), (1, 2)):  # another shape value: its own program, right
            x = torch.randn(shape)
            torch.testing.assert_close(fn(x), module.inner(x) * 2.0)
        module.inner.bias.add_(1.0)  # tensors are data: seen
        torch.testing.assert_close(fn(x), module.inner(x) * 2.0)
        module.factor = 3.0  # a Python attribute is not checked: the program still multiplies by 2
        torch.testing.assert_close(fn(x), module.inner(x) * 2.0)


def test_a_later_compile_of_the_same_program_loads_it_from_inductors_cache(monkeypatch, tmp_path):
    """A second run (here: a second compile in one process) finds the first one's program on disk instead
    of compiling it again: the ahead-of-time path must key AOT autograd's cache without a per-run name."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    counts = torch._dynamo.utils.counters["aot_autograd"]
    x = torch.randn(4, 2)
    with torch.no_grad():
        for run in range(2):
            hits = counts["autograd_cache_hit"]
            module = _Scale()  # new weights: data, not part of the program
            fn = compiled(module.forward, True, "a test module", shapes=lambda x: x.shape)
            torch.testing.assert_close(fn(x), module.inner(x) * 2.0)
            assert counts["autograd_cache_hit"] == hits + run


def test_a_compile_in_a_new_cache_runs_no_isa_probe(monkeypatch, tmp_path):
    """Inductor's probes of the CPU's vector extensions (a test program built and loaded in a new process
    per probe) are skipped: the ISA comes from the CPU's flags, the widest one inductor knows."""
    from torch._inductor import cpu_vec_isa

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    probes: list[str] = []
    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", lambda isa, code: probes.append(str(isa)) or True)
    x = torch.randn(4, 2)
    module = _Scale()
    with torch.no_grad():
        torch.testing.assert_close(compiled(module.forward, True, "a test module", shapes=lambda x: x.shape)(x),
                                   module.inner(x) * 2.0)
    assert probes == []
    flags = cpu_vec_isa.x86_isa_checker()
    if "avx512" in flags:
        assert str(cpu_vec_isa.pick_vec_isa()) == "avx512" and cpu_vec_isa.pick_vec_isa().bit_width() == 512


def test_compile_time_is_counted_on_first_calls_only():
    """What a run reports as ``compile_s``: the first call of each program, ahead-of-time or guarded,
    where it is compiled; later calls run it and are not counted."""
    x = torch.randn(3, 2)
    for shapes in (None, lambda x: x.shape):
        fn = compiled(_Scale().forward, True, "a test module", shapes=shapes)
        with torch.no_grad():
            before = compile_seconds()
            fn(x)
            first = compile_seconds()
            for _ in range(FIRST_CALLS + 1):
                fn(x)
        assert first > before and compile_seconds() == first


@pytest.mark.slow  # compiles the spread step (seconds to tens of seconds on one core)
def test_a_run_reports_its_compile_time_apart_within_its_wall_time(tmp_path):
    from accord.loop import train
    from accord.store.metrics import MetricsLog

    for compile_step in (False, True):
        cfg = load_config(None, [*TINY, f"runs_dir={tmp_path}", f"task.params.compile={str(compile_step).lower()}",
                                 "train.total_env_steps=256", "train.log_interval=64", "eval.interval=0",
                                 "logging.tensorboard=false"])
        result = train(cfg, progress=False)
        records = [r for r in MetricsLog.read(result.run.path) if "wall_s" in r]
        assert [r["compile_s"] for r in records] == sorted(r["compile_s"] for r in records)
        assert records[-1]["compile_s"] == pytest.approx(result.compile_s, abs=1e-3)
        assert (0 < result.compile_s < result.wall_s) if compile_step else result.compile_s == 0


def _breaks(x: torch.Tensor) -> torch.Tensor:
    torch._dynamo.graph_break()
    return x * 2.0


def test_shapes_falls_back_to_the_guarded_compile_where_dynamo_cannot_compile_whole(caplog):
    fn = compiled(_breaks, True, "a function with a graph break", shapes=lambda x: ())
    x = torch.randn(2)
    with caplog.at_level(logging.INFO, logger="accord.compile"):
        for _ in range(2):
            torch.testing.assert_close(fn(x), x * 2.0)
    assert sum("compiling with guards" in r.message for r in caplog.records) == 1


def test_false_stays_eager_and_the_key_is_validated():
    assert compiled(_double, False, "x") is _double
    assert load_config(None).train.compile is False
    with pytest.raises(ConfigError, match="train.compile"):
        load_config(None, ["train.compile=sometimes"])


@pytest.mark.slow  # compiles the spread step (seconds to tens of seconds on one core)
def test_compiled_spread_step_follows_the_eager_trajectory():
    from accord.envs.tasks.spread import Spread

    eager, fast = Spread(8, n_agents=3), Spread(8, n_agents=3, compile=True)
    a, b = eager.reset(seed=2), fast.reset(seed=2)
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for _ in range(60):  # over two episode ends: the autoreset stays eager
            act = torch.randint(0, 5, (8, 3), generator=g)
            a, b = eager.step(act), fast.step(act)
            assert torch.equal(a.truncated, b.truncated)
            for x, y in ((a.obs["vector"], b.obs["vector"]), (a.state, b.state), (a.reward, b.reward),
                         (a.agent_reward, b.agent_reward)):
                torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="task.params.compile must be true, false or auto"):
        Spread(2, compile="yes")


@pytest.mark.slow  # compiles the acting step
def test_compiled_acting_step_draws_the_eager_actions():
    from accord.runners.sync import SyncRunner

    cfg = load_config(None, TINY + ["train.compile=false"])
    env = make_env(cfg.task)
    learner = PPO(cfg, env.spec, torch.device("cpu"))
    batches = []
    for setting in (False, True):
        torch.manual_seed(7)  # the Gumbel noise comes from the global generator: the same draws
        runner = SyncRunner(make_env(cfg.task), learner.policy, 8, seed=3, compile=setting)
        batches.append(copy.deepcopy(runner.collect()))
    eager, fast = batches
    assert torch.equal(eager.actions, fast.actions)
    torch.testing.assert_close(fast.logp, eager.logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.obs["vector"], eager.obs["vector"])


def test_clip_grad_norms_matches_torch_clipping_each_group_bit_for_bit():
    """One norm kernel over several groups gives torch's per-group clip_grad_norm_, norms and gradients."""
    torch.manual_seed(0)
    nets = [torch.nn.Linear(5, 7), torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))]
    unused = torch.nn.Parameter(torch.zeros(2))  # no gradient: skipped, as torch skips it
    for scale in (10.0, 1e-3):  # clipped, and under the limit (left as it is)
        groups = [list(nets[0].parameters()) + [unused], list(nets[1].parameters()), []]
        for p in groups[0][:-1] + groups[1]:
            p.grad = torch.randn_like(p) * scale
        expected_grads = [p.grad.clone() for g in groups for p in g if p.grad is not None]
        ref = [p.detach().clone().requires_grad_() for p in groups[0][:-1] + groups[1]]
        for r, g in zip(ref, expected_grads, strict=True):
            r.grad = g
        want = [torch.nn.utils.clip_grad_norm_(ref[:2], 0.5), torch.nn.utils.clip_grad_norm_(ref[2:], 0.5)]
        got = clip_grad_norms(groups, 0.5)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and float(got[2]) == 0.0
        assert all(torch.equal(p.grad, r.grad) for p, r in zip(groups[0][:-1] + groups[1], ref, strict=True))
        assert unused.grad is None
    assert float(want[0]) < 0.5  # the second round was under the limit


_REUSE = """
import ctypes, resource, statistics, torch
from accord.memory import keep_freed_memory
torch.set_num_threads(1)
x, w1, w2 = torch.randn(6192, 18), torch.randn(18, 64), torch.randn(64, 64)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def iteration():  # a critic's pass over a batch: 1.5 MiB activations, made and freed every time
    before = faults()
    h = (x @ w1).tanh()
    float(((h @ w2).tanh() * 2).sum())
    return faults() - before
libc = ctypes.CDLL(None)  # glibc returning memory: blocks of 128 KiB and up mapped anew each time
libc.mallopt(-3, 128 << 10)  # M_MMAP_THRESHOLD
libc.mallopt(-1, 128 << 10)  # M_TRIM_THRESHOLD
returned = statistics.median(iteration() for _ in range(20))
took = keep_freed_memory()
kept = statistics.median(iteration() for _ in range(20))
print(took, returned, kept)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings (Linux only)")
def test_freed_tensor_memory_is_reused_without_page_faults():
    """``train()`` keeps freed memory in the process (accord/memory.py): tensors made again take no new
    pages from the OS. When glibc returns freed blocks (its behaviour for blocks over its adaptive
    thresholds), every iteration faults its activations' pages back in."""
    took, returned, kept = subprocess.run([sys.executable, "-c", _REUSE], capture_output=True, text=True,
                                          check=True).stdout.split()  # the median iteration's page faults
    assert took == "True"
    assert float(returned) > 300 and float(kept) == 0


def test_an_evaluation_summary_imports_no_scipy_stats():
    """A training run's evaluations need only Student-t quantiles (scipy.special); scipy.stats would add
    a third of a second to every run that evaluates."""
    code = ("import sys, numpy as np; from accord.eval.protocol import summarize; "
            "out = summarize(np.array([1.0, 2.0, 4.0]), None); "
            "assert round(out['ci'][1], 6) == 6.127916, out; print('scipy.stats' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_adam_step_is_torch_adams_step_bit_for_bit():
    """accord.optim.adam_step (the fused kernel without torch.optim's per-call Python) moves the weights
    and the optimizer's state exactly as ``opt.step()`` does, over steps with a parameter left out."""
    from accord.optim import adam_step

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.Adam(n.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-5, fused=True) for n in nets]
    for i in range(4):
        x = torch.randn(11, 5)
        for net, opt, step in zip(nets, opts, (lambda o: o.step(), adam_step), strict=True):
            net.zero_grad(set_to_none=True)
            net(x).square().sum().backward()
            if i == 2:
                net[1].bias.grad = None  # no gradient this step: the parameter and its state stay
            step(opt)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(opts[0].state.values(), opts[1].state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
