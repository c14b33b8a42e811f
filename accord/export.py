"""The deployment bundle: a run's policy as one ONNX graph per agent, a manifest, parity and cost figures.

``export_run(run, out)`` (``accord export RUN --out DIR``) writes::

    DIR/agent_<i>.onnx   agent i alone: its own observation (+ mask, + recurrent state) -> action parameters
    DIR/manifest.json    spaces, input/output names, how to act, task config, source checksum, figures
    DIR/parity.json      onnxruntime vs torch on observations recorded by playing the policy in its task

Each graph is :meth:`accord.policy.AgentPolicy.params` traced through :class:`AgentGraph` with the
TorchScript exporter (``torch.onnx.export(..., dynamo=False)``): with torch 2.13 it exports every policy
accord builds at opsets 13-20 and gives a dynamic batch axis, while the torch.export-based exporter
rewrites the graph at its own opset (18+) and its down-conversion produced invalid graphs here.

Graph inputs, batch axis ``B`` dynamic: ``obs_vector`` float32 ``[B, D]``, ``obs_image`` uint8
``[B, C, H, W]``, ``obs_text`` int64 ``[B, L]`` (the task's modalities only); ``avail`` bool ``[B, A]``
for discrete actions (True = available); ``h_in`` float32 ``[B, H]`` for recurrent policies (zeros at the
first step of an episode, else the previous ``h_out``). Outputs: ``logits`` (PPO, discrete), ``q``
(value-based) or ``mean`` + ``log_std`` (continuous) ``[B, A]``, and ``h_out`` ``[B, H]`` when recurrent.
Unavailable actions come out as -1e9, so ``argmax`` respects the mask.

The bundle is built in a temporary folder next to ``out`` and renamed into place only after every
graph passed its parity check, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import accord
from accord.config import build_config
from accord.envs.base import OBS_DTYPES
from accord.envs.registry import raw_env
from accord.errors import ExportError
from accord.models.cost import flops_per_decision, latency, macs_per_decision, param_count
from accord.policy import Policy, spec_to_dict
from accord.store import RunDir, list_checkpoints, load_checkpoint, resolve_checkpoint, verify_checkpoint

MANIFEST_FORMAT = 1
DEFAULT_OPSET = 17
MIN_OPSET = 13  # einsum (per-agent weights) needs 12; 13 is the oldest opset we test
MANIFEST_FILE, PARITY_FILE = "manifest.json", "parity.json"
EVAL_SEED = 12345  # accord.evaluate's default: `accord eval` and examples/onnx_team.py play these seeds
MASK_VALUE = -1e9
MASK_SEMANTICS = ("avail[b, a] True = action a is available. The graph fills unavailable actions' logits/Q-values "
                  "with -1e9, so argmax (and softmax) never pick them. Feed all True if the env has no mask.")
FLOPS_CONVENTION = ("FLOPs = 2 x multiply-accumulates of one decision at batch 1: Linear/AgentLinear in*out, "
                    "GRUCell 3*(in*H + H*H), Conv2d out_c*H_out*W_out*in_c/groups*kH*kW, Embedding 0; biases, "
                    "activations, LayerNorm and masking are not counted (accord.models.cost).")
LATENCY_NOTE = ("Wall time of one call at batch 1 on one CPU thread (onnxruntime intra_op_num_threads=1, "
                "torch.set_num_threads(1)), after warm-up, in microseconds; this machine, this moment.")


def supported_opsets() -> range:
    """Opsets the TorchScript exporter and the installed onnx both support (and that we test from)."""
    import onnx
    from torch.onnx import _constants

    top = min(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET),
              onnx.defs.onnx_opset_version())
    return range(MIN_OPSET, top + 1)


def _require_packages() -> None:
    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"export needs {' and '.join(missing)}; install them with: pip install 'accord[export]'")


# -- the graph ------------------------------------------------------------------------------------------


class AgentGraph(nn.Module):
    """Agent ``index``'s policy as a module of plain tensors, in the order of :meth:`input_names`."""

    def __init__(self, policy: Policy, index: int) -> None:
        super().__init__()
        self.actor = policy.actor  # registered so .eval()/parameters() see the weights
        self.view = policy.agent(index)
        self.spec, self.hidden = policy.spec, policy.hidden
        self.modalities = sorted(self.spec.obs_shapes)
        self.discrete = self.spec.action_kind == "discrete"

    def input_names(self) -> list[str]:
        return [f"obs_{m}" for m in self.modalities] + (["avail"] if self.discrete else []) + \
            (["h_in"] if self.hidden else [])

    def output_names(self) -> list[str]:
        head = ["q"] if self.view.team.value_based else ["logits"] if self.discrete else ["mean", "log_std"]
        return head + (["h_out"] if self.hidden else [])

    def inputs_spec(self) -> list[dict[str, Any]]:
        """Name, dtype and shape (``"batch"`` first) of every input."""
        dtype = {"vector": "float32", "image": "uint8", "text": "int64"}
        out = [{"name": f"obs_{m}", "dtype": dtype[m], "shape": ["batch", *self.spec.obs_shapes[m]]}
               for m in self.modalities]
        if self.discrete:
            out.append({"name": "avail", "dtype": "bool", "shape": ["batch", self.spec.n_actions]})
        if self.hidden:
            out.append({"name": "h_in", "dtype": "float32", "shape": ["batch", self.hidden]})
        return out

    def outputs_spec(self) -> list[dict[str, Any]]:
        names = self.output_names()
        return [{"name": n, "dtype": "float32",
                 "shape": ["batch", self.hidden if n == "h_out" else self.spec.n_actions]} for n in names]

    def dummy_inputs(self, batch: int = 2) -> tuple[Tensor, ...]:
        obs = [torch.zeros(batch, *self.spec.obs_shapes[m], dtype=OBS_DTYPES[m]) for m in self.modalities]
        extra = [torch.ones(batch, self.spec.n_actions, dtype=torch.bool)] if self.discrete else []
        extra += [torch.zeros(batch, self.hidden)] if self.hidden else []
        return (*obs, *extra)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        k = len(self.modalities)
        obs = dict(zip(self.modalities, inputs[:k], strict=True))
        rest = list(inputs[k:])
        first = inputs[0]
        avail = rest.pop(0) if self.discrete else torch.zeros_like(first.reshape(first.shape[0], -1)[:, :0],
                                                                    dtype=torch.bool)
        h = rest.pop(0) if self.hidden else None
        # h_in zeros start an episode, so the graph needs no `starts` input: zeroing is what starts does.
        starts = torch.zeros_like(first.reshape(first.shape[0], -1)[:, 0], dtype=torch.bool)
        params, h = self.view.params(obs, avail, h, starts)
        outs: list[Tensor] = [params]
        if not self.discrete:
            outs.append(self.actor.log_std.expand_as(params))
        if h is not None:
            outs.append(h)
        return tuple(outs)


