"""Multi-agent PPO: MAPPO (centralized critic, CTDE) and IPPO (local critic, decentralized).

Follows Yu et al. 2022, "The Surprising Effectiveness of PPO in Cooperative Multi-Agent Games"
(arXiv 2103.01955), and its reference implementation's defaults; deviations are listed in
``accord/algos/README.md``. One :meth:`PPO.update` reads like the paper's algorithm box:

    (reward standardization) -> targets (value de-normalization) -> credit assignment (the credit
    module's advantages and value targets) -> (advantage normalization) -> for each epoch and
    minibatch: clipped surrogate, entropy, clipped Huber value loss -> step -> the credit module
    trains what it owns.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from accord.compile import compiled
from accord.config import DECOUPLED, Config
from accord.credit import CREDIT
from accord.credit.base import CreditContext, CreditModule, masked_mean, normalize
from accord.credit.vtrace import truncated_ratios
from accord.envs.base import EnvSpec
from accord.models.actor_critic import Critic
from accord.models.value_norm import RunningMeanStd, ValueNorm
from accord.optim import adam_, adam_state, adam_step, clip_grad_norms, clip_grads_
from accord.policy import Policy
from accord.rollout import Rollout

# Adam as MAPPO and CleanRL configure it (eps 1e-5); the compiled minibatch step reads these too.
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-5


def clipped_surrogate(ratio: Tensor, adv: Tensor, clip: float, weight: Tensor) -> Tensor:
    """Eq. (PPO-clip): -E[min(r A, clip(r, 1-eps, 1+eps) A)], r = pi/pi_old, over alive agents: ``weight``
    is each entry's share of the mean (0 for dead agents; see :meth:`PPO._minibatch_losses`)."""
    adv = adv * weight  # one weighting of the constants, not of the differentiated surrogate
    return -torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).sum()


def value_loss(v: Tensor, v_old: Tensor, target: Tensor, clip: float | None, huber: float | None,
               weight: Tensor) -> Tensor:
    """max(l(R - V), l(R - V_clip)), V_clip = V_old + clip(V - V_old, -eps, eps); l Huber or squared;
    the mean over alive agents, ``weight`` as in :func:`clipped_surrogate`."""
    def loss(err: Tensor) -> Tensor:
        if huber is None:
            return 0.5 * err.pow(2)
        return nn.functional.huber_loss(err, torch.zeros_like(err), reduction="none", delta=huber)

    l_v = loss(target - v)
    if clip is not None:
        v_clip = v_old + (v - v_old).clamp(-clip, clip)
        l_v = torch.maximum(l_v, loss(target - v_clip))
    return (l_v * weight).sum()


LOG_KEYS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "actor_grad_norm",
            "critic_grad_norm")


class Minibatch(NamedTuple):
    """What one gradient step reads. Leading dims ``[M]`` (shuffled env steps, feed-forward models)
    or ``[T, b]`` (whole sequences of b envs, recurrent models); then ``[N, ...]``."""

    obs: dict[str, Tensor]
    avail: Tensor
    actions: Tensor
    logp: Tensor  # log pi_old
    values: Tensor  # V_old (normalized scale)
    state: Tensor
    mask: Tensor  # float; dead agents leave every loss
    adv: Tensor
    targets: Tensor
    starts: Tensor | None = None
    h_actor: Tensor | None = None
    h_critic: Tensor | None = None


