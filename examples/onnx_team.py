"""Play an exported accord team (``accord export RUN --out BUNDLE``) with numpy and onnxruntime only.

    python examples/onnx_team.py BUNDLE --episodes 100 [--seed 12345] [--num-envs B] [--json] [--check-imports]

The policy side imports nothing but numpy and onnxruntime: each agent's ``agent_<i>.onnx`` gets that
agent's own observation (+ available-action mask, + recurrent state) and returns logits / Q-values /
Gaussian mean; the greedy action is their argmax (or the clipped mean).

The env comes from the manifest's task:

- a PettingZoo task (``task.name: pettingzoo``, or your own ``package.module:Name``): the raw env from
  the manifest's ``raw_env`` (``factory`` is a module, whose ``parallel_env`` is called, or
  ``module:Name``, called with ``kwargs``), mapped to the policy's inputs here in numpy exactly as
  ``accord/envs/pettingzoo.py`` does (flattened float32 vector obs zero-padded to the widest agent, HWC
  images to CHW, ``action_mask`` from a Dict obs or the infos, team reward the sum or mean of the agents'
  rewards, episode over when no agent is left). No torch and no accord is imported (``--check-imports``
  verifies it at the end).
- a built-in accord task (``spread``, ``foraging``, ...): those envs are torch code, so the env (only
  the env) is accord's own ``make_env``; the policy part is still numpy + onnxruntime.

Episodes are laid out like ``accord eval`` (``accord.evaluate.evaluate_run``): ``B = min(episodes,
task.num_envs)`` envs, env ``b`` reset with ``seed + b``, finished envs reset again without a seed (their
RNG carries on), and the first ``episodes`` finished episodes count. With the same seed, episodes and
number of envs, the mean return equals ``accord eval``'s greedy one up to float rounding.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

OBS_DTYPES = {"vector": np.float32, "image": np.uint8, "text": np.int64}


class OnnxTeam:
    """The exported team: one onnxruntime session per agent, greedy actions for a batch of envs."""

    def __init__(self, bundle: Path, threads: int = 1) -> None:
        self.manifest = json.loads((bundle / "manifest.json").read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.agents = self.manifest["agents"]
        self.sessions = [ort.InferenceSession(str(bundle / a["graph"]), opts, providers=["CPUExecutionProvider"])
                         for a in self.agents]
        self.action = self.manifest["action"]
        rec = self.manifest["recurrent"]
        self.hidden = rec["shape"][1] if rec else 0
        self.h: np.ndarray | None = None  # [B, N, H]

    def reset(self, batch: int) -> None:
        self.h = np.zeros((batch, len(self.agents), self.hidden), np.float32) if self.hidden else None

    def start(self, b: int) -> None:
        """Env ``b`` starts a new episode: zero recurrent state."""
        if self.h is not None:
            self.h[b] = 0.0

    def act(self, obs: dict[str, np.ndarray], avail: np.ndarray | None) -> np.ndarray:
        """Greedy actions ``[B, N]`` (or ``[B, N, D]``) from ``obs {modality: [B, N, ...]}``, ``avail [B, N, A]``."""
        out = []
        for i, (agent, sess) in enumerate(zip(self.agents, self.sessions, strict=True)):
            feed: dict[str, np.ndarray] = {}
            for spec in agent["inputs"]:
                name = spec["name"]
                if name.startswith("obs_"):
                    feed[name] = np.ascontiguousarray(obs[name[4:]][:, i])
                elif name == "avail":
                    feed[name] = np.ascontiguousarray(avail[:, i])
                elif name == "h_in":
                    feed[name] = np.ascontiguousarray(self.h[:, i])
            names = [o["name"] for o in agent["outputs"]]
            res = dict(zip(names, sess.run(names, feed), strict=True))
            if "h_out" in res:
                self.h[:, i] = res["h_out"]
            if self.action["kind"] == "discrete":
                out.append(np.argmax(res["q"] if "q" in res else res["logits"], axis=-1))
            else:
                out.append(np.clip(res["mean"], self.action["low"], self.action["high"]))
        return np.stack(out, axis=1)


# -- a raw PettingZoo env, mapped as accord/envs/pettingzoo.py maps it ------------------------------------


class PettingZooTeamEnv:
    """``B`` raw PettingZoo envs, stepped one after the other, as numpy arrays ``[B, N, ...]``."""

    def __init__(self, raw: dict[str, Any], manifest: dict[str, Any], num_envs: int) -> None:
        module_name, _, attr = raw["factory"].partition(":")
        module = importlib.import_module(module_name)
        factory = getattr(module, attr) if attr else module.parallel_env
        self.envs = [factory(**raw["kwargs"]) for _ in range(num_envs)]
        self.team_reward = raw["team_reward"]
        spec = manifest["spec"]
        self.agents = list(spec["agent_names"])
        self.modality = next(iter(spec["obs_shapes"]))
        self.obs_shape = tuple(spec["obs_shapes"][self.modality])
        self.n_actions, self.discrete = spec["n_actions"], spec["action_kind"] == "discrete"
        env = self.envs[0]
        self.act_spaces = [env.action_space(a) for a in self.agents]
        obs_spaces = [env.observation_space(a) for a in self.agents]
        self.dict_obs = any(hasattr(s, "spaces") and "observation" in s.spaces for s in obs_spaces)
        if self.discrete:
            self.default_avail = np.arange(self.n_actions)[None, :] < np.array([s.n for s in self.act_spaces])[:, None]
        b, n = num_envs, len(self.agents)
        self.obs = np.zeros((b, n, *self.obs_shape), OBS_DTYPES[self.modality])
        self.avail = np.ones((b, n, self.n_actions if self.discrete else 0), bool)

    def _fill(self, b: int, env: Any, obs: dict, infos: dict, show: list[bool]) -> None:
        self.obs[b] = 0
        self.avail[b] = True
        for i, a in enumerate(self.agents):
            if not show[i]:
                continue
            raw, mask = obs[a], infos.get(a, {}).get("action_mask")
            if self.dict_obs:
                mask = raw.get("action_mask", mask)
                raw = raw["observation"]
            if self.modality == "image":
                self.obs[b, i] = np.asarray(raw).transpose(2, 0, 1)
            else:
                flat = np.asarray(raw, np.float32).reshape(-1)
                self.obs[b, i, : flat.size] = flat
            if self.discrete:
                if mask is None:
                    self.avail[b, i] = self.default_avail[i]
                else:
                    mask = np.asarray(mask, bool).reshape(-1)
                    self.avail[b, i] = False
                    self.avail[b, i, : mask.size] = mask

    def _present(self, env: Any, obs: dict) -> list[bool]:
        live = set(env.agents)
        return [a in live and a in obs for a in self.agents]

    def reset(self, seed: int) -> None:
        for b, env in enumerate(self.envs):
            obs, infos = env.reset(seed=seed + b)
            self._fill(b, env, obs, infos, self._present(env, obs))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step every env; returns team reward ``[B]`` and done ``[B]`` (done envs are already reset)."""
        reward, done = np.zeros(len(self.envs), np.float32), np.zeros(len(self.envs), bool)
        for b, env in enumerate(self.envs):
            live = set(env.agents)
            acts = {a: self._action(i, actions[b, i]) for i, a in enumerate(self.agents) if a in live}
            obs, rewards, terms, truncs, infos = env.step(acts)
            r = np.array([rewards.get(a, 0.0) for a in self.agents], np.float32)
            reward[b] = r.sum() if self.team_reward == "sum" else r.mean()
            ended = {a for a in self.agents if terms.get(a, False) or truncs.get(a, False)}
            alive = [p and a not in ended for p, a in zip(self._present(env, obs), self.agents, strict=True)]
            if any(alive):
                self._fill(b, env, obs, infos, alive)
                continue
            done[b] = True
            obs, infos = env.reset()
            self._fill(b, env, obs, infos, self._present(env, obs))
        return reward, done

    def _action(self, i: int, a: np.ndarray) -> Any:
        space = self.act_spaces[i]
        if self.discrete:
            return int(a) + int(getattr(space, "start", 0))
        dim = int(np.prod(space.shape))
        return np.clip(a[:dim].reshape(space.shape), space.low, space.high).astype(space.dtype)

    def observe(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {self.modality: self.obs}, self.avail

    def close(self) -> None:
        for env in self.envs:
            env.close()


class AccordTaskEnv:
    """A built-in accord task (torch-vectorized): the env only comes from accord, as numpy arrays."""

    def __init__(self, task: dict[str, Any], num_envs: int) -> None:
        import torch

        from accord.config import TaskConfig
        from accord.envs.registry import make_env

        self.torch = torch
        self.env = make_env(TaskConfig.model_validate({**task, "num_envs": num_envs}), "sync")
        self.step_ = None

    def reset(self, seed: int) -> None:
        self.step_ = self.env.reset(seed=seed)

    def observe(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {k: v.cpu().numpy() for k, v in self.step_.obs.items()}, self.step_.avail_actions.cpu().numpy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.step_ = self.env.step(self.torch.as_tensor(actions))
        return self.step_.reward.cpu().numpy(), self.step_.done.cpu().numpy()

    def close(self) -> None:
        self.env.close()


def play(bundle: Path, episodes: int, seed: int, num_envs: int | None = None) -> dict[str, float]:
    """Greedy team return over ``episodes`` episodes, laid out like ``accord eval``."""
    team = OnnxTeam(bundle)
    task = team.manifest["task"]
    b = num_envs or min(episodes, task["num_envs"])
    raw = team.manifest.get("raw_env")
    env = PettingZooTeamEnv(raw, team.manifest, b) if raw else AccordTaskEnv(task, b)
    try:
        env.reset(seed)
        team.reset(b)
        ret = np.zeros(b, np.float64)
        returns: list[float] = []
        while len(returns) < episodes:
            obs, avail = env.observe()
            reward, done = env.step(team.act(obs, avail))
            ret += reward
            for j in np.flatnonzero(done):
                returns.append(float(ret[j]))
                ret[j] = 0.0
                team.start(j)
    finally:
        env.close()
    r = np.asarray(returns[:episodes])
    return {"return_mean": float(r.mean()), "return_std": float(r.std(ddof=1)) if r.size > 1 else 0.0,
            "episodes": int(r.size), "num_envs": b, "seed": seed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path, help="folder written by `accord export`")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, help="first env seed (default: the manifest's eval_seed, as accord eval)")
    p.add_argument("--num-envs", type=int, help="envs played side by side (default: min(episodes, task.num_envs))")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.add_argument("--check-imports", action="store_true",
                   help="report whether torch/accord were imported; exit 1 if so for a PettingZoo task")
    args = p.parse_args()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    seed = manifest.get("eval_seed", 12345) if args.seed is None else args.seed
    result: dict[str, Any] = play(args.bundle, args.episodes, seed, args.num_envs)
    imported = sorted(m for m in ("torch", "accord") if m in sys.modules)
    result["imported"] = imported
    if args.json:
        print(json.dumps(result))
    else:
        print(f"team return over {result['episodes']} episodes (seeds {seed}..{seed + result['num_envs'] - 1}, "
              f"greedy): {result['return_mean']:.4f} +- {result['return_std']:.4f}")
        if args.check_imports:
            print(f"imported torch/accord: {', '.join(imported) or 'neither'}")
    if args.check_imports and imported and manifest.get("raw_env"):
        sys.exit(1)


if __name__ == "__main__":
    main()
