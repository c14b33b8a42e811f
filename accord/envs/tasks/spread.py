"""Cooperative navigation ("spread"), vectorized in torch over a batch of envs.

N agents must cover N landmarks without colliding (MPE ``simple_spread``, Lowe et al. 2017),
re-implemented so that all B envs step in one set of tensor ops with no Python loop over envs.

Physics follow MPE: force = 5 * action, velocity damping 0.25, dt 0.1, unit mass, soft contact
forces between agents (radius 0.15). Agents start uniformly in [-1, 1]^2 at rest, landmarks in
[-0.9, 0.9]^2 (both scaled by ``spawn_range``, 1 by default; the robustness suite widens it).
Episodes last ``episode_limit`` steps (25) and then truncate. ``compile`` (true | false | auto, as
``train.compile``) runs the step's physics, rewards and observations as one compiled kernel, for a
few envs, where per-op overhead is most of a step's time (docs/speed.md).

- Discrete actions (5): 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y. Continuous: a force in [-1, 1]^2.
- Team reward per step: ``-sum_l min_i |p_i - l| - C``, C the number of colliding ordered
  agent pairs. Individual reward of agent i: ``-min_l |p_i - l| - C_i``.
- Observation of agent i (4N + 2): own velocity, own position, landmarks relative to i, other
  agents relative to i. (MPE's communication channel is left out: agents never speak here.)
- State (6N): every agent's (position, velocity), then every landmark; ``agent_state_dim`` = 4.

Reference scores, team return per episode (sum of team rewards over 25 steps), measured over 4096
episodes (``python -m accord.envs.tasks.spread``):

| agents | uniformly random | scripted :func:`assignment_actions` | good learned policy |
|---|---|---|---|
| 2 | about -41 | about -12 | -26 or better |
| 3 | about -51 | about -17 | -25 or better |

The scripted controller (best assignment + damped steering) is strong, not optimal. "Good learned"
is what MAPPO/IPPO reach in this project's tests and demo (docs/benchmarks.md).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from accord.compile import compiled
from accord.envs.base import EnvSpec, Step
from accord.errors import EnvError

DT = 0.1
DAMPING = 0.25
ACCEL = 5.0
AGENT_SIZE = 0.15
CONTACT_FORCE = 100.0
CONTACT_MARGIN = 1e-3
# Discrete action -> unit force direction.
_DIRECTIONS = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])


class Spread:
    """Batch of ``num_envs`` cooperative-navigation envs sharing one RNG."""

    supports_messages = True  # accord.comm, with discrete actions

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        n_agents: int = 3,
        episode_limit: int = 25,
        continuous: bool = False,
        spawn_range: float = 1.0,
        compile: bool | str = False,
    ) -> None:
        if n_agents < 1:
            raise EnvError(f"spread needs at least 1 agent, got n_agents={n_agents}")
        self.num_envs, self.device, self.n = num_envs, torch.device(device), n_agents
        self.continuous = continuous
        self.spawn_range = float(spawn_range)  # agents start in [-r, r]^2, landmarks in [-0.9 r, 0.9 r]^2
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_shapes={"vector": (4 * n_agents + 2,)},
            state_dim=6 * n_agents,
            action_kind="continuous" if continuous else "discrete",
            n_actions=2 if continuous else 5,
            episode_limit=episode_limit,
            agent_state_dim=4,
        )
        self._gen = torch.Generator(device=self.device)
        self._dirs = _DIRECTIONS.to(self.device)
        self._not_self = ~torch.eye(n_agents, dtype=torch.bool, device=self.device)  # [N, N]
        # others[i] = the other agents of agent i, in order: one gather builds every agent's view.
        self._others = torch.arange(n_agents, device=self.device).expand(n_agents, -1)[self._not_self]
        self._others = self._others.view(n_agents, n_agents - 1)  # [N, N-1]
        b, n = num_envs, n_agents
        self.pos = torch.zeros(b, n, 2, device=self.device)
        self.vel = torch.zeros(b, n, 2, device=self.device)
        self.landmarks = torch.zeros(b, n, 2, device=self.device)
        self.t = torch.zeros(b, dtype=torch.long, device=self.device)
        self._avail = torch.ones(b, n, self.spec.avail_dim, dtype=torch.bool, device=self.device)
        self._alive = torch.ones(b, n, dtype=torch.bool, device=self.device)
        # The physics, rewards and observations of a step as one compiled kernel (accord.compile): at a
        # few envs a step is dozens of tiny ops, and their per-op overhead is most of its time.
        self._advance = compiled(_advance, compile, "the spread step", "task.params.compile")

    # -- episode control -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Step:
        if seed is not None:
            self._gen.manual_seed(seed)
        self._respawn(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return Step.first(*self._observe(), self._alive, self._avail)

    def _respawn(self, where: Tensor) -> None:
        """Draw fresh episodes for envs where ``where`` [B] is True (one draw for all B: no loop)."""
        size = (self.num_envs, self.n, 2)
        u_pos = torch.rand(size, generator=self._gen, device=self.device)
        u_marks = torch.rand(size, generator=self._gen, device=self.device)
        self.set_pure_state(_fresh_episodes(where, u_pos, u_marks, self.spawn_range, self.pure_state()))

    def step(self, actions: Tensor) -> Step:
        force = ACCEL * self._force(actions)  # [B, N, 2]
        self.pos, self.vel, self.t, reward, agent_reward, truncated, obs, state = self._advance(
            self.pos, self.vel, self.landmarks, self.t, force, self._not_self, self._others, self.spec.episode_limit)
        step = Step({"vector": obs}, state, reward, agent_reward, torch.zeros_like(truncated), truncated,
                    self._alive, self._avail)
        if bool(truncated.any()):
            step.final_obs, step.final_state = step.obs, state
            self._respawn(truncated)
            step.obs, step.state = self._observe()
        return step

    def close(self) -> None:
        """Nothing to release: the batch lives in tensors."""

    # -- the pure step (accord.runners.fused) ----------------------------------------------------------
    def pure_state(self) -> tuple[Tensor, ...]:
        """The batch's whole state, what :meth:`pure_step` takes and returns."""
        return self.pos, self.vel, self.landmarks, self.t

    def set_pure_state(self, state: tuple[Tensor, ...]) -> None:
        self.pos, self.vel, self.landmarks, self.t = state

    def pure_noise(self, steps: int) -> Tensor:
        """Uniform draws [steps, B, N, 4] from this batch's generator for ``steps`` steps' autoresets."""
        return torch.rand(steps, self.num_envs, self.n, 4, generator=self._gen, device=self.device)

    def pure_step(self, state: tuple[Tensor, ...], actions: Tensor, noise: Tensor) -> tuple[tuple[Tensor, ...], Step]:
        """:meth:`step` as a function of tensors alone, for a runner that compiles acting and stepping as one
        program. Branch-free: every env draws a fresh episode from ``noise`` [B, N, 4] (one
        :meth:`pure_noise` row) and keeps it only where its episode ended. Actions are not checked:
        they come from the policy."""
        pos, vel, landmarks, t = state
        force = ACCEL * (actions.clamp(-1.0, 1.0) if self.continuous else self._dirs[actions])
        pos, vel, t, reward, agent_reward, truncated, final_obs, final_state = _advance(
            pos, vel, landmarks, t, force, self._not_self, self._others, self.spec.episode_limit)
        pos, vel, landmarks, t = _fresh_episodes(truncated, noise[..., :2], noise[..., 2:], self.spawn_range,
                                                (pos, vel, landmarks, t))
        obs, obs_state = _observe(pos, vel, landmarks, self._others)
        step = Step({"vector": obs}, obs_state, reward, agent_reward, torch.zeros_like(truncated), truncated,
                    self._alive, self._avail, {"vector": final_obs}, final_state)
        return (pos, vel, landmarks, t), step

    # -- helpers ---------------------------------------------------------------------------
    def _force(self, actions: Tensor) -> Tensor:
        b, n = self.num_envs, self.n
        if self.continuous:
            if actions.shape != (b, n, 2) or not actions.is_floating_point():
                raise EnvError(f"spread expects float actions of shape {(b, n, 2)}, got "
                               f"{actions.dtype} {tuple(actions.shape)}")
            return actions.clamp(-1.0, 1.0)
        if actions.shape != (b, n) or actions.is_floating_point():
            raise EnvError(f"spread expects integer actions of shape {(b, n)}, got "
                           f"{actions.dtype} {tuple(actions.shape)}")
        low, high = torch.aminmax(actions)
        if int(low) < 0 or int(high) > 4:
            raise EnvError("spread actions must lie in 0..4")
        return self._dirs[actions]  # [B, N, 2]

    def _observe(self) -> tuple[dict[str, Tensor], Tensor]:
        obs, state = _observe(self.pos, self.vel, self.landmarks, self._others)
        return {"vector": obs}, state