def minibatches(batch: Rollout, logp_old: Tensor, adv: Tensor, targets: Tensor, n: int,
                recurrent: bool) -> Iterator[Minibatch]:
    """One epoch's ``n`` shuffled minibatches. Feed-forward models flatten ``[T, B]`` and shuffle env
    steps (as CleanRL and JaxMARL); recurrent ones split over envs so that sequences stay whole.
    ``logp_old`` is PPO's pi_old: the actors' ``batch.logp``, or the learner's own when they lag."""
    fields = (batch.obs, batch.avail, batch.actions, logp_old, batch.values, batch.state,
              batch.agent_mask.float(), adv, targets)
    if not recurrent:  # one gather per field and epoch; the minibatches are contiguous slices of it
        perm = torch.randperm(adv.shape[0] * adv.shape[1], device=adv.device)
        # index_select copies whole rows: 2.5-4x faster than advanced indexing (x[perm]) here on CPU.
        shuffled = [{m: x.flatten(0, 1).index_select(0, perm).chunk(n) for m, x in f.items()} if isinstance(f, dict)
                    else f.flatten(0, 1).index_select(0, perm).chunk(n) for f in fields]
        for i in range(len(shuffled[-1])):
            yield Minibatch(*({m: x[i] for m, x in f.items()} if isinstance(f, dict) else f[i] for f in shuffled))
        return
    for idx in torch.randperm(adv.shape[1], device=adv.device).chunk(n):
        yield Minibatch(*({m: x.index_select(1, idx) for m, x in f.items()} if isinstance(f, dict)
                          else f.index_select(1, idx) for f in fields),
                        starts=batch.starts.index_select(1, idx), h_actor=batch.h_actor.index_select(0, idx),
                        h_critic=None if batch.h_critic is None else batch.h_critic.index_select(0, idx))


