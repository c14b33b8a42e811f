"""In-process rollout collection: step a VecEnv with a :class:`~accord.policy.Policy`, fill a Rollout.

The same runner drives built-in vectorized tasks and PettingZoo envs (in this process or in
subprocess workers, see :mod:`accord.runners.subproc`): the env hides where it runs.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor

from accord.compile import compiled
from accord.envs.base import Step, VecEnv
from accord.policy import Policy
from accord.rollout import Rollout


def _counted(done: Tensor, info: dict[str, Tensor]) -> Tensor:
    """The episode ends that count: the placeholder episodes of quarantined envs do not."""
    quarantined = info.get("quarantined")
    return done if quarantined is None else done & (quarantined == 0)


class EpisodeStats:
    """Returns, lengths and success of finished episodes (team reward, as always reported)."""

    def __init__(self, num_envs: int, device: torch.device, window: int = 100) -> None:
        self.ret = torch.zeros(num_envs, device=device)
        self.len = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.recent: deque[tuple[float, int, float]] = deque(maxlen=window)
        self.episodes = 0

    def add(self, step: Step) -> None:
        self.count(step.reward, _counted(step.done, step.info), step.info.get("success"))

    def count_steps(self, reward: Tensor, done: Tensor, infos: dict[int, dict[str, Tensor]] | None = None) -> None:
        """:meth:`add` for T steps at once: ``reward``, ``done`` [T, B] (``done`` is overwritten), ``infos``
        {t: step t's info} for the steps that had one; one host sync, then the steps between episode ends
        summed in one op each."""
        infos = infos or {}
        for t, info in infos.items():
            done[t] = _counted(done[t], info)
        start = 0
        for t in done.any(1).nonzero().flatten().tolist():
            if t > start:
                self.ret += reward[start:t].sum(0)
                self.len += t - start
            self.count(reward[t], done[t], infos.get(t, {}).get("success"))
            start = t + 1
        if start < len(reward):
            self.ret += reward[start:].sum(0)
            self.len += len(reward) - start

    def count(self, reward: Tensor, done: Tensor, success: Tensor | None = None) -> None:
        """One step's team reward [B]; episodes that ended where ``done`` [B] (``success`` [B] if known)."""
        self.ret += reward
        self.len += 1
        if bool(done.any()):
            rows = zip(self.ret[done].tolist(), self.len[done].tolist(),
                       success[done].tolist() if success is not None else [float("nan")] * int(done.sum()), strict=True)
            self.recent.extend(rows)
            self.episodes += int(done.sum())
            self.ret = self.ret.masked_fill(done, 0.0)
            self.len = self.len.masked_fill(done, 0)

    def extend(self, rows: list[tuple[float, int, float]], count: int) -> None:
        """Episodes another process finished: its newest rows (return, length, success), ``count`` in all."""
        self.recent.extend(rows)
        self.episodes += count

    def summary(self) -> dict[str, float]:
        if not self.recent:
            return {}
        rets, lens, succ = zip(*self.recent, strict=True)
        out = {"return_mean": sum(rets) / len(rets), "episode_len_mean": sum(lens) / len(lens),
               "episodes": float(self.episodes)}
        known = [s for s in succ if s == s]
        if known:
            out["success_rate"] = sum(known) / len(known)
        return out


class SyncRunner:
    """Steps ``env`` with ``policy`` (sampling) for ``rollout_len`` steps per :meth:`collect`.

    The runner owns the episode bookkeeping and the policy's recurrent state; the learner sees only
    the finished batch. Values are not computed here: the learner evaluates its critic on the whole
    batch in one pass.
    """

    def __init__(self, env: VecEnv, policy: Policy, rollout_len: int, seed: int, compile: bool | str = False) -> None:
        self.env, self.policy, self.t_len = env, policy, rollout_len
        self._act = compiled(policy.step, compile, "the policy's acting step")  # train.compile
        self.batch = Rollout.allocate(env.spec, rollout_len, env.num_envs, env.device)
        with torch.inference_mode():  # the env's tensors are inference tensors from the start, as in collect
            self.current = env.reset(seed=seed)  # (and ``starts``: a compiled step would compile twice else)
            self.starts = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
        self.h = policy.initial_state(env.num_envs)
        self.batch.h_actor = None if self.h is None else self.h.clone()  # a learner's input: not an inference tensor
        self.stats = EpisodeStats(env.num_envs, env.device)

    @torch.inference_mode()  # cheaper per op than no_grad; everything the learner reads is copied into the batch
    def collect(self) -> Rollout:
        """T steps of every env into the preallocated batch (overwritten by the next call)."""
        b, infos = self.batch, {}
        if self.h is not None:
            b.h_actor.copy_(self.h)
        for t in range(self.t_len):
            s = self.current
            for m, x in s.obs.items():
                b.obs[m][t] = x
            b.state[t], b.avail[t], b.agent_mask[t], b.starts[t] = s.state, s.avail_actions, s.agent_mask, self.starts
            b.actions[t], b.logp[t], self.h = self._act(s.obs, s.avail_actions, self.h, self.starts)
            nxt = self.env.step(b.actions[t])
            b.reward[t], b.agent_reward[t] = nxt.reward, nxt.agent_reward
            b.terminated[t], b.truncated[t] = nxt.terminated, nxt.truncated
            final_obs, b.next_state[t] = nxt.finals()
            for m, x in final_obs.items():
                b.final_obs[m][t] = x
            if nxt.info:
                infos[t] = nxt.info
            self.starts = nxt.done
            self.current = nxt
        self.stats.count_steps(b.reward, b.terminated | b.truncated, infos)  # episode statistics, once a batch
        self._close(b)
        return b

    def _close(self, b: Rollout) -> None:
        """Where the rollout stopped, for the learner's bootstrap."""
        s = self.current
        for m, x in s.obs.items():
            b.last_obs[m].copy_(x)
        b.last_state.copy_(s.state)
        b.last_starts.copy_(self.starts)
