"""Hidden goals: a task that needs communication, vectorized in torch over a batch of envs.

Each of N agents has a goal, one of K options drawn at the start of an episode, that it cannot see:
agent i sees the goal of agent ``i - 1`` (mod N) instead (the hidden information is held by another
agent, as in MPE's ``simple_reference``). Every step each agent names a goal; it scores when it names
its own. Without messages an agent can only guess; with ``task.comm.enabled`` its neighbour can
tell it (a message arrives one step after it is sent, see :mod:`accord.comm`).

- Actions (K + 1): 0 waits, ``k`` in 1..K names goal ``k - 1``.
- Team reward per step: the fraction of agents naming their own goal; individual reward of agent i:
  1 when it does. ``info["success"]``: every agent named its goal at the episode's last step.
- Observation of agent i (K + 1): one-hot of agent ``i - 1``'s goal, and the time ``t / T``.
- State (N K + 1): every agent's goal, and the time. Episodes end (terminate) after T steps.

Team return per episode with T steps (``episode_limit``, 6), K goals (``n_goals``, 4), for a
memoryless policy that sees a message only on the step after it was sent (closed form, checked
in ``tests/test_comm.py``):

| policy | return | T = 6, K = 4 |
|---|---|---|
| uniformly random actions | T / (K + 1) | 1.2 |
| best without messages (guess) | T / K | 1.5 |
| b messages per agent per episode | 1 / K + m + (T - 1 - m) / K, m = min(b, T - 1) | b = 1: 2.25, 2: 3.0, 4: 4.5 |
| optimum (unlimited messages) | 1 / K + T - 1 | 5.25 |

The first step is always a guess: no message can have arrived yet.
"""

from __future__ import annotations

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.envs.tasks._checks import check_discrete_actions
from accord.errors import ConfigError


def optimal_return(episode_limit: int, n_goals: int, budget: int | None) -> float:
    """The team return of the best memoryless policy with ``budget`` messages per agent (None: unlimited)."""
    m = episode_limit - 1 if budget is None else min(budget, episode_limit - 1)
    return 1 / n_goals + m + (episode_limit - 1 - m) / n_goals


class HiddenGoal:
    """Batch of ``num_envs`` hidden-goal envs sharing one RNG (see the module docstring)."""

    supports_messages = True  # accord.comm: discrete actions, vector observations

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", n_agents: int = 2, n_goals: int = 4,
                 episode_limit: int = 6) -> None:
        if n_agents < 2 or n_goals < 2 or episode_limit < 1:
            raise ConfigError(f"hidden_goal needs n_agents >= 2, n_goals >= 2 and episode_limit >= 1; got "
                              f"{n_agents}, {n_goals}, {episode_limit}")
        self.num_envs, self.device = num_envs, torch.device(device)
        self.n, self.k, self.limit = n_agents, n_goals, episode_limit
        self.spec = EnvSpec(n_agents=n_agents, obs_shapes={"vector": (n_goals + 1,)}, state_dim=n_agents * n_goals + 1,
                            action_kind="discrete", n_actions=n_goals + 1, episode_limit=episode_limit)
        self._gen = torch.Generator(device=self.device)
        self.goals = torch.zeros(num_envs, n_agents, dtype=torch.long, device=self.device)
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._seen = torch.arange(-1, n_agents - 1, device=self.device) % n_agents  # agent i sees i - 1's goal
        self._alive = torch.ones(num_envs, n_agents, dtype=torch.bool, device=self.device)
        self._avail = torch.ones(num_envs, n_agents, n_goals + 1, dtype=torch.bool, device=self.device)

    def reset(self, seed: int | None = None) -> Step:
        if seed is not None:
            self._gen.manual_seed(seed)
        self._redraw(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        zeros = torch.zeros(self.num_envs, device=self.device)
        false = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return self._output(zeros, zeros[:, None].expand(-1, self.n).clone(), false, zeros)

    def step(self, actions: Tensor) -> Step:
        actions = check_discrete_actions(actions, self.num_envs, self.n, self.k + 1, self.device)
        hit = (actions == self.goals + 1).float()  # [B, N]
        self.t += 1
        done = self.t >= self.limit
        step = self._output(hit.mean(-1), hit, done, hit.min(-1).values)
        if bool(done.any()):
            step.final_obs, step.final_state = step.obs, step.state
            self._redraw(done)
            step.obs, step.state = self._observe()
        return step

    def close(self) -> None:
        """Nothing to release: the batch lives in tensors."""

    def _redraw(self, where: Tensor) -> None:
        goals = torch.randint(0, self.k, (self.num_envs, self.n), generator=self._gen, device=self.device)
        self.goals = torch.where(where[:, None], goals, self.goals)
        self.t = self.t.masked_fill(where, 0)

    def _observe(self) -> tuple[dict[str, Tensor], Tensor]:
        one_hot = torch.nn.functional.one_hot(self.goals, self.k).float()  # [B, N, K]
        clock = (self.t.float() / self.limit)[:, None]  # [B, 1]
        obs = torch.cat([one_hot[:, self._seen], clock[:, None].expand(-1, self.n, 1)], dim=-1)  # [B, N, K + 1]
        return {"vector": obs}, torch.cat([one_hot.flatten(1), clock], dim=-1)  # state [B, N K + 1]

    def _output(self, reward: Tensor, agent_reward: Tensor, done: Tensor, success: Tensor) -> Step:
        obs, state = self._observe()
        return Step(obs, state, reward, agent_reward, done, torch.zeros_like(done), self._alive, self._avail,
                    info={"success": success})
