"""Collection for a pure tensor task: acting and the env step compiled as one program.

At a few envs a built-in task's step is dozens of tiny ops and acting a few more. Compiled as two
programs, each call still pays torch.compile's per-call cost (about 90 us here) and the env layers'
Python around it, which was most of collection's time at JaxMARL's settings. A task whose step is a
function of tensors alone (``pure_step``, e.g. :class:`~accord.envs.tasks.spread.Spread`) lets the
runner compile a few whole steps (act, step, autoreset) as one program and write the batch once per
call. Used by ``train.compile`` (true | auto) when nothing between the runner and the task checks or
changes a step: ``task.guard=false``, no cost budget, no message channel, latency or streams.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import torch
from torch import Tensor

from accord.compile import compiled
from accord.cost import CostMeter
from accord.envs.base import Step, VecEnv
from accord.envs.resilient import ResilientVecEnv
from accord.policy import Policy
from accord.rollout import Rollout
from accord.runners.sync import SyncRunner

# Env steps per compiled call. Two halved the per-step time of one (JaxMARL's settings: 65 -> 46 ms per
# 128 steps) for about 6 s more compile; four was no faster and compiled 15 s longer (docs/benchmarks.md).
STEPS_PER_CALL = 2


class PureTask(Protocol):
    """A vectorized task whose step is a function of tensors: ``pure_step(state, actions, noise)`` returns
    the next state and the :class:`~accord.envs.base.Step`, autoreset included, without branching on data.
    Whatever changes during a run is a tensor (of the state, or an attribute changed in place): the
    compiled program does not check the Python attributes it read when it was compiled."""

    def pure_state(self) -> tuple[Tensor, ...]: ...

    def set_pure_state(self, state: tuple[Tensor, ...]) -> None: ...

    def pure_noise(self, steps: int) -> Tensor: ...

    def pure_step(self, state: tuple[Tensor, ...], actions: Tensor,
                  noise: Tensor) -> tuple[tuple[Tensor, ...], Step]: ...


def pure_task(env: VecEnv) -> PureTask | None:
    """The pure task under ``env`` when every layer above it leaves a training step as it is (fault
    counting, a cost meter without budget); None otherwise."""
    while True:
        if callable(getattr(type(env), "pure_step", None)):
            return env  # type: ignore[return-value]
        if isinstance(env, ResilientVecEnv) or (isinstance(env, CostMeter) and not env.limits):
            env = env.env
            continue
        return None


class FusedRunner(SyncRunner):
    """:class:`SyncRunner` whose steps run ``STEPS_PER_CALL`` at a time as one compiled program.

    The batch it fills is the one :class:`SyncRunner` fills from the same task, but for the draws of new
    episodes: the task draws them for every env each step (:meth:`PureTask.pure_noise`), not only
    where an episode ended.
    """

    def __init__(self, env: VecEnv, task: PureTask, policy: Policy, rollout_len: int, seed: int,
                 compile: bool | str = True) -> None:
        super().__init__(env, policy, rollout_len, seed)
        self.task = task
        self.k = STEPS_PER_CALL if rollout_len % STEPS_PER_CALL == 0 else 1
        # train.compile. The policy's and the task's Python state is fixed for a run (rollouts are PPO's; the
        # value-based learners, whose exploration rate is a Python float, collect episodes), and so are the
        # shapes of its tensors (the weights, the task's state, the noise, the batch): one program, called
        # without guards.
        self._steps = compiled(self._run, compile, "the acting and env steps", cpp_wrapper=True,
                               shapes=lambda *args: ())
        # Each call's steps go straight into the batch (reused between collects): the rows are an index.
        self._at = [torch.arange(t, t + self.k, device=env.device) for t in range(0, rollout_len, self.k)]

    def _run(self, state: tuple[Tensor, ...], cur: tuple[Any, ...], h: Tensor | None, starts: Tensor,
             noise: Tensor, batch: Rollout, at: Tensor) -> tuple[tuple[Tensor, ...], tuple[Any, ...], Tensor | None,
                                                                 Tensor]:
        """``len(noise)`` steps from observation ``cur`` = (obs, state, avail, agent_mask), written into
        ``batch``'s rows ``at``; returns the carried values."""
        rows: list[dict[str, Any]] = []
        for u in noise.unbind(0):
            obs, g, avail, mask = cur
            actions, logp, h = self.policy.step(obs, avail, h, starts)
            state, nxt = self.task.pure_step(state, actions, u)
            final_obs, next_state = nxt.finals()
            rows.append({"obs": obs, "state": g, "avail": avail, "agent_mask": mask, "starts": starts,
                         "actions": actions, "logp": logp, "reward": nxt.reward, "agent_reward": nxt.agent_reward,
                         "terminated": nxt.terminated, "truncated": nxt.truncated, "final_obs": final_obs,
                         "next_state": next_state})
            # not Step.done: dynamo breaks the graph at its cached_property
            cur, starts = (nxt.obs, nxt.state, nxt.avail_actions, nxt.agent_mask), nxt.terminated | nxt.truncated
        for key, x in rows[0].items():
            if isinstance(x, dict):  # observations by modality
                for m in x:
                    getattr(batch, key)[m].index_copy_(0, at, torch.stack([r[key][m] for r in rows]))
            else:
                getattr(batch, key).index_copy_(0, at, torch.stack([r[key] for r in rows]))
        return state, cur, h, starts

    @torch.inference_mode()
    def collect(self) -> Rollout:
        b, s = self.batch, self.current
        if self.h is not None:
            b.h_actor.copy_(self.h)
        state, cur = self.task.pure_state(), (s.obs, s.state, s.avail_actions, s.agent_mask)
        for at in self._at:
            state, cur, self.h, self.starts = self._steps(state, cur, self.h, self.starts,
                                                          self.task.pure_noise(self.k), b, at)
        self.stats.count_steps(b.reward, b.terminated | b.truncated)  # one host sync per batch, not per call
        self.task.set_pure_state(state)
        self.current = replace(s, obs=cur[0], state=cur[1], avail_actions=cur[2], agent_mask=cur[3])
        self._close(b)
        return b
