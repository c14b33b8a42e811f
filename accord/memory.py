"""Memory a training run will need, estimated before anything big is allocated; device checks; the
C allocator's settings for training (:func:`keep_freed_memory`).

A typo such as ``task.num_envs=1000000000`` or ``model.hidden=10000000`` would otherwise be found by
the kernel's OOM killer (or a swap storm) minutes later. :func:`check_memory` estimates the rollout
(``T x B x N x obs``, as :meth:`accord.rollout.Rollout.allocate` sizes it), the envs' own tensors and
the networks (parameters x 4 bytes x 4: weights, gradients and Adam's two moments, plus activations)
and refuses with one line naming the key that dominates, the estimate and the available memory
(:func:`accord.replay.available_bytes`). Before the env exists (``spec=None``) it uses a lower bound
(one observation feature), which already catches the absurd sizes without building a billion envs.
"""

from __future__ import annotations

import ctypes
import math
import sys
from typing import TYPE_CHECKING

import torch

from accord.envs.base import OBS_DTYPES
from accord.errors import ConfigError

if TYPE_CHECKING:
    from accord.config import Config
    from accord.envs.base import EnvSpec

_FLOAT = 4
_ADAM = 4  # weights, gradients, two Adam moments
# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit systems.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX = -1, -3, 32 << 20


def keep_freed_memory() -> bool:
    """Keep freed tensor memory in the process for the next tensor of that size (glibc on Linux; elsewhere
    nothing changes). By default glibc maps big blocks (128 KiB up, adaptively up to 32 MiB) from the
    OS for each allocation and trims the heap's free top, so tensors that a training iteration allocates
    and frees every time fault their pages back in: about 1,200 page faults per PPO update at JaxMARL's
    settings, whose iterations took 0.96x as long without them (docs/benchmarks.md, "Speed", thirteenth
    round). A run's peak memory is unchanged; what it freed stays mapped until it exits. Returns whether
    the settings took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def device_problem(text: str) -> str | None:
    """Why ``text`` names no usable torch device on this machine (None when it is fine)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        return f"'{text}' is not a device; allowed: cpu, cuda, cuda:N, mps"
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"'{text}' asked, but CUDA is not available on this machine; use train.device=cpu"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"'{text}' does not exist: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
        return None
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            return f"'{text}' asked, but MPS is not available on this machine; use train.device=cpu"
        return None
    return f"'{text}' is not supported; allowed: cpu, cuda, cuda:N, mps"


def _mlp(inputs: int, hidden: int, layers: int, outputs: int, recurrent: bool) -> int:
    params = inputs * hidden + (layers - 1) * hidden * hidden + hidden * outputs + (layers + 1) * hidden
    return params + (6 * hidden * hidden if recurrent else 0)


def estimate(cfg: Config, spec: EnvSpec | None = None) -> dict[str, tuple[str, int]]:
    """Bytes by part: {part: (the keys that size it, bytes)}; ``spec=None``: a lower bound before the env."""
    raw_n = cfg.task.params.get("n_agents")
    n = spec.n_agents if spec is not None else (raw_n if isinstance(raw_n, int) and raw_n > 0 else 1)
    feats = sum(math.prod(s) for s in spec.obs_shapes.values()) if spec is not None else 1
    state = spec.state_dim if spec is not None else 0
    actions = spec.n_actions if spec is not None else 2
    b = cfg.task.num_envs
    t = cfg.q.rollout_len if cfg.algorithm == "q" else cfg.ppo.rollout_len
    m = cfg.model
    inputs = feats + (n if m.agent_id else 0)
    copies = 1 if m.share_params else n
    actor = _mlp(inputs, m.hidden, m.layers, actions, m.recurrent) * copies
    c = m.for_critic()
    critic = _mlp((state or feats) + n, c.hidden, c.layers, 1, c.recurrent) * copies
    nets = (actor + critic) * _FLOAT * _ADAM
    obs_bytes = feats * _FLOAT if spec is None else sum(  # one observation, by dtype (images uint8)
        math.prod(s) * OBS_DTYPES.get(k, torch.float32).itemsize for k, s in spec.obs_shapes.items())
    per_step = n * (2 * obs_bytes + actions + 6 * _FLOAT + 8) + 2 * state * _FLOAT + 8
    rollout = t * b * per_step
    minibatch = max(1, cfg.ppo.minibatches) if cfg.algorithm != "q" else 1
    activations = t * b * n * m.hidden * m.layers * _FLOAT * 4 // minibatch
    env = b * n * (feats * _FLOAT * 3 + actions + 16) + b * state * _FLOAT
    keys = "task.num_envs" if b * n > t else "ppo.rollout_len" if cfg.algorithm != "q" else "q.rollout_len"
    agents = " and task.params.n_agents" if n > 64 else ""
    return {
        "networks": (f"model.hidden={m.hidden}, model.layers={m.layers}{agents}", nets),
        "rollout": (f"{t} steps x task.num_envs={b} x {n} agents x {feats} obs features ({keys}{agents})",
                    rollout + activations),
        "envs": (f"task.num_envs={b}{agents}", env),
    }


def check_memory(cfg: Config, spec: EnvSpec | None = None, device: str | torch.device | None = None) -> int:
    """Refuse (ConfigError, one line) a run whose estimated memory exceeds what is available; return it."""
    from accord.replay import available_bytes

    parts = estimate(cfg, spec)
    need = sum(v for _, v in parts.values())
    device = torch.device(device if device is not None else cfg.train.device)
    free = available_bytes(device)
    if free is None or need <= free:
        return need
    part, (keys, size) = max(parts.items(), key=lambda kv: kv[1][1])
    raise ConfigError(f"this run needs about {_gib(need)} of memory but {_gib(free)} is available on {device}: "
                      f"the {part} alone take {_gib(size)} ({keys}); lower those values")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB" if n < 2**50 else f"{n / 2**30:.3g} GiB"
