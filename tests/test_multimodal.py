"""Multimodal agents (docs/multimodal.md): the built-in task, encoders, fusion, ablation, streams at
different rates, a user's Dict-observation PettingZoo env, export parity, and the bad-input refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from accord import cli
from accord.config import ModelConfig, load_config
from accord.envs.pettingzoo import PettingZooVecEnv
from accord.envs.registry import make_env
from accord.envs.streams import StreamVecEnv
from accord.envs.tasks.multimodal import Multimodal, greedy_actions, reference_returns
from accord.errors import ConfigError
from accord.loop import train
from accord.memory import estimate
from accord.models.encoders import FUSION_DIM, ObsEncoder
from accord.policy import Policy
from accord.rollout import Rollout

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["task.num_envs=4", "ppo.rollout_len=10", "ppo.epochs=1", "train.total_env_steps=200",
        "train.log_interval=100", "credit.monitor.contribution_episodes=0"]


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def _train(tmp_path: Path, name: str, overrides: list[str]) -> Path:
    cfg = load_config(None, [f"runs_dir={tmp_path / 'runs'}", f"name={name}", "task.name=multimodal", *TINY,
                             *overrides])
    return train(cfg, progress=False).run.path


# -- the task -----------------------------------------------------------------------------------------


def test_task_layout_and_its_reference_policies():
    env = Multimodal(16)
    step = env.reset(seed=3)
    assert {m: (t.dtype, tuple(t.shape)) for m, t in step.obs.items()} == {
        "image": (torch.uint8, (16, 2, 3, 5, 5)), "text": (torch.int64, (16, 2, 4)),
        "vector": (torch.float32, (16, 2, 2))}
    assert (step.obs["image"] == 255).sum((-1, -2)).eq(1).all()  # one cell per landmark channel
    colour = step.obs["text"] - 7  # exactly one colour word, naming the agent's target
    assert ((colour >= 0).sum(-1) == 1).all() and torch.equal(colour.clamp_min(0).amax(-1), env.target)
    success = torch.zeros(16)
    for _ in range(env.spec.episode_limit):  # the scripted optimum reaches every target within 20 steps
        step = env.step(greedy_actions(env))
        success += step.info["success"]
    assert success.eq(1).all()
    ref = reference_returns(episodes=2048)
    assert ref["optimum"] > -1.0 > ref["centre"] > ref["random"]


# -- encoders, fusion, ablation -----------------------------------------------------------------------


def test_drop_modalities_removes_exactly_that_information():
    env = Multimodal(8)
    obs = env.reset(seed=0).obs
    enc = ObsEncoder(env.spec, ModelConfig(drop_modalities=["text"]))
    other_text = {**obs, "text": torch.flip(obs["text"], [0])}
    other_image = {**obs, "image": torch.flip(obs["image"], [0])}
    assert torch.equal(enc(obs), enc(other_text))
    assert not torch.equal(enc(obs), enc(other_image))
    with pytest.raises(ConfigError, match="drop_modalities: \\['audio'\\] not observed"):
        ObsEncoder(env.spec, ModelConfig(drop_modalities=["audio"]))


def test_text_encoder_reads_word_order_and_attention_fusion_weighs_modalities():
    env = Multimodal(4)
    obs = env.reset(seed=0).obs
    enc = ObsEncoder(env.spec, ModelConfig())
    text = enc.encoders["text"]
    with torch.no_grad():
        text.position.normal_()
    ids = torch.tensor([[7, 1, 2, 3]])
    assert not torch.allclose(text(ids), text(ids.flip(-1)))  # positions matter
    assert torch.equal(text(torch.zeros(1, 4, dtype=torch.long)), torch.zeros(1, 32))  # no text: zeros
    fused = ObsEncoder(env.spec, ModelConfig(fusion="attention"))
    out = fused(obs)
    assert fused.out_dim == FUSION_DIM and out.shape == (4, 2, FUSION_DIM)
    out.sum().backward()
    assert all(p.grad is not None for p in fused.fusion.parameters())


@pytest.mark.parametrize("overrides", [
    [],  # MAPPO
    ["architecture=decentralized", "model.fusion=attention", "model.recurrent=true"],  # IPPO, attention, GRU
    ["credit.name=counterfactual"],
    ["algorithm=q", "credit.name=qmix", "q.rollout_len=20", "q.batch_episodes=4", "q.buffer_episodes=16",
     "train.total_env_steps=160"],
], ids=["mappo", "ippo_attention_gru", "coma", "qmix"])
def test_every_learner_trains_and_evaluates_on_images_and_text(tmp_path, overrides):
    run = _train(tmp_path, "mm", overrides)
    policy = Policy.load(run)
    assert set(policy.spec.obs_shapes) == {"image", "text", "vector"}
    assert cli.run_captured(["eval", str(run), "--episodes", "4", "--runs-dir", str(tmp_path / "runs")])[0] == 0


def test_rollouts_keep_images_uint8_and_memory_is_reported():
    spec = Multimodal(1).spec
    ro = Rollout.allocate(spec, 20, 64, torch.device("cpu"))
    assert ro.obs["image"].dtype == torch.uint8 and ro.final_obs["image"].dtype == torch.uint8
    image_bytes = (2 * 20 + 1) * 64 * 2 * 3 * 5 * 5  # obs, final_obs and last_obs: one byte per pixel
    as_float = ro.nbytes() + 3 * image_bytes  # what float32 copies of the images would add
    assert ro.nbytes() >= image_bytes and ro.nbytes() < as_float
    cfg = load_config(None, ["task.name=multimodal", "task.num_envs=64", "ppo.rollout_len=20"])
    predicted = estimate(cfg, spec)["rollout"][1]  # the pre-allocation estimate counts images as uint8 too
    assert ro.nbytes() <= predicted


# -- streams at different rates -----------------------------------------------------------------------


def _stream_run(align: str, steps: int = 45) -> list:
    env = StreamVecEnv(Multimodal(4), {"image": (4, 0), "text": (1, 3)}, align)
    seen = [env.reset(seed=1)]
    for _ in range(steps):
        seen.append(env.step(torch.zeros(4, 2, dtype=torch.long)))
    return seen


def test_streams_hold_values_and_tell_their_age_and_availability():
    steps = _stream_run("age_mask")
    vec = torch.stack([s.obs["vector"] for s in steps])  # [T, B, N, 2 + 4]
    assert vec.shape[-1] == 2 + 4  # own position, then age(image, text), then available(image, text)
    age_image, avail_image = vec[..., 2] * 20, vec[..., 4]
    fresh = (age_image == 0) & (avail_image == 1)
    gaps = [np.diff(np.flatnonzero(fresh[1:, b, 0].numpy())) for b in range(4)]  # after reset's arrival
    assert all(set(g.tolist()) == {4} for g in gaps)  # the camera arrives every 4 steps, in every env
    images = torch.stack([s.obs["image"] for s in steps])
    for t in range(1, len(steps)):  # between arrivals the image is held; new episodes start empty
        start = steps[t].done
        held = ~fresh[t, :, 0] & ~start
        assert torch.equal(images[t][held], images[t - 1][held])
        gone = ~fresh[t, :, 0] & start
        assert (images[t][gone] == 0).all() and (avail_image[t][gone] == 0).all()
        assert (vec[t][gone][..., 2] == 1).all()  # age reads 1 while missing
    assert any((~fresh[t, :, 0] & steps[t].done).any() for t in range(1, len(steps)))  # the case above ran
    text_fresh = (vec[..., 3] == 0) & (vec[..., 5] == 1)
    gaps = np.concatenate([np.diff(np.flatnonzero(text_fresh[1:, b, 0].numpy())) for b in range(4)])
    assert gaps.min() >= 1 and gaps.max() <= 4 and len(set(gaps.tolist())) > 1  # irregular text


def test_naive_hold_keeps_the_last_episodes_values_silently():
    steps = _stream_run("hold")
    assert steps[0].obs["vector"].shape[-1] == 2  # no age or mask
    images = torch.stack([s.obs["image"] for s in steps])
    starts = [t for t in range(1, len(steps)) if steps[t].done.any()]
    assert starts and any((images[t] == images[t - 1]).all((-1, -2, -3, -4)).any() for t in starts)
    assert all((images[t] > 0).any((-1, -2, -3)).all() for t in range(len(steps)))  # never empty


def test_streams_from_the_config_and_their_errors(tmp_path):
    cfg = load_config(None, ["task.name=multimodal", "task.num_envs=2", "task.streams.image.every=4"])
    env = make_env(cfg.task)
    assert env.spec.obs_shapes["vector"] == (4,) and env.reset(seed=0).obs["vector"].shape == (2, 2, 4)
    code, _, err = cli.run_captured(["train", "task.name=multimodal", "task.streams.audio.every=2", *TINY,
                                     "--runs-dir", str(tmp_path)])
    assert code == 2 and err.strip().splitlines()[-1].startswith("error:") and "audio" in err


# -- a user's PettingZoo env with a Dict observation ---------------------------------------------------


def test_a_dict_observation_env_from_a_user_module_trains_through_the_adapter(tmp_path, examples):
    import courier

    vec = PettingZooVecEnv([courier.Courier] * 2)
    spec = vec.spec
    assert spec.obs_shapes == {"image": (2, 4, 4), "text": (8,), "vector": (3,)} and spec.vocab_size == 7
    step = vec.reset(seed=0)
    assert step.obs["image"].dtype == torch.uint8 and step.obs["image"].max() == 255
    text = step.obs["text"][0, 0].tolist()  # "go to a" / "go to b", one token per character, 0-padded
    assert "".join("abgot "[i - 1] for i in text if i) in ("go to a", "go to b") and text[7] == 0
    assert step.obs["vector"][0, 0, 2] == 0  # courier_0's shorter sensor vector is zero-padded
    runs = tmp_path / "runs"
    code, out, err = cli.run_captured(["train", "task.name=courier:Courier", "name=courier", *TINY[:-1],
                                       "--eval-episodes", "4", "--runs-dir", str(runs)])
    assert code == 0, err
    assert Policy.load(runs / "courier").spec.obs_shapes == spec.obs_shapes


# -- export --------------------------------------------------------------------------------------------


def test_export_of_a_multimodal_policy_passes_the_parity_check(tmp_path):
    pytest.importorskip("onnxruntime")
    from accord import export

    run = _train(tmp_path, "mm_export", ["model.fusion=attention"])
    res = export.export_run(run, tmp_path / "bundle", parity_obs=200, latency_calls=20)
    assert res.max_abs_diff <= 1e-5
    inputs = {i["name"]: i["dtype"] for i in res.manifest["agents"][0]["inputs"]}
    assert inputs["obs_image"] == "uint8" and inputs["obs_text"] == "int64" and inputs["obs_vector"] == "float32"


# -- bad input: one clear line, exit 2 ------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (["task.name=courier:Hum"], "unknown observation modality 'audio'"),
    (["task.name=courier:Courier", "task.params.float_image=true"], "must be a uint8 Box of rank 3"),
    (["task.name=courier:Courier", "task.params.long_text=true"], "over the limit of 8"),
    (["task.name=courier:Courier", "task.params.nan_sensor=true"], "NaN in obs['vector']"),
    (["task.name=multimodal", "model.drop_modalities=[audio]"], "not observed by this task"),
], ids=["unknown_modality", "float_image", "long_text", "nan_sensor", "drop_unknown"])
def test_bad_multimodal_input_is_one_error_line_and_exit_2(tmp_path, examples, overrides, message):
    code, _, err = cli.run_captured(["train", *overrides, *TINY, "--runs-dir", str(tmp_path)])
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("WARNING", "warning"))]
    assert code == 2, err
    assert "Traceback" not in err and lines[-1].startswith("error:") and message in lines[-1], err


def test_the_guard_refuses_token_ids_outside_the_vocabulary():
    from dataclasses import replace

    from accord.envs.guard import GuardedVecEnv
    from accord.errors import EnvError

    env = Multimodal(2)
    env.spec = replace(env.spec, vocab_size=5)  # the colour words (ids 7-9) fall outside
    with pytest.raises(EnvError, match=r"obs\['text'\] holds token ids from .* outside the vocabulary \[0, 5\)"):
        GuardedVecEnv(env).reset(seed=0)