def _export_graph(graph: AgentGraph, path: Path, opset: int) -> None:
    names_in, names_out = graph.input_names(), graph.output_names()
    axes = {n: {0: "batch"} for n in names_in + names_out}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(graph, graph.dummy_inputs(), str(path), input_names=names_in, output_names=names_out,
                          dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)


def make_session(path: str | Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session on ``threads`` intra-op threads (1: the latency figures' setting)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# -- recorded observations, parity, latency -----------------------------------------------------------


def levels(policy: Policy) -> dict[str, Policy]:
    """The bundle's graphs per agent, by file prefix: ``agent`` for a flat policy; ``manager`` and
    ``agent`` (the worker, sub-goal appended to its observation) for a hierarchical one."""
    from accord.hierarchy import HierarchicalPolicy

    if isinstance(policy, HierarchicalPolicy):
        return {"manager": policy.manager, "agent": policy.worker}
    return {"agent": policy}


def _level_inputs(policy: Policy, step: Any, h: Tensor | None, h_next: Tensor | None
                  ) -> dict[str, tuple[dict[str, Tensor], Tensor, Tensor | None]]:
    """(observation, mask, recurrent state) ``[B, N, ...]`` each level saw at this step."""
    from accord.hierarchy import GOAL, HierarchicalPolicy, with_goal

    if not isinstance(policy, HierarchicalPolicy):
        return {"agent": (step.obs, step.avail_actions, h)}
    assert h_next is not None
    ones = torch.ones(*step.avail_actions.shape[:2], policy.n_subgoals, dtype=torch.bool)
    goal = h_next[..., GOAL].long()  # the sub-goal the worker acted on at this step
    worker_h = None if not policy.worker.hidden or h is None else h[..., 2:]
    return {"manager": (step.obs, ones, None),
            "agent": (with_goal(step.obs, goal, policy.n_subgoals), step.avail_actions, worker_h)}


@torch.no_grad()
def record_level_inputs(policy: Policy, task: Any, n: int, seed: int = 0) -> dict[str, list[dict[str, np.ndarray]]]:
    """Play ``policy`` (sampled actions) in ``task``'s env and record at least ``n`` decisions per agent:
    per level (:func:`levels`) and agent, the graph inputs by name (``h_in`` is the state the agent really
    had, zeros at starts)."""
    from accord.envs.registry import make_env

    task = task.model_copy(deep=True)
    task.num_envs = max(1, min(task.num_envs, 16, n))
    env = make_env(task, "sync", None, "cpu")
    try:
        policy.check_fits(env.spec)
    except BaseException:
        env.close()
        raise
    graphs = {lv: [AgentGraph(p, i) for i in range(p.spec.n_agents)] for lv, p in levels(policy).items()}
    rows = {lv: [{k: [] for k in g.input_names()} for g in gs] for lv, gs in graphs.items()}
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            step = env.reset(seed=seed)
            starts = torch.ones(env.num_envs, dtype=torch.bool)
            h = policy.initial_state(env.num_envs)
            for _ in range(-(-n // env.num_envs)):
                if h is not None:
                    h = h * (~starts)[:, None, None]
                act, _, h_next = policy.step_on(step, h, starts, deterministic=False)
                for lv, (obs, avail, h_lv) in _level_inputs(policy, step, h, h_next).items():
                    for i, g in enumerate(graphs[lv]):
                        for m in g.modalities:
                            rows[lv][i][f"obs_{m}"].append(obs[m][:, i].cpu().numpy())
                        if g.discrete:
                            rows[lv][i]["avail"].append(avail[:, i].cpu().numpy().astype(bool))
                        if g.hidden and h_lv is not None:
                            rows[lv][i]["h_in"].append(h_lv[:, i].cpu().numpy().astype(np.float32))
                h = h_next
                step = env.step(policy.clamp_actions(act))
                starts = step.done
    finally:
        env.close()
    return {lv: [{k: np.concatenate(v)[:n] for k, v in r.items()} for r in rs] for lv, rs in rows.items()}


def record_inputs(policy: Policy, task: Any, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """:func:`record_level_inputs` of a flat policy: per agent, the graph inputs by name."""
    return record_level_inputs(policy, task, n, seed)["agent"]


def _torch_outputs(graph: AgentGraph, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        outs = graph(*(torch.from_numpy(np.ascontiguousarray(inputs[k])) for k in graph.input_names()))
    return [o.detach().numpy() for o in outs]


def check_parity(session: Any, graph: AgentGraph, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """onnxruntime vs torch on the same inputs: max abs difference per output (logits/Q-values compared on
    available actions only; unavailable ones must stay below -1e8 in both)."""
    ref = _torch_outputs(graph, inputs)
    got = session.run(graph.output_names(), {k: inputs[k] for k in graph.input_names()})
    diffs: dict[str, float] = {}
    masked_ok = True
    for name, r, g in zip(graph.output_names(), ref, got, strict=True):
        d = np.abs(np.asarray(g, np.float64) - r.astype(np.float64))
        if name in ("logits", "q"):
            avail = inputs["avail"]
            masked_ok &= bool(np.all(np.asarray(g)[~avail] < MASK_VALUE / 10))
            d = np.where(avail, d, 0.0)
        diffs[name] = float(d.max()) if d.size else 0.0
        if not np.all(np.isfinite(g)):
            diffs[name] = float("inf")
    n = len(next(iter(inputs.values())))
    return {"observations": int(n), "max_abs_diff": max(diffs.values()), "per_output": diffs,
            "masked_actions_ok": masked_ok}


def measure_latency(session: Any, graph: AgentGraph, inputs: Mapping[str, np.ndarray], calls: int = 2000,
                    warmup: int = 200) -> dict[str, dict[str, float]]:
    """Batch-1 latency of onnxruntime (the session's threads) and torch (one thread), on recorded inputs."""
    names = graph.input_names()
    n = len(inputs[names[0]])
    feeds = [{k: inputs[k][j:j + 1] for k in names} for j in range(min(n, 64))]
    out_names = graph.output_names()
    ort = latency(lambda c: session.run(out_names, feeds[c % len(feeds)]), calls, warmup)
    tensors = [tuple(torch.from_numpy(np.ascontiguousarray(f[k])) for k in names) for f in feeds]
    with torch.inference_mode():
        torch_lat = latency(lambda c: graph(*tensors[c % len(tensors)]), calls, warmup)
    return {"onnxruntime": ort, "torch": torch_lat, "calls": calls}


# -- the bundle ---------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    out: Path
    manifest: dict[str, Any]

    @property
    def max_abs_diff(self) -> float:
        return float(self.manifest["parity"]["max_abs_diff"])


def _resolve(source: str | Path, checkpoint: str | Path | None, root: str | Path) -> tuple[RunDir, Path]:
    """The run (for its task config) and the checkpoint file. Unlike evaluation, export never falls back
    to an older checkpoint when the newest is corrupt: it refuses and names the file."""
    src = Path(source)
    if checkpoint is None and src.is_file():
        run_path = src.parent.parent if src.parent.name == "checkpoints" else src.parent
        if not (run_path / "config.yaml").is_file():
            raise ExportError(f"{src} is not inside a run folder (no config.yaml next to checkpoints/); export "
                              "needs the run's task config: pass the run and --checkpoint instead")
        return RunDir(run_path), src
    run = RunDir.open(root, source)
    if checkpoint is None:
        found = list_checkpoints(run.checkpoints_dir)
        if not found:
            raise ExportError(f"run {run.name} has no checkpoint to export in {run.checkpoints_dir}; "
                              "train it (or resume it) until it saves one")
        verify_checkpoint(found[-1])  # raises CheckpointError naming the file: corrupt, truncated, foreign
        return run, found[-1]
    return run, resolve_checkpoint(run.path, checkpoint, root)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} exists and is not empty; choose a new folder or pass --force to replace it")


def _action_spec(policy: Policy) -> dict[str, Any]:
    spec = policy.spec
    if spec.action_kind == "discrete":
        return {"kind": "discrete", "n": spec.n_actions}
    return {"kind": "continuous", "dim": spec.n_actions, "low": spec.action_low, "high": spec.action_high}


def _action_rule(policy: Policy) -> str:
    if policy.value_based:
        return "greedy: action = argmax(q, axis=-1) (unavailable actions are -1e9)"
    if policy.spec.action_kind == "discrete":
        return "greedy: action = argmax(logits, axis=-1); sampled: softmax(logits) (unavailable actions are -1e9)"
    return (f"greedy: action = clip(mean, {policy.spec.action_low}, {policy.spec.action_high}); sampled: "
            "clip(mean + exp(log_std) * N(0, 1), low, high)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_run(source: str | Path, out: str | Path, *, checkpoint: str | Path | None = None,
               root: str | Path = "runs", opset: int = DEFAULT_OPSET, tolerance: float = 1e-5,
               parity_obs: int = 1000, latency_calls: int = 2000, force: bool = False, seed: int = 0,
               log: Callable[[str], None] | None = None) -> ExportResult:
    """Export a run's policy (latest checkpoint by default) into the bundle folder ``out``.

    Raises :class:`ExportError` (bad options, missing packages, parity above ``tolerance``) or the store's
    ``CheckpointError`` / ``RunStoreError``; in every failure case ``out`` is left as it was.
    """
    out = Path(out)
    _require_packages()
    opsets = supported_opsets()
    if opset not in opsets:
        raise ExportError(f"--opset {opset} is not supported; this install exports opsets {opsets.start}-"
                          f"{opsets.stop - 1} (the TorchScript exporter and onnx {_version('onnx')})")
    if parity_obs < 1 or latency_calls < 1:
        raise ExportError("parity observations and latency calls must be at least 1")
    if not tolerance >= 0:
        raise ExportError(f"--tolerance must be a number >= 0, got {tolerance}")
    _check_out(out, force)
    run, ckpt = _resolve(source, checkpoint, root)
    payload = load_checkpoint(ckpt)  # verifies magic, version and checksum
    policy = Policy.from_checkpoint(payload, str(ckpt))
    cfg = build_config(run.load_config())
    say = log or (lambda _msg: None)

    say(f"recording {parity_obs} observations per agent from task '{cfg.task.name}'")
    recorded = record_level_inputs(policy, cfg.task, parity_obs, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the bundle is an ordinary folder
    try:
        agents, parity = [], {}
        for level, level_policy in levels(policy).items():  # one graph per agent (and per level)
            for i in range(level_policy.spec.n_agents):
                graph = AgentGraph(level_policy, i).eval()
                name = level_policy.spec.agent_names[i] if level == "agent" else f"{level}_{i}"
                file = f"{level}_{i}.onnx"
                _export_graph(graph, tmp / file, opset)
                import onnx

                onnx.checker.check_model(str(tmp / file))
                session = make_session(tmp / file, threads=1)
                par = check_parity(session, graph, recorded[level][i])
                parity[name] = par
                say(f"{'agent ' if level == 'agent' else ''}{name}: parity max abs diff {par['max_abs_diff']:.3g} "
                    f"on {par['observations']} observations")
                if not par["max_abs_diff"] <= tolerance or not par["masked_actions_ok"]:
                    why = "unavailable actions are not masked" if par["masked_actions_ok"] is False and \
                        par["max_abs_diff"] <= tolerance else f"max abs diff {par['max_abs_diff']:.3g} > tolerance " \
                        f"{tolerance:g}"
                    raise ExportError(f"ONNX parity check failed for {name}: {why} on {par['observations']} "
                                      f"recorded observations; no bundle written to {out}")
                lat = measure_latency(session, graph, recorded[level][i], latency_calls)
                agents.append({
                    "index": i, "name": name, "graph": file,
                    "inputs": graph.inputs_spec(), "outputs": graph.outputs_spec(),
                    "params": param_count(level_policy, i), "flops": flops_per_decision(level_policy, i),
                    "macs_by_layer": macs_per_decision(level_policy, i), "latency": lat, "parity": par,
                })
        worst = max(p["max_abs_diff"] for p in parity.values())
        parity_doc = {"tolerance": tolerance, "observations_per_agent": parity_obs, "max_abs_diff": worst,
                      "recorded_from": f"task '{cfg.task.name}', sampled actions, seed {seed}", "agents": parity}
        manifest = {
            "format": MANIFEST_FORMAT,
            "accord_version": accord.__version__,
            "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
            "versions": {"torch": torch.__version__, "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime")},
            "onnx_opset": opset,
            "source": {"run": run.name, "run_path": str(run.path.resolve()), "checkpoint": str(ckpt.resolve()),
                       "checkpoint_sha256": _sha256(ckpt), "algorithm": cfg.algorithm,
                       "architecture": cfg.architecture},
            "task": cfg.task.model_dump(mode="json"),
            "raw_env": raw_env(cfg.task),
            "eval_seed": EVAL_SEED,
            "spec": spec_to_dict(policy.spec),
            "observation": {m: {"input": f"obs_{m}", "shape": list(s),
                                "dtype": str(OBS_DTYPES[m]).removeprefix("torch.")}
                            for m, s in policy.spec.obs_shapes.items()},
            "action": _action_spec(policy),
            "policy_output": "q" if policy.value_based else
            "logits" if policy.spec.action_kind == "discrete" else "gaussian",
            "action_rule": _action_rule(policy),
            "mask": MASK_SEMANTICS if policy.spec.action_kind == "discrete" else None,
            "recurrent": {"input": "h_in", "output": "h_out", "shape": ["batch", policy.hidden],
                          "reset": "feed zeros as h_in at an episode's first step, then the previous h_out"}
            if policy.hidden else None,
            "agents": agents,
            "hierarchical": _hierarchy_note(policy),
            "parity": {k: v for k, v in parity_doc.items() if k != "agents"},
            "flops_convention": FLOPS_CONVENTION,
            "latency_note": LATENCY_NOTE,
        }
        (tmp / PARITY_FILE).write_text(json.dumps(parity_doc, indent=2) + "\n")
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _check_out(out, force)  # nothing appeared meanwhile
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if cfg.logging.mlflow:
        from accord.store.mlflow_sink import log_artifacts

        log_artifacts(out, f"export/{out.name}", run_dir=run.path)
    return ExportResult(out, manifest)


def _hierarchy_note(policy: Policy) -> dict[str, Any] | None:
    """How to chain a hierarchical bundle's two graphs per agent (None for a flat policy)."""
    if "manager" not in levels(policy):
        return None
    k = getattr(policy, "k", 0)
    return {"k": k, "n_subgoals": getattr(policy, "n_subgoals", 0), "graphs": "manager_<i>.onnx, agent_<i>.onnx",
            "rule": f"at an episode's first step, when the agent reached its sub-goal (the task's info['subgoal']) "
                    f"and after {k} steps: g = argmax(manager logits on obs); then every step: action from "
                    "agent_<i>.onnx on obs_vector + one_hot(g)"}


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished bundle to ``out``; an old ``out`` (empty, or replaced with --force) goes after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return "not installed"
