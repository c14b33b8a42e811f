"""Free-rider: a team task with only a team reward, where one agent can live off the others' work.

Each step every agent gets a cue (one of ``n_cues``) and either idles (action 0) or answers
(action ``1 + k``). Workers (agents ``0..N-2``) are right when they answer their cue, but they
see it through a noisy channel: with probability ``cue_noise`` (0.5) a worker observes a random
cue instead, so even a perfect worker is right only ``1 - cue_noise + cue_noise / n_cues``
(62.5 %) of the time. The rider (the last agent) sees its cue clearly and has its own, different
job: it is right when it answers ``(cue + 1) mod n_cues``. Rewards per step:

- a worker's answer pays ``+job_value`` (5) when right and ``-job_value`` when wrong;
- the rider's answer pays ``+rider_value`` (0.6) when right and ``-rider_penalty`` (0.2) when
  wrong, so a rider answering at random adds nothing on average; idling is free.

The team reward is the sum; ``agent_reward`` holds each agent's own part (for ``individual``
credit). Given the true cues (the state) and the joint action the reward is deterministic, but
the workers' answers swing it by +-5 per worker, and nothing the rider does is visible in it at
that scale: a state-value baseline cannot explain the swings, so under a shared reward the
rider's signal is buried and shared-credit learners tend to leave it lazy while the workers
carry the team. A critic of the joint action (COMA) can in principle remove the swings; how
well it does is measured in ``docs/benchmarks.md``. Episodes last ``episode_limit`` (10) steps
and then truncate.

``info["success"]``: the team gave at least ``quota`` (0.5) x (N - 1) x ``episode_limit`` right
answers (15 with the defaults); workers alone reach it in most episodes, so a team with a lazy
rider still succeeds.

Observation of agent i: the cue it sees, one-hot ``[n_cues]``. State: every agent's true cue,
``[N * n_cues]`` (``agent_state_dim = n_cues``). The next cues are drawn whatever the agents do,
so with ``reset(seed)`` every policy meets the same cues (common random numbers for evaluation).

Known optimum (expected team return, defaults, N = 4): workers answer what they see, the rider
answers right: ``10 * (3 * 5 * (0.625 - 0.375) + 0.6)`` = 43.5; with a lazy (idle or random)
rider 37.5; a uniform random team -60 (``python -m accord.envs.tasks.freerider`` measures it).

:class:`FarmableFreeRider` adds a reward-hacking loophole: one more action, "tinker", pays a
shaped activity bonus ``farm_bonus`` each time but does no job, so the shaped team reward can be
farmed while ``info["success"]`` falls.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.envs.tasks._checks import check_discrete_actions
from accord.errors import ConfigError

IDLE = 0


class FreeRider:
    """Batch of ``num_envs`` free-rider envs sharing one RNG."""

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        n_agents: int = 4,
        n_cues: int = 4,
        episode_limit: int = 10,
        job_value: float = 5.0,
        cue_noise: float = 0.5,
        rider_value: float = 0.6,
        rider_penalty: float = 0.2,
        quota: float = 0.5,
    ) -> None:
        if n_agents < 2 or n_cues < 2 or episode_limit < 1:
            raise ConfigError(f"freerider needs n_agents >= 2, n_cues >= 2 and episode_limit >= 1; got "
                              f"n_agents={n_agents}, n_cues={n_cues}, episode_limit={episode_limit}")
        if job_value <= 0 or rider_value <= 0 or rider_penalty < 0 or not 0 <= cue_noise <= 1 or not 0 < quota <= 1:
            raise ConfigError(f"freerider needs job_value, rider_value > 0, rider_penalty >= 0, 0 <= cue_noise <= 1 "
                              f"and 0 < quota <= 1; got job_value={job_value}, rider_value={rider_value}, "
                              f"rider_penalty={rider_penalty}, cue_noise={cue_noise}, quota={quota}")
        self.num_envs, self.device, self.n, self.n_cues = num_envs, torch.device(device), n_agents, n_cues
        self.cue_noise = cue_noise
        self.quota = math.ceil(quota * (n_agents - 1) * episode_limit)
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_shapes={"vector": (n_cues,)},
            state_dim=n_agents * n_cues,
            action_kind="discrete",
            n_actions=1 + n_cues + self._extra_actions(),
            episode_limit=episode_limit,
            agent_names=tuple(f"worker_{i}" for i in range(n_agents - 1)) + ("rider",),
            agent_state_dim=n_cues,
        )
        dev = self.device
        self._gen = torch.Generator(device=dev)
        worker = torch.ones(n_agents, dtype=torch.bool, device=dev)
        worker[-1] = False
        self._worker = worker
        # Answer that is right for cue k: workers answer k, the rider answers (k + 1) mod K.
        self._shift = (~worker).long()  # [N]
        self._value = torch.where(worker, job_value, rider_value)  # [N]
        self._cost = torch.where(worker, job_value, rider_penalty)  # [N]
        b = num_envs
        self.cues = torch.zeros(b, n_agents, dtype=torch.long, device=dev)  # true cues
        self.seen = torch.zeros(b, n_agents, dtype=torch.long, device=dev)  # what each agent observes
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        self.jobs = torch.zeros(b, dtype=torch.long, device=dev)  # right answers so far this episode
        self._alive = torch.ones(b, n_agents, dtype=torch.bool, device=dev)
        self._avail = torch.ones(b, n_agents, self.spec.n_actions, dtype=torch.bool, device=dev)

    def _extra_actions(self) -> int:
        return 0

    def reset(self, seed: int | None = None) -> Step:
        if seed is not None:
            self._gen.manual_seed(seed)
        self.t.zero_()
        self.jobs.zero_()
        self._draw_cues()
        zeros = torch.zeros(self.num_envs, device=self.device)
        false = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return Step(self._obs(), self._state(), zeros, zeros[:, None].expand(-1, self.n).clone(), false,
                    false.clone(), self._alive, self._avail, info={"success": zeros.clone()})

    def step(self, actions: Tensor) -> Step:
        actions = check_discrete_actions(actions, self.num_envs, self.n, self.spec.n_actions, self.device)
        agent_reward, right = self._payoff(actions)  # [B, N] each
        self.jobs += right.sum(-1)
        self.t += 1
        truncated = self.t >= self.spec.episode_limit
        success = (self.jobs >= self.quota).float()
        self._draw_cues()
        obs, state = self._obs(), self._state()
        step = Step(obs, state, agent_reward.sum(-1), agent_reward, torch.zeros_like(truncated), truncated,
                    self._alive, self._avail, info={"success": success})
        if bool(truncated.any()):
            # Cues are independent of the past, so the next cues serve as the final observation too.
            step.final_obs, step.final_state = obs, state
            self.t = torch.where(truncated, 0, self.t)
            self.jobs = torch.where(truncated, 0, self.jobs)
        return step

    def close(self) -> None:
        """Nothing to release: the batch lives in tensors."""

    def _payoff(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Each agent's reward and whether it did a job, ``[B, N]`` each."""
        answering = (actions >= 1) & (actions <= self.n_cues)
        right = answering & (actions - 1 == (self.cues + self._shift) % self.n_cues)  # [B, N]
        reward = right * self._value - (answering & ~right) * self._cost  # [B, N]
        return reward, right

    def _draw_cues(self) -> None:
        b, n, k, gen, dev = self.num_envs, self.n, self.n_cues, self._gen, self.device
        self.cues = torch.randint(k, (b, n), generator=gen, device=dev)
        garbled = (torch.rand(b, n, generator=gen, device=dev) < self.cue_noise) & self._worker
        self.seen = torch.where(garbled, torch.randint(k, (b, n), generator=gen, device=dev), self.cues)

    def _obs(self) -> dict[str, Tensor]:
        return {"vector": torch.nn.functional.one_hot(self.seen, self.n_cues).float()}  # [B, N, K]

    def _state(self) -> Tensor:
        return torch.nn.functional.one_hot(self.cues, self.n_cues).float().flatten(1)  # [B, N * K]