class _Nets(nn.Module):
    """The actor and the critic as one module whose forward is the minibatch losses: what
    ``torch.func`` differentiates in the fused minibatch step."""

    def __init__(self, ppo: PPO) -> None:
        super().__init__()
        self.actor, self.critic = ppo.actor, ppo.critic
        self.losses = ppo._minibatch_losses
        names = {id(p): name for name, p in self.named_parameters()}
        # In the order of accord.optim.adam_state over the actor's optimizer, then the critic's.
        self.names = [names[id(p)] for opt in (ppo.actor_opt, ppo.critic_opt) for group in opt.param_groups
                      for p in group["params"]]

    def forward(self, mb: Minibatch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return self.losses(mb)


class PPO:
    """Owns the actor (shared with its :class:`~accord.policy.Policy`), critic, value normalizer and
    optimizers. It never sees the env: the loop collects with ``self.policy`` and calls :meth:`update`."""

    collects = "rollout"  # what the loop's runner must hand to update(): a Rollout [T, B, N, ...]
    corrects_lag = True  # V-trace (with a credit method that corrects_lag), for runner async and ray

    def __init__(self, cfg: Config, spec: EnvSpec, device: torch.device) -> None:
        self.cfg = cfg
        centralized = cfg.centralized_critic
        if centralized and spec.state_dim == 0:
            from accord.errors import ConfigError

            raise ConfigError(f"task '{cfg.task.name}' has no global state for a centralized critic; "
                              "use architecture=decentralized or ppo.critic=local")
        self.policy = Policy.build(spec, cfg.model, log_std_init=cfg.ppo.log_std_init, device=device)
        self.actor = self.policy.actor
        self.critic = Critic(spec, cfg.model.for_critic(), centralized).to(device)
        # ppo.target_tau: bootstrap values come from a slowly following copy (EPyMARL's MAPPO).
        self.target_critic = None if cfg.ppo.target_tau is None else copy.deepcopy(self.critic).requires_grad_(False)
        self.value_norm = ValueNorm().to(device) if cfg.ppo.value_norm else None
        # Running statistics of the team and the individual rewards (ppo.standardize_rewards).
        stats = RunningMeanStd if cfg.ppo.reward_stats == "running" else ValueNorm
        self.reward_norm = nn.ModuleList([stats(), stats()]).to(device) if cfg.ppo.standardize_rewards else None
        # Fused Adam: one kernel per step instead of a dozen small ops per parameter (~20% of an update).
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.ppo.lr, betas=ADAM_BETAS, eps=ADAM_EPS,
                                          fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.ppo.critic_lr, betas=ADAM_BETAS,
                                           eps=ADAM_EPS, fused=True)
        self._groups = (list(self.actor.parameters()), list(self.critic.parameters()))  # no module walk per step
        self.credit: CreditModule = CREDIT[cfg.credit.name].fn(cfg, spec).to(device)
        self.rollout_len = cfg.ppo.rollout_len
        self._h_critic: Tensor | None = None  # the critic's recurrent state where the last batch stopped
        self.lagged = cfg.runner.kind in DECOUPLED  # actors act with older weights: V-trace
        self.env_steps = 0
        self.updates = 0
        self._losses = compiled(self._minibatch_losses, cfg.train.compile, "the PPO minibatch loss")
        # train.compile on feed-forward networks: the whole minibatch step is one compiled program
        # (recurrent ones keep the compiled loss: the GRU's episode-start branch reads the data).
        self._fused_step = None
        if cfg.train.compile is not False and not (self.actor.body.recurrent or self.critic.body.recurrent):
            self._nets = _Nets(self)
            # Its Python state (config, networks) is fixed; parameters, optimizer state, learning rates and
            # the minibatch come in as tensors, whose shapes follow from the minibatch's: a program for each
            # minibatch shape, called without guards.
            self._fused_step = compiled(self._functional_step, cfg.train.compile, "the PPO minibatch step",
                                        cpp_wrapper=True, shapes=lambda actor, critic, mb, lrs: mb.adv.shape)

    def denormalize(self, v: Tensor) -> Tensor:
        return v if self.value_norm is None else self.value_norm.denormalize(v)

    # -- learning -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_critic(self, batch: Rollout) -> None:
        """Fill the batch's ``values``, ``last_values``, ``final_values`` and ``h_critic``."""
        t_len, b = batch.reward.shape
        if self.critic.body.recurrent and (self._h_critic is None or self._h_critic.shape[0] != b):
            self._h_critic = batch.avail.new_zeros(b, *batch.agent_mask.shape[2:], self.cfg.model.hidden,
                                                   dtype=torch.float32)
        batch.h_critic = self._h_critic
        v, batch.final_values, hs = self._critic_pass(self.critic, batch)
        batch.values, batch.last_values = v[:t_len], v[t_len]
        if hs is not None:
            self._h_critic = hs[t_len - 1]  # after the last step taken; the next batch starts there

    def _critic_pass(self, critic: Critic, batch: Rollout) -> tuple[Tensor, Tensor, Tensor | None]:
        """V over the T + 1 observations ``[T+1, B, N]`` and over the final observations of truncated
        episodes (``[T, B, N]``, 0 elsewhere), and the recurrent states after each step (or None)."""
        obs = {m: torch.cat([x, batch.last_obs[m][None]]) for m, x in batch.obs.items()}
        state = torch.cat([batch.state, batch.last_state[None]])
        starts = torch.cat([batch.starts, batch.last_starts[None]])
        v, hs = critic(obs, state, batch.h_critic, starts, every_hidden=True)  # [T+1, B, N]
        final = torch.zeros_like(v[:-1])
        t_idx, b_idx = batch.truncated.nonzero(as_tuple=True)  # [K] each: only truncated steps need it
        if len(t_idx):
            obs = {m: x[t_idx, b_idx][None] for m, x in batch.final_obs.items()}  # [1, K, N, ...]
            # hs[t] is the recurrent state after step t: where the final observation's value continues from.
            h = None if hs is None else hs[t_idx, b_idx]  # [K, N, H]
            out, _ = critic(obs, batch.next_state[t_idx, b_idx][None], h,
                            torch.zeros(1, len(t_idx), dtype=torch.bool, device=v.device))
            final[t_idx, b_idx] = out[0]
        return v, final, hs

    def update(self, batch: Rollout) -> dict[str, float]:
        """One PPO update on a collected batch; the policy acts with the new weights right after."""
        p = self.cfg.ppo
        self.env_steps += batch.reward.numel()
        self.evaluate_critic(batch)
        if self.reward_norm is not None:
            batch = self._standardized(batch)

        # Targets: de-normalized values, bootstrap from the next state (final obs when truncated).
        values = self.denormalize(batch.values)
        if self.target_critic is None:
            v, final = torch.cat([batch.values, batch.last_values[None]]), batch.final_values
        else:
            with torch.no_grad():
                v, final, _ = self._critic_pass(self.target_critic, batch)
        next_values = self.denormalize(torch.where(batch.truncated[..., None], final, v[1:]))  # [T, B, N]
        # Lagged actors (behaviour mu): V-trace weights pi/mu; pi at the update's start is PPO's pi_old.
        logp_old, rho, c = batch.logp, None, None
        if self.lagged:
            with torch.no_grad():
                params, _ = self.actor(batch.obs, batch.avail, batch.h_actor, batch.starts)
                logp_old = self.actor.log_prob(params, batch.actions)  # [T, B, N]
            rho, c = truncated_ratios(logp_old, batch.logp, p.vtrace_rho, p.vtrace_c)
        # Credit assignment: per-agent advantages and value targets from the credit module.
        ctx = CreditContext(values, next_values, batch.next_state, self.actor, rho, c)
        signals = self.credit.advantages(batch, ctx)
        returns = signals.returns
        if self.value_norm is not None:
            self.value_norm.update(returns[batch.agent_mask])
            targets = self.value_norm.normalize(returns)
        else:
            targets = returns
        # Advantage normalization over alive agents only.
        adv = normalize(signals.advantages, batch.agent_mask) if p.normalize_advantages else signals.advantages

        # Epochs x minibatches; metrics stay tensors until one host sync after the last step.
        logs = []
        state = (adam_state(self.actor_opt), adam_state(self.critic_opt)) if self._fused_step else None
        # The learning rates as a tensor: a compiled step reads them as data, so a lowered rate (the
        # non-finite guard halves it) needs no recompile.
        lrs = torch.tensor([opt.param_groups[0]["lr"] for opt in (self.actor_opt, self.critic_opt)]) if state else None
        for _ in range(p.epochs):
            for mb in minibatches(batch, logp_old, adv, targets, p.minibatches, self.cfg.model.recurrent):
                if state is not None:
                    logs.append(self._fused_step(*state, mb, lrs))
                    continue
                policy_loss, v_loss, entropy, kl, clipped = self._losses(mb)
                grads = self._step(policy_loss - p.entropy_coef * entropy + p.value_coef * v_loss)
                logs.append(torch.stack([policy_loss.detach(), v_loss.detach(), entropy.detach(), kl, clipped,
                                         *grads]))
        out = dict(zip(LOG_KEYS, torch.stack(logs).mean(0).tolist(), strict=True))
        if self.target_critic is not None:  # theta' <- tau theta + (1 - tau) theta', once per update
            with torch.no_grad():
                for target, param in zip(self.target_critic.parameters(), self._groups[1], strict=True):
                    target.lerp_(param, p.target_tau)
        # The credit module trains what it owns (Q critic, intrinsic reward, potential) and reports.
        out.update(self.credit.update(batch, ctx))
        out.update(self.credit.stats())
        var_ret = returns[batch.agent_mask].var()
        if rho is not None:
            out["vtrace_rho_mean"] = float(masked_mean(rho, batch.agent_mask.float()))
        out["explained_variance"] = float(1 - (returns - values)[batch.agent_mask].var() / var_ret.clamp_min(1e-8))
        self.updates += 1
        return out

    def _standardized(self, batch: Rollout) -> Rollout:
        """The batch with rewards standardized by running statistics of real steps (the runner's batch
        is left as collected); the mean is subtracted too, as EPyMARL does."""
        team, agents = self.reward_norm
        alive = batch.agent_mask
        team.update(batch.reward[alive.any(-1)])
        agents.update(batch.agent_reward[alive])
        return replace(batch, reward=team.normalize(batch.reward), agent_reward=agents.normalize(batch.agent_reward))

    def _minibatch_losses(self, mb: Minibatch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Policy loss, value loss, entropy, approximate KL and clip fraction of one minibatch: the part
        of the update that ``train.compile`` compiles (actor and critic in one graph)."""
        p = self.cfg.ppo
        params, _ = self.actor(mb.obs, mb.avail, mb.h_actor, mb.starts)
        logp, entropy = self.actor.log_prob_entropy(params, mb.actions)
        v, _ = self.critic(mb.obs, mb.state, mb.h_critic, mb.starts)
        # Masked means as weighted sums: the alive agents' count is divided out once, not in each mean.
        weight = mb.mask / mb.mask.sum().clamp_min(1.0)
        adv = mb.adv
        if p.nstep is not None:  # EPyMARL: R - V(s) against the critic as it trains, every epoch
            adv = self.denormalize(mb.targets) - self.denormalize(v.detach())
            if p.normalize_advantages:
                adv = normalize(adv, mb.mask)
        log_ratio = logp - mb.logp
        ratio = log_ratio.exp()
        # Eq. 1 (MAPPO): clipped surrogate with an entropy bonus.
        policy_loss = clipped_surrogate(ratio, adv, p.clip, weight)
        entropy = (entropy * weight).sum()
        # Eq. 2 (MAPPO): clipped Huber value loss on normalized targets.
        v_loss = value_loss(v, mb.values, mb.targets, p.clip if p.value_clip else None, p.huber_delta, weight)
        with torch.no_grad():
            kl = ((ratio - 1 - log_ratio) * weight).sum()
            clipped = (((ratio - 1).abs() > p.clip) * weight).sum()
        return policy_loss, v_loss, entropy, kl, clipped

    def _step(self, loss: Tensor) -> tuple[Tensor, Tensor]:
        """One backward through actor and critic (they share no parameters), then each clipped and stepped."""
        for group in self._groups:
            for param in group:
                param.grad = None
        loss.backward()
        norms = tuple(clip_grad_norms(self._groups, self.cfg.ppo.max_grad_norm))
        adam_step(self.actor_opt)
        adam_step(self.critic_opt)
        return norms

    def _functional_step(self, actor_state: tuple[list[Tensor], ...], critic_state: tuple[list[Tensor], ...],
                         mb: Minibatch, lrs: Tensor) -> Tensor:
        """:meth:`_minibatch_losses`, :meth:`_step` and both Adam steps as one function of the parameters
        and the optimizers' state (see ``accord.optim.adam_state``), for ``train.compile`` to compile
        whole; returns the minibatch's row of ``LOG_KEYS``."""
        p = self.cfg.ppo
        params = [*actor_state[0], *critic_state[0]]

        def loss(flat: list[Tensor]) -> tuple[Tensor, tuple[Tensor, ...]]:
            policy_loss, v_loss, entropy, kl, clipped = torch.func.functional_call(
                self._nets, dict(zip(self._nets.names, flat, strict=True)), (mb,))
            return policy_loss - p.entropy_coef * entropy + p.value_coef * v_loss, (policy_loss, v_loss, entropy,
                                                                                    kl, clipped)

        grads, logged = torch.func.grad(loss, has_aux=True)(params)
        n_actor = len(actor_state[0])
        norms = clip_grads_([grads[:n_actor], grads[n_actor:]], p.max_grad_norm)
        for (ps, *moments), g, lr in ((actor_state, grads[:n_actor], lrs[0]), (critic_state, grads[n_actor:], lrs[1])):
            adam_(ps, g, *moments, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        return torch.stack([*logged, *norms]).detach()

    # -- checkpoint state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "target_critic": None if self.target_critic is None else self.target_critic.state_dict(),
            "value_norm": None if self.value_norm is None else self.value_norm.state_dict(),
            "reward_norm": None if self.reward_norm is None else self.reward_norm.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "credit": self.credit.state_dict(),
            "env_steps": self.env_steps, "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        if self.target_critic is not None:
            self.target_critic.load_state_dict(state["target_critic"])
        if self.value_norm is not None:
            self.value_norm.load_state_dict(state["value_norm"])
        if self.reward_norm is not None:
            self.reward_norm.load_state_dict(state["reward_norm"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.credit.load_state_dict(state["credit"])
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
