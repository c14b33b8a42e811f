"""Agent utilities ``Q_a(tau^a, .)`` for value-based learners, behind the actor's acting interface.

The network is the actor's (observation encoder -> input norm -> MLP with agent id -> optional GRU ->
per-agent head, all driven by the ``model:`` config), so :mod:`accord.evaluate` and ``accord eval`` play
a Q learner exactly like a policy: ``forward`` returns Q-values ``[T, B, N, A]`` with unavailable actions
filled with -1e9, which makes every argmax respect the mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

from accord.config import ModelConfig
from accord.envs.base import EnvSpec
from accord.errors import ConfigError
from accord.models.actor_critic import Actor

_UNAVAILABLE = -1e8  # Actor.forward fills unavailable actions with -1e9; anything below this is masked


class QAgent(Actor):
    """Greedy (``deterministic=True``) or epsilon-greedy (``deterministic=False``) over available actions.

    ``epsilon`` is set by the learner from its schedule and travels with it, so ``accord eval --stochastic``
    plays the exploration policy of the checkpoint's moment.
    """

    def __init__(self, spec: EnvSpec, cfg: ModelConfig) -> None:
        if spec.action_kind != "discrete":
            raise ConfigError("value-based learners (algorithm 'q') need discrete actions: Q-values are one per "
                              "action; this task has continuous actions, use algorithm=ppo")
        super().__init__(spec, cfg)
        self.epsilon = 0.0

    def sample(self, params: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Actions ``[..., N]`` and their log-probability under the (epsilon-)greedy policy."""
        q = params
        avail = q > _UNAVAILABLE  # [..., N, A]
        greedy = q.argmax(-1)
        eps = 0.0 if deterministic else self.epsilon
        act = greedy
        if eps > 0:
            uniform = torch.rand(q.shape, device=q.device).masked_fill(~avail, -1.0).argmax(-1)
            act = torch.where(torch.rand(greedy.shape, device=q.device) < eps, uniform, greedy)
        prob = eps / avail.sum(-1) + (1 - eps) * (act == greedy)
        return act, prob.log()
