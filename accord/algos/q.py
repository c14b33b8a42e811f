"""Value-based CTDE: IQL, VDN, QMIX and Qatten as one off-policy learner with swappable mixers.

Follows the QMIX paper's training loop (Rashid et al. 2018, arXiv 1803.11485, Sec. 4) and EPyMARL's
``QLearner`` defaults; the mixer is the credit module
(``credit.name: iql | vdn | qmix | qatten``, see :mod:`accord.credit.mixer`). Deviations are listed in
``accord/algos/README.md``. One :meth:`QLearner.update` reads like the algorithm box:

    agent utilities (online + target) -> bootstrap actions (double Q, available actions only)
    -> mixing into Q_tot -> TD(lambda) targets -> masked TD loss -> clipped step -> target update.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import Tensor

from accord.config import Config
from accord.credit import CREDIT
from accord.credit.gae import backward_scan
from accord.envs.base import EnvSpec
from accord.models.value_norm import ValueNorm
from accord.optim import clip_grad_norms
from accord.policy import Policy
from accord.replay import EpisodeBatch, EpisodeBuffer, EpisodeChunk

logger = logging.getLogger(__name__)


def bootstrap_utilities(q_online: Tensor, q_target: Tensor, double_q: bool) -> Tensor:
    """Q_a^-(tau', u'*) ``[T, B, N]`` from next-step utilities ``[T, B, N, A]`` (unavailable ones at -1e9).

    Double Q (van Hasselt et al. 2016): u'* = argmax of the online net, valued by the target net;
    otherwise max of the target net.
    """
    if not double_q:
        return q_target.max(-1).values
    return q_target.gather(-1, q_online.argmax(-1, keepdim=True)).squeeze(-1)


def lambda_targets(reward: Tensor, next_q: Tensor, terminated: Tensor, last: Tensor, gamma: float,
                   lam: float) -> Tensor:
    """TD(lambda) targets ``[T, B, K]`` on the target network's bootstrap values ``next_q`` [T, B, K].

    G_t = r_t + gamma (1 - term_t) [(1 - lam) Q_{t+1} + lam G_{t+1}], with G_{t+1} := Q_{t+1} at an
    episode's ``last`` step; lam = 0 gives the one-step target r_t + gamma (1 - term_t) Q_{t+1}.
    """
    live = gamma * (~terminated).to(next_q.dtype)  # [T, B, 1]
    if lam == 0:
        return reward + live * next_q
    # Linear recurrence G_t = b_t + c_t G_{t+1}, with lambda zeroed at each episode's last step.
    lam_t = lam * (~last).to(next_q.dtype)  # [T, B, 1]
    b = reward + live * (1 - lam_t) * next_q  # [T, B, K]
    return backward_scan(b, live * lam_t)


def td_loss(q_tot: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared TD error over ``mask`` (divided by the mask's sum, not the batch size)."""
    err = (q_tot - target.detach()) * mask
    return err.pow(2).sum() / mask.sum().clamp_min(1)