class FarmableFreeRider(FreeRider):
    """Free-rider with a farmable shaped reward: action ``1 + n_cues`` ("tinker") earns an activity bonus.

    Each tinkering agent earns ``farm_bonus`` x the share of the team tinkering that step, the kind
    of "be active together" shaping a designer adds to get a team moving. It does no job, so a team
    that learns to farm it (80 per episode when all tinker, against 43.5 for doing the jobs) raises
    its training reward while ``info["success"]`` falls. The quota defaults to 0.25 here, so that a
    uniform random team succeeds in about a third of its episodes and the fall is visible.
    """

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", n_agents: int = 4, n_cues: int = 4,
                 episode_limit: int = 10, job_value: float = 5.0, cue_noise: float = 0.5, rider_value: float = 0.6,
                 rider_penalty: float = 0.2, quota: float = 0.25, farm_bonus: float = 2.0) -> None:
        super().__init__(num_envs, device, n_agents, n_cues, episode_limit, job_value, cue_noise, rider_value,
                         rider_penalty, quota)
        self.farm_bonus = farm_bonus

    def _extra_actions(self) -> int:
        return 1

    def _payoff(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        reward, right = super()._payoff(actions)
        tinker = actions == 1 + self.n_cues  # [B, N]
        together = tinker.sum(-1, keepdim=True) / self.n  # [B, 1] share of the team tinkering
        return reward + tinker * self.farm_bonus * together, right


def random_return(episodes: int = 4096, seed: int = 0, farmable: bool = False) -> tuple[float, float]:
    """Mean team return and success rate of a uniform random team over one episode per env."""
    env = (FarmableFreeRider if farmable else FreeRider)(episodes)
    env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    total = torch.zeros(episodes)
    for _ in range(env.spec.episode_limit):
        step = env.step(torch.randint(env.spec.n_actions, (episodes, env.n), generator=gen))
        total += step.reward
    return float(total.mean()), float(step.info["success"].mean())


if __name__ == "__main__":
    print("freerider random:", random_return(), " farmable random:", random_return(farmable=True))
