"""`accord export`: ONNX bundles that match torch, cost figures, refusals, and the numpy-only example."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from accord import cli, export  # noqa: E402
from accord.config import ModelConfig, build_config, load_config  # noqa: E402
from accord.envs.base import EnvSpec  # noqa: E402
from accord.evaluate import evaluate_run  # noqa: E402
from accord.loop import train  # noqa: E402
from accord.models.cost import flops_per_decision, macs_per_decision, param_count  # noqa: E402
from accord.policy import Policy  # noqa: E402
from accord.store import RunDir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["task.num_envs=4", "train.log_interval=100"]
PPO_SMALL = [*SMALL, "ppo.rollout_len=10", "ppo.epochs=1", "train.total_env_steps=200"]
VARIANTS = {
    "mappo_discrete": ["task.params.n_agents=2", *PPO_SMALL],
    "mappo_continuous": ["task.params.n_agents=2", "task.params.continuous=true", *PPO_SMALL],
    "ippo_own_weights": ["task.params.n_agents=3", "architecture=decentralized", "model.share_params=false",
                         *PPO_SMALL],
    "recurrent": ["task.params.n_agents=2", "model.recurrent=true", *PPO_SMALL],
    "qmix_foraging": ["algorithm=q", "credit.name=qmix", "task.name=foraging", "task.params.grid_size=6",
                      "task.params.episode_limit=20", *SMALL, "q.rollout_len=20", "q.batch_episodes=4",
                      "q.buffer_episodes=32", "train.total_env_steps=240"],
}


def _train(root: Path, name: str, overrides: list[str], config: str | None = None) -> Path:
    cfg = load_config(config, [f"runs_dir={root}", f"name={name}", *overrides])
    return train(cfg, progress=False).run.path


def _cli(*args: str) -> int:
    with pytest.raises(SystemExit) as e:
        cli.main(list(args))
    return int(e.value.code)


def _last_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


# -- cost ---------------------------------------------------------------------------------------------


def test_flops_and_params_of_an_mlp_by_hand():
    spec = EnvSpec(n_agents=3, obs_shapes={"vector": (10,)}, state_dim=0, action_kind="discrete", n_actions=5,
                   episode_limit=10)
    policy = Policy.build(spec, ModelConfig(hidden=16, layers=2))  # input = 10 obs + 3 agent-id
    macs = 13 * 16 + 16 * 16 + 16 * 5
    assert sum(macs_per_decision(policy, 1).values()) == macs
    assert flops_per_decision(policy, 1) == 2 * macs
    assert param_count(policy, 1) == 2 * 13 + (13 * 16 + 16) + (16 * 16 + 16) + (16 * 5 + 5)  # LayerNorm first
    own = Policy.build(spec, ModelConfig(hidden=16, layers=2, share_params=False, recurrent=True))
    gru = 3 * (16 * 16 + 16 * 16)
    assert flops_per_decision(own, 2) == 2 * (macs + gru)
    per_agent = (13 * 16 + 16) + (16 * 16 + 16) + (16 * 5 + 5)  # one agent's slice of [N, in, out] weights
    assert param_count(own, 2) == 2 * 13 + per_agent + 3 * 16 * (16 + 16 + 2)  # GRU: W_ih, W_hh, 2 biases
    assert param_count(own, 2) < sum(p.numel() for p in own.actor.parameters())


def test_flops_of_an_image_encoder_from_conv_output_sizes():
    spec = EnvSpec(n_agents=1, obs_shapes={"image": (3, 8, 8)}, state_dim=0, action_kind="discrete",
                   n_actions=4, episode_limit=10)
    policy = Policy.build(spec, ModelConfig(hidden=8, layers=1, agent_id=False))
    conv = 16 * 4 * 4 * 3 * 9 + 32 * 2 * 2 * 16 * 9  # stride 2, padding 1: 8 -> 4 -> 2
    assert flops_per_decision(policy, 0) == 2 * (conv + 128 * 64 + 64 * 8 + 8 * 4)


# -- export of every policy kind ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_export_matches_torch(tmp_path, variant):
    run = _train(tmp_path / "runs", variant, VARIANTS[variant])
    parity_obs = 1000 if variant == "mappo_discrete" else 300
    res = export.export_run(run, tmp_path / "bundle", parity_obs=parity_obs, latency_calls=20)
    m = res.manifest
    assert res.max_abs_diff <= 1e-5
    policy = Policy.load(run)
    n, spec = policy.spec.n_agents, policy.spec
    assert [a["graph"] for a in m["agents"]] == [f"agent_{i}.onnx" for i in range(n)]
    for a in m["agents"]:
        assert (res.out / a["graph"]).is_file()
        assert a["parity"]["observations"] == parity_obs and a["params"] > 0 and a["flops"] > 0
        assert a["latency"]["onnxruntime"]["p50_us"] > 0 and a["latency"]["torch"]["p99_us"] > 0
        outs = [o["name"] for o in a["outputs"]]
        ins = [i["name"] for i in a["inputs"]]
        assert ins[0] == "obs_vector"
        assert ("h_in" in ins) == ("h_out" in outs) == (variant == "recurrent")
        assert ("avail" in ins) == (spec.action_kind == "discrete")
        assert outs[0] == {"qmix_foraging": "q", "mappo_continuous": "mean"}.get(variant, "logits")
    assert m["source"]["checkpoint_sha256"] == export._sha256(Path(m["source"]["checkpoint"]))
    assert m["task"]["name"] == ("foraging" if variant == "qmix_foraging" else "spread")
    assert json.loads((res.out / "parity.json").read_text())["max_abs_diff"] == res.max_abs_diff
    if variant == "mappo_continuous":
        assert m["action"] == {"kind": "continuous", "dim": 2, "low": -1.0, "high": 1.0}
    if variant == "ippo_own_weights":  # each graph carries its own agent's weight slice, and only that
        graphs = [onnx.load(str(res.out / f"agent_{i}.onnx")).graph for i in range(n)]
        inits = [[numpy_helper.to_array(t) for t in g.initializer] for g in graphs]
        assert [sum(a.size for a in w) for w in inits] == [a["params"] for a in m["agents"]]
        big = [max(w, key=lambda a: a.size) for w in inits]
        assert big[0].shape == big[1].shape and not np.allclose(big[0], big[1])
    # Greedy actions from onnxruntime equal the torch policy's, agent by agent, on a fresh batch.
    import onnxruntime as ort

    rec = export.record_inputs(policy, build_config(RunDir(run).load_config()).task, 64, seed=7)
    for i in range(n):
        sess = ort.InferenceSession(str(res.out / f"agent_{i}.onnx"), providers=["CPUExecutionProvider"])
        got = sess.run(None, rec[i])[0]
        obs = {"vector": torch.from_numpy(rec[i]["obs_vector"])}
        avail = torch.from_numpy(rec[i]["avail"]) if "avail" in rec[i] else None
        state = torch.from_numpy(rec[i]["h_in"]) if "h_in" in rec[i] else None
        act, _ = policy.agent(i).act(obs, avail, state)
        if spec.action_kind == "discrete":
            assert np.array_equal(got.argmax(-1), act.numpy())
        else:
            np.testing.assert_allclose(np.clip(got, -1, 1), act.numpy(), atol=1e-5)


def test_cli_export_prints_table_and_writes_bundle(tmp_path, capsys):
    run = _train(tmp_path / "runs", "cli", VARIANTS["mappo_discrete"])
    out = tmp_path / "bundle"
    assert _cli("export", "cli", "--root", str(tmp_path / "runs"), "--out", str(out), "--parity-obs", "100",
                "--latency-calls", "20") == 0
    text = capsys.readouterr().out
    assert "FLOPs/decision" in text and "ort p50 us" in text and "parity: max abs diff" in text
    assert {p.name for p in out.iterdir()} == {"agent_0.onnx", "agent_1.onnx", "manifest.json", "parity.json"}
    # a non-empty --out is refused unless --force
    assert _cli("export", str(run), "--out", str(out), "--parity-obs", "50", "--latency-calls", "5") == 2
    line = _last_error(capsys)
    assert "not empty" in line and "--force" in line
    assert _cli("export", str(run), "--out", str(out), "--parity-obs", "50", "--latency-calls", "5",
                "--force") == 0
    assert json.loads((out / "manifest.json").read_text())["parity"]["observations_per_agent"] == 50
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or old folders left


# -- refusals -------------------------------------------------------------------------------------------


def test_bad_input_is_one_error_line_and_no_bundle(tmp_path, capsys, monkeypatch):
    root = tmp_path / "runs"
    run = _train(root, "bad", VARIANTS["mappo_discrete"])
    out = tmp_path / "bundle"
    base = ["export", "bad", "--root", str(root), "--out", str(out), "--parity-obs", "50", "--latency-calls", "5"]

    assert _cli(*base, "--opset", "99") == 2
    assert "--opset 99 is not supported" in _last_error(capsys)

    (out / "x").parent.mkdir()
    (out / "x").write_text("keep me")
    assert _cli(*base) == 2
    assert "not empty" in _last_error(capsys) and (out / "x").read_text() == "keep me"
    (out / "x").unlink()

    # parity failure: onnxruntime's outputs perturbed beyond the tolerance -> refused, nothing written
    real = export.make_session

    class Perturbed:
        def __init__(self, path, threads=1):
            self.inner = real(path, threads)

        def run(self, names, feed):
            return [o + 1e-3 for o in self.inner.run(names, feed)]

    monkeypatch.setattr(export, "make_session", Perturbed)
    assert _cli(*base) == 2
    line = _last_error(capsys)
    assert "parity check failed" in line and "> tolerance 1e-05" in line
    assert list(out.iterdir()) == [] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(export, "make_session", real)

    ckpt = next((run / "checkpoints").glob("*.pt"))
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[:-10] + bytes(10))  # tampered: checksum mismatch
    assert _cli(*base) == 2
    assert "corrupt (checksum mismatch)" in _last_error(capsys)
    assert _cli(*base, "--checkpoint", ckpt.name) == 2
    assert "checksum mismatch" in _last_error(capsys)

    ckpt.unlink()
    assert _cli(*base) == 2
    assert "has no checkpoint to export" in _last_error(capsys)
    assert _cli("export", "nope", "--root", str(root), "--out", str(out)) == 2
    assert "no run 'nope'" in _last_error(capsys)
    assert list(out.iterdir()) == []


def test_check_parity_catches_a_perturbed_graph(tmp_path):
    run = _train(tmp_path / "runs", "perturb", VARIANTS["mappo_discrete"])
    res = export.export_run(run, tmp_path / "bundle", parity_obs=100, latency_calls=5)
    policy = Policy.load(run)
    graph = export.AgentGraph(policy, 0).eval()
    model = onnx.load(str(res.out / "agent_0.onnx"))
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(biggest).copy()
    arr += 0.05  # every weight of the largest layer
    biggest.CopyFrom(numpy_helper.from_array(arr, biggest.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    rec = export.record_inputs(policy, load_config(None, ["task.params.n_agents=2"]).task, 100)
    good = export.check_parity(export.make_session(res.out / "agent_0.onnx"), graph, rec[0])
    bad = export.check_parity(export.make_session(tmp_path / "bad.onnx"), graph, rec[0])
    assert good["max_abs_diff"] <= 1e-5 < bad["max_abs_diff"]


# -- the numpy + onnxruntime example on a raw PettingZoo env ----------------------------------------------


def test_onnx_example_matches_accord_eval_on_simple_spread(tmp_path):
    pytest.importorskip("mpe2")
    run = _train(tmp_path / "runs", "ss", ["task.num_envs=4", "runner.kind=sync", "train.total_env_steps=1000",
                                           "train.log_interval=500"],
                 config=str(ROOT / "configs/simple_spread_mappo.yaml"))
    bundle = tmp_path / "bundle"
    export.export_run(run, bundle, parity_obs=200, latency_calls=5)
    episodes = 8
    ev = evaluate_run(run, root=run.parent, episodes=episodes)["policy"]
    proc = subprocess.run([sys.executable, str(ROOT / "examples/onnx_team.py"), str(bundle), "--episodes",
                           str(episodes), "--json", "--check-imports"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["imported"] == []  # neither torch nor accord: numpy + onnxruntime + the env
    assert got["episodes"] == episodes and got["num_envs"] == 4
    assert got["return_mean"] == pytest.approx(ev["return_mean"], abs=1e-4)