def _observe(pos: Tensor, vel: Tensor, landmarks: Tensor, others: Tensor) -> tuple[Tensor, Tensor]:
    """Every agent's observation [B, N, 4N+2] and the global state [B, 6N]."""
    rel_marks = landmarks[:, None] - pos[:, :, None]  # [B, N, N(mark), 2]
    other_pos = pos[:, others] - pos[:, :, None]  # [B, N, N-1, 2], p_j - p_i
    obs = torch.cat([vel, pos, rel_marks.flatten(2), other_pos.flatten(2)], dim=-1)
    state = torch.cat([torch.cat([pos, vel], dim=-1).flatten(1), landmarks.flatten(1)], dim=-1)
    return obs, state


def _fresh_episodes(where: Tensor, u_pos: Tensor, u_marks: Tensor, r: float,
                    state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``state`` with a fresh episode where ``where`` [B]: agents at ``(2 u_pos - 1) r``, landmarks at
    ``(1.8 u_marks - 0.9) r`` (``u``: uniform draws [B, N, 2]), at rest, clock at 0."""
    pos, vel, landmarks, t = state
    w = where[:, None, None]
    return (torch.where(w, (u_pos * 2 - 1) * r, pos), torch.where(w, torch.zeros_like(vel), vel),
            torch.where(w, (u_marks * 1.8 - 0.9) * r, landmarks), torch.where(where, torch.zeros_like(t), t))


def _advance(pos: Tensor, vel: Tensor, landmarks: Tensor, t: Tensor, force: Tensor, not_self: Tensor,
             others: Tensor, limit: int) -> tuple[Tensor, ...]:
    """One step of every env before autoreset: new (pos, vel, t), team and agent rewards, truncation,
    observations and state. Pure tensor code, so it can be compiled."""
    delta = pos[:, :, None] - pos[:, None]  # [B, N, N, 2], p_i - p_j
    dist = torch.linalg.vector_norm(delta, dim=-1).clamp_min(1e-6)  # [B, N, N]
    # MPE soft contact: penetration smoothed by a softplus, pushing agents apart.
    pen = torch.nn.functional.softplus(-(dist - 2 * AGENT_SIZE) / CONTACT_MARGIN) * CONTACT_MARGIN
    push = (CONTACT_FORCE * pen * not_self / dist)[..., None] * delta  # [B, N, N, 2]
    vel = vel * (1 - DAMPING) + (force + push.sum(2)) * DT
    pos = pos + vel * DT
    t = t + 1

    colliding = (dist < 2 * AGENT_SIZE) & not_self  # [B, N, N]
    hits = colliding.sum(-1).float()  # [B, N]
    to_marks = torch.linalg.vector_norm(pos[:, :, None] - landmarks[:, None], dim=-1)  # [B, N, N(mark)]
    reward = -to_marks.min(1).values.sum(-1) - hits.sum(-1)  # [B]
    agent_reward = -to_marks.min(2).values - hits  # [B, N]
    obs, state = _observe(pos, vel, landmarks, others)
    return pos, vel, t, reward, agent_reward, t >= limit, obs, state


def assignment_actions(env: Spread) -> Tensor:
    """Scripted reference policy: best agent-to-landmark assignment, then a damped P-controller.

    Brute force over the N! assignments, so only for small N; used to document a good score.
    """
    n = env.n
    perms = torch.tensor(list(itertools.permutations(range(n))), device=env.device)  # [P, N]
    d = (env.pos[:, :, None] - env.landmarks[:, None]).norm(dim=-1)  # [B, N, N]
    cost = d[:, torch.arange(n, device=env.device), perms].sum(-1)  # [B, P]
    target = env.landmarks[torch.arange(env.num_envs, device=env.device)[:, None],
                           perms[cost.argmin(1)]]  # [B, N, 2]
    want = (target - env.pos) - 0.4 * env.vel  # [B, N, 2]
    if env.continuous:
        return (want * 4).clamp(-1, 1)
    scores = want @ env._dirs.T  # [B, N, 5]
    scores[..., 0] = 0.05  # stay put when close: no direction helps much
    return scores.argmax(-1)


def _reference_scores(n_agents: int, episodes: int = 4096) -> dict[str, float]:
    out = {}
    for name in ("random", "assignment"):
        env = Spread(episodes, n_agents=n_agents)
        env.reset(seed=0)
        total = torch.zeros(episodes)
        gen = torch.Generator().manual_seed(1)
        for _ in range(env.spec.episode_limit):
            if name == "random":
                act = torch.randint(0, 5, (episodes, n_agents), generator=gen)
            else:
                act = assignment_actions(env)
            total += env.step(act).reward
        out[name] = float(total.mean())
    return out


if __name__ == "__main__":
    for n in (2, 3):
        print(n, _reference_scores(n))
