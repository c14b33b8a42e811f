"""A team state-value network V(s) that credit modules train for themselves.

LIIR's extrinsic critic and the learned potential of potential-based shaping are both the value of
the state under the team reward. It regresses lambda-returns of the team reward, normalized like
MAPPO's values. The batch does not keep the final state of a truncated episode, so V(s_{t+1}) there
is taken as V(s_t).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from accord.credit.base import reward_gae
from accord.models.value_norm import ValueNorm
from accord.rollout import Rollout


class StateValue(nn.Module):
    """V(s): ``[..., S] -> [...]`` (de-normalized)."""

    def __init__(self, state_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(state_dim), nn.Linear(state_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.norm = ValueNorm()

    def forward(self, state: Tensor) -> Tensor:
        return self.norm.denormalize(self.net(state).squeeze(-1))

    @torch.no_grad()
    def targets(self, batch: Rollout, next_state: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
        """(GAE advantages, normalized lambda-return targets), ``[T, B]`` each, of the team reward.

        Folds the returns into the normalizer: call once per batch, then :meth:`loss` per step.
        """
        v = self(batch.state).unsqueeze(-1)  # [T, B, 1]
        v_next = self(next_state).unsqueeze(-1)  # [T, B, 1]; truncated episodes bootstrap from their final state
        adv = reward_gae(batch.reward.unsqueeze(-1), batch, v, v_next, gamma, lam)  # [T, B, 1]
        returns = (adv + v).squeeze(-1)
        self.norm.update(returns)
        return adv.squeeze(-1), self.norm.normalize(returns)

    def loss(self, state: Tensor, targets: Tensor) -> Tensor:
        """Squared error of the normalized prediction against :meth:`targets`."""
        return (self.net(state).squeeze(-1) - targets).pow(2).mean()
