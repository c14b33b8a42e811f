"""Matrix games with known optima, vectorized over a batch of envs: exact checks for credit methods.

- :class:`TwoStep`: the QMIX paper's two-step game (Rashid et al. 2018); optimum 8, and the
  value VDN settles on is 7.
- :class:`MatrixGame`: a normal-form game played ``episode_limit`` times with a constant
  observation (EPyMARL's ``*-nostate`` games); :class:`Climbing` and :class:`Penalty` are the
  classic relative-overgeneralization instances (Claus & Boutilier 1998).

Team reward is the payoff; each agent's individual reward is ``payoff / N``. The observation of
each agent is the one-hot game state, and so is the global state. Nothing here is random, so
``reset(seed)`` ignores the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.envs.tasks._checks import check_discrete_actions
from accord.errors import ConfigError

Payoff = Sequence | Tensor

# Row: agent 0's action, column: agent 1's action. Optimum 11 at (0, 0); the (1, 1) equilibrium
# pays 7 and the safe action 2 pays 5.
CLIMBING_PAYOFF = ((11.0, -30.0, 0.0), (-30.0, 7.0, 6.0), (0.0, 0.0, 5.0))
# Second-step payoffs of the two-step game, indexed [state (2A, 2B), agent 0, agent 1].
TWO_STEP_PAYOFF = (((7.0, 7.0), (7.0, 7.0)), ((0.0, 1.0), (1.0, 8.0)))


def penalty_payoff(k: float) -> tuple[tuple[float, ...], ...]:
    """Penalty game: 10 on the off-diagonal corners, ``-k`` when the agents miscoordinate on them."""
    return ((-k, 0.0, 10.0), (0.0, 2.0, 0.0), (10.0, 0.0, -k))


class MatrixGame:
    """A normal-form game repeated ``episode_limit`` times with a constant observation.

    ``payoff`` has one axis per agent, each of length ``n_actions``: entry ``[a_0, ..., a_{N-1}]``
    is the team reward. Observation and state are the one-hot of the single state, ``[1.0]``.

    A one-shot game (``episode_limit=1``) *terminates* after its play, so one-step value targets
    are the payoff itself. A repeated game *truncates* at the limit, as EPyMARL's time limit does:
    the observation carries no clock, so the end is not part of the state and learners bootstrap.
    """

    def __init__(
        self, num_envs: int, device: str | torch.device = "cpu", *, payoff: Payoff, episode_limit: int = 1
    ) -> None:
        table = torch.as_tensor(payoff, dtype=torch.float32)
        if table.dim() < 1 or table.numel() == 0 or len(set(table.shape)) != 1:
            raise ConfigError(f"matrix game payoff must have one axis per agent, all the same non-zero "
                              f"length (one per action); got shape {list(table.shape)}")
        if episode_limit < 1:
            raise ConfigError(f"matrix game episode_limit must be >= 1, got {episode_limit}")
        self.num_envs, self.device = num_envs, torch.device(device)
        n_agents, n_actions = table.dim(), table.shape[0]
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_shapes={"vector": (1,)},
            state_dim=1,
            action_kind="discrete",
            n_actions=n_actions,
            episode_limit=episode_limit,
        )
        self.payoff = table.to(self.device)
        # Flat index of a joint action: sum_i a_i * A^(N-1-i), matching payoff.flatten().
        self._strides = n_actions ** torch.arange(n_agents - 1, -1, -1, device=self.device)  # [N]
        self._t = torch.zeros(num_envs, dtype=torch.long, device=self.device)

    def reset(self, seed: int | None = None) -> Step:
        """Start every env at play 0; the game has no randomness, so ``seed`` is unused."""
        self._t.zero_()
        false = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return self._output(torch.zeros(self.num_envs, device=self.device), false, false.clone())

    def step(self, actions: Tensor) -> Step:
        actions = check_discrete_actions(actions, self.num_envs, self.spec.n_agents, self.spec.n_actions,
                                         self.device)
        reward = self.payoff.flatten()[(actions * self._strides).sum(-1)]  # [B]
        self._t += 1
        end = self._t >= self.spec.episode_limit
        never = torch.zeros_like(end)
        one_shot = self.spec.episode_limit == 1
        step = self._output(reward, end if one_shot else never, never if one_shot else end)
        if bool(end.any()):
            step.final_obs, step.final_state = step.obs, step.state  # the observation never changes
            self._t = torch.where(end, 0, self._t)
        return step

    def close(self) -> None:
        """Nothing to release: the batch lives in tensors."""

    def _output(self, reward: Tensor, terminated: Tensor, truncated: Tensor) -> Step:
        b, n, a = self.num_envs, self.spec.n_agents, self.spec.n_actions
        ones = torch.ones(b, n, 1, device=self.device)
        return Step(
            obs={"vector": ones},
            state=ones[:, 0],
            reward=reward,
            agent_reward=(reward / n)[:, None].expand(b, n).clone(),
            terminated=terminated,
            truncated=truncated,
            agent_mask=torch.ones(b, n, dtype=torch.bool, device=self.device),
            avail_actions=torch.ones(b, n, a, dtype=torch.bool, device=self.device),
        )


class Climbing(MatrixGame):
    """Climbing game, 2 agents x 3 actions: ``[[11, -30, 0], [-30, 7, 6], [0, 0, 5]]``.

    Optimum 11 per play at (0, 0), reached only if both agents risk the -30 miscoordination;
    independent or monotone learners tend to the (1, 1) equilibrium (7) or the safe 5. With
    ``episode_limit=25`` (EPyMARL's protocol) the returns are: optimum 275, (1, 1) 175, safe 125.
    """

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", episode_limit: int = 1) -> None:
        super().__init__(num_envs, device, payoff=CLIMBING_PAYOFF, episode_limit=episode_limit)


class Penalty(MatrixGame):
    """Penalty game, 2 agents x 3 actions: ``[[-k, 0, 10], [0, 2, 0], [10, 0, -k]]``.

    Optimum 10 per play at (0, 2) or (2, 0); miscoordinating on (0, 0) or (2, 2) costs ``-k``,
    the safe (1, 1) pays 2. With ``episode_limit=25``: optimum 250, safe 50 (where most methods
    stop for k >= 25).
    """

    def __init__(
        self, num_envs: int, device: str | torch.device = "cpu", k: float = 25.0, episode_limit: int = 1
    ) -> None:
        super().__init__(num_envs, device, payoff=penalty_payoff(k), episode_limit=episode_limit)


class TwoStep:
    """QMIX's two-step game: 2 agents, 2 actions, states {1, 2A, 2B} observed as a one-hot.

    Step 1 pays 0 and agent 0's action picks the next state (0 -> 2A, 1 -> 2B; agent 1's action is
    ignored). Step 2 pays ``2A: [[7, 7], [7, 7]]`` or ``2B: [[0, 1], [1, 8]]`` and terminates.
    Optimum 8 (2B then both play 1); 7 is the safe return through 2A, where VDN ends up.
    """

    def __init__(self, num_envs: int, device: str | torch.device = "cpu") -> None:
        self.num_envs, self.device = num_envs, torch.device(device)
        self.spec = EnvSpec(
            n_agents=2,
            obs_shapes={"vector": (3,)},
            state_dim=3,
            action_kind="discrete",
            n_actions=2,
            episode_limit=2,
        )
        self.payoff = torch.tensor(TWO_STEP_PAYOFF, device=self.device)  # [2, 2, 2]
        self._state = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # 0: 1, 1: 2A, 2: 2B

    def reset(self, seed: int | None = None) -> Step:
        """Start every env in state 1; the game has no randomness, so ``seed`` is unused."""
        self._state.zero_()
        false = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return self._output(torch.zeros(self.num_envs, device=self.device), false)

    def step(self, actions: Tensor) -> Step:
        actions = check_discrete_actions(actions, self.num_envs, 2, 2, self.device)
        first = self._state == 0
        second_payoff = self.payoff[(self._state - 1).clamp_min(0), actions[:, 0], actions[:, 1]]  # [B]
        reward = torch.where(first, 0.0, second_payoff)
        self._state = torch.where(first, 1 + actions[:, 0], self._state)
        terminated = ~first
        step = self._output(reward, terminated)
        if bool(terminated.any()):
            step.final_obs, step.final_state = step.obs, step.state
            self._state = torch.where(terminated, 0, self._state)
            step.obs, step.state = self._observe()
        return step

    def close(self) -> None:
        """Nothing to release: the batch lives in tensors."""

    def _observe(self) -> tuple[dict[str, Tensor], Tensor]:
        state = torch.nn.functional.one_hot(self._state, 3).float()  # [B, 3]
        return {"vector": state[:, None].expand(self.num_envs, 2, 3).clone()}, state  # [B, N, 3]

    def _output(self, reward: Tensor, terminated: Tensor) -> Step:
        b = self.num_envs
        obs, state = self._observe()
        return Step(
            obs=obs,
            state=state,
            reward=reward,
            agent_reward=(reward / 2)[:, None].expand(b, 2).clone(),
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
            agent_mask=torch.ones(b, 2, dtype=torch.bool, device=self.device),
            avail_actions=torch.ones(b, 2, 2, dtype=torch.bool, device=self.device),
        )