class QLearner:
    """Owns agents (shared with its :class:`~accord.policy.Policy`) and mixer, online and target,
    the optimizer and the replay buffer. It never sees the env: the loop collects episodes with
    ``self.policy`` and hands them to :meth:`update`."""

    collects = "episodes"  # what the loop's runner must hand to update(): an EpisodeChunk
    corrects_lag = True  # off-policy: episodes from any (older) policy go to the replay buffer

    def __init__(self, cfg: Config, spec: EnvSpec, device: torch.device) -> None:
        self.cfg, q = cfg, cfg.q
        self.policy = Policy.build(spec, cfg.model, value_based=True, device=device)  # refuses continuous actions
        self.agent = self.policy.actor
        self.mixer = CREDIT[cfg.credit.name].fn(cfg, spec).to(device)  # refuses a missing state
        self.target_agent = copy.deepcopy(self.agent).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)
        self.params = [*self.agent.parameters(), *self.mixer.parameters()]
        # The fused kernel is ~4x faster than the default on CPU for small networks.
        self.opt = torch.optim.Adam(self.params, lr=q.lr, fused=torch.device(device).type in ("cpu", "cuda"))
        self.reward_norm = ValueNorm().to(device) if q.standardize_rewards else None
        self.buffer = EpisodeBuffer(spec, q.buffer_episodes, device)
        self.rollout_len = q.rollout_len
        self.env_steps = 0
        self.updates = 0
        self.policy.epsilon = self.epsilon

    @property
    def epsilon(self) -> float:
        """Linear schedule in env steps, epsilon_start -> epsilon_finish over epsilon_anneal_steps."""
        q = self.cfg.q
        frac = min(1.0, self.env_steps / q.epsilon_anneal_steps) if q.epsilon_anneal_steps else 1.0
        return q.epsilon_start + frac * (q.epsilon_finish - q.epsilon_start)

    # -- learning -----------------------------------------------------------------------------
    def update(self, chunk: EpisodeChunk) -> dict[str, float]:
        """Store the collected episodes, take ``q.updates`` gradient steps, publish the next epsilon."""
        q = self.cfg.q
        acted_with = self.policy.epsilon
        self.env_steps += chunk.env_steps
        for episodes in chunk.episodes:
            self.buffer.extend(episodes)
        out: dict[str, float] = {}
        if self.buffer.size >= q.batch_episodes:
            logs = [self.gradient_step(self.buffer.sample(q.batch_episodes)) for _ in range(q.updates)]
            out = {k: sum(log[k] for log in logs) / len(logs) for k in logs[0]}
        self.policy.epsilon = self.epsilon
        return {**out, "epsilon": acted_with, "buffer_episodes": float(self.buffer.size),
                "buffer_mib": self.buffer.used_bytes / 2**20}

    def gradient_step(self, batch: EpisodeBatch) -> dict[str, float]:
        """One gradient step on time-major episodes: obs [T+1, E, N, ...], actions/reward [T, E, ...]."""
        p = self.cfg.q
        filled = batch.filled  # [T, E]
        n_steps, n_eps = filled.shape
        alive = batch.alive.float()  # [T+1, E, N]
        starts = torch.zeros(n_steps + 1, n_eps, dtype=torch.bool, device=filled.device)  # [T+1, E]
        starts[0] = True
        h0 = self.policy.initial_state(n_eps)  # [E, N, H]

        # Agent utilities Q_a(tau^a, .) at every step, one pass for all agents; online and target nets.
        q_all, _ = self.agent(batch.obs, batch.avail, h0, starts)  # [T+1, E, N, A]
        with torch.no_grad():
            q_target_all, _ = self.target_agent(batch.obs, batch.avail, h0, starts)  # [T+1, E, N, A]
        q_taken = q_all[:-1].gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)  # [T, E, N]
        # Bootstrap action u'*: argmax over available actions (masked in the agent's output), double Q.
        q_boot = bootstrap_utilities(q_all[1:].detach(), q_target_all[1:], p.double_q)  # [T, E, N]

        # Credit assignment: the mixer turns utilities into Q_tot(tau, u, s); dead agents add nothing.
        q_tot = self.mixer(q_taken * alive[:-1], batch.state[:-1])  # [T, E, K]
        with torch.no_grad():
            next_tot = self.target_mixer(q_boot * alive[1:], batch.state[1:])  # [T, E, K]

        # Targets: y_t = r_t + gamma (1 - term_t) Q_tot^-(s_{t+1}, u'*), or TD(lambda) over episodes.
        reward = self._rewards(batch.reward, filled).unsqueeze(-1)  # [T, E, 1]
        steps = torch.arange(n_steps, device=filled.device)[:, None]
        last = (steps == batch.length[None] - 1).unsqueeze(-1)  # [T, E, 1]
        y = lambda_targets(reward, next_tot, batch.terminated.unsqueeze(-1), last, p.gamma, p.td_lambda)

        # TD loss over real steps (and alive agents when agents learn independently) + mixer regularizer.
        mask = filled.unsqueeze(-1).expand_as(q_tot)  # [T, E, K]
        if self.mixer.independent:
            mask = mask & batch.alive[:-1]
        mask = mask.float()
        loss = td_loss(q_tot, y, mask) + self.mixer.regularizer(batch.state[:-1], filled.float())

        # Step: Adam on agents + mixer with gradient-norm clipping, then the target networks.
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        (grad_norm,) = clip_grad_norms([self.params], p.max_grad_norm)
        self.opt.step()
        self.updates += 1
        self._update_targets()

        with torch.no_grad():
            count = mask.sum().clamp_min(1)
            return {"loss": float(loss), "grad_norm": float(grad_norm),
                    "td_error_abs": float(((q_tot - y).abs() * mask).sum() / count),
                    "q_tot_mean": float((q_tot * mask).sum() / count),
                    "target_mean": float((y * mask).sum() / count)}

    def _rewards(self, reward: Tensor, filled: Tensor) -> Tensor:
        """Team rewards [T, E], standardized by running statistics of the real steps when asked."""
        if self.reward_norm is None:
            return reward
        self.reward_norm.update(reward[filled])
        return self.reward_norm.normalize(reward)

    @torch.no_grad()
    def _update_targets(self) -> None:
        pairs = ((self.target_agent, self.agent), (self.target_mixer, self.mixer))
        tau = self.cfg.q.target_tau
        if tau is not None:
            for target, online in pairs:
                for t, o in zip(target.parameters(), online.parameters(), strict=True):
                    t.lerp_(o, tau)
        elif self.updates % self.cfg.q.target_interval == 0:
            for target, online in pairs:
                target.load_state_dict(online.state_dict())

    # -- checkpoint state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs; the replay buffer too unless ``q.checkpoint_buffer`` is off."""
        buffer = self.buffer.state_dict() if self.cfg.q.checkpoint_buffer else None
        if buffer is not None:
            logger.info("checkpoint carries the replay buffer: %d episodes, %.1f MiB", self.buffer.size,
                        self.buffer.used_bytes / 2**20)
        return {
            "agent": self.agent.state_dict(), "target_agent": self.target_agent.state_dict(),
            "mixer": self.mixer.state_dict(), "target_mixer": self.target_mixer.state_dict(),
            "opt": self.opt.state_dict(),
            "reward_norm": None if self.reward_norm is None else self.reward_norm.state_dict(),
            "env_steps": self.env_steps, "updates": self.updates, "buffer": buffer,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        self.target_agent.load_state_dict(state["target_agent"])
        self.mixer.load_state_dict(state["mixer"])
        self.target_mixer.load_state_dict(state["target_mixer"])
        self.opt.load_state_dict(state["opt"])
        if self.reward_norm is not None:
            self.reward_norm.load_state_dict(state["reward_norm"])
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        if state["buffer"] is not None:
            self.buffer.load_state_dict(state["buffer"])
        self.policy.epsilon = self.epsilon
