"""Keys and doors in order ("keydoor"): a planning task with a sparse team reward, vectorized in torch.

N agents on a ``G x G`` grid must visit K stations in a fixed order: station 0 (the first key), then
station 1 (its door), station 2 (the next key), ... Station s counts when any agent stands on it
while it is the next one due (at most one station per step). The team is rewarded once, 1.0, when
the last station is done; the episode then terminates (``info["success"] = 1``), or truncates at
``episode_limit``. Nothing rewards partial progress: a policy must plan several steps ahead.

- Spawn: the K stations on distinct random cells, agents on random cells (they may share cells).
- Actions (5): 0 noop, 1 north (row - 1), 2 south, 3 west (col - 1), 4 east; moves stop at the walls.
- Observation of agent i (``2 + 2(N-1) + 3K``): own (row, col) / (G-1); the other agents relative to
  i / (G-1); each station relative to i / (G-1); the stage as a one-hot over the K stations (all
  zeros once done). State (``2N + 3K``): agents' (row, col) / (G-1) (``agent_state_dim`` = 2), the
  stations' (row, col) / (G-1), the stage one-hot.
- Sub-goals (``EnvSpec.n_subgoals = K``, for ``architecture: hierarchical``): sub-goal k is "stand
  on station k"; ``info["subgoal"]`` [B, N] is the station agent i stands on after the step (-1:
  none). The env never rewards sub-goals; a hierarchical learner may pay its workers for them.

Reference scores, team return per episode (= success rate) on the defaults (5x5, 2 agents, 4
stations, 30 steps), over 16384 episodes (``python -m accord.envs.tasks.keydoor``): uniform random
0.033; the scripted :func:`scripted_actions` (agent i takes stations i, i + N, ...) 1.0, which is
the optimum.
"""

from __future__ import annotations

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.envs.tasks._checks import check_discrete_actions, seed_generator
from accord.errors import ConfigError, EnvError

# (row, col) displacement per action: noop, north, south, west, east.
_MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


class KeyDoor:
    """Batch of ``num_envs`` ordered-stations envs sharing one RNG."""

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", grid_size: int = 5,
                 n_agents: int = 2, n_stations: int = 4, episode_limit: int = 30) -> None:
        g, k = grid_size, n_stations
        if g < 2 or n_agents < 1 or k < 1 or k > g * g or episode_limit < 1:
            raise ConfigError(f"keydoor needs grid_size >= 2, n_agents >= 1, 1 <= n_stations <= grid_size^2 "
                              f"and episode_limit >= 1; got grid_size={g}, n_agents={n_agents}, "
                              f"n_stations={k}, episode_limit={episode_limit}")
        self.num_envs, self.device = num_envs, torch.device(device)
        self.grid_size, self.n_agents, self.n_stations = g, n_agents, k
        self.spec = EnvSpec(n_agents=n_agents, obs_shapes={"vector": (2 + 2 * (n_agents - 1) + 3 * k,)},
                            state_dim=2 * n_agents + 3 * k, action_kind="discrete", n_actions=len(_MOVES),
                            episode_limit=episode_limit, agent_state_dim=2, n_subgoals=k)
        dev = self.device
        self._gen = torch.Generator(device=dev)
        self._started = False
        self._moves = _MOVES.to(dev)
        others = [[j for j in range(n_agents) if j != i] for i in range(n_agents)]
        self._others = torch.tensor(others, dtype=torch.long, device=dev).view(n_agents, n_agents - 1)
        b = num_envs
        self.pos = torch.zeros(b, n_agents, 2, dtype=torch.long, device=dev)  # (row, col)
        self.stations = torch.zeros(b, k, 2, dtype=torch.long, device=dev)
        self.stage = torch.zeros(b, dtype=torch.long, device=dev)  # next station due; K when done
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        self._alive = torch.ones(b, n_agents, dtype=torch.bool, device=dev)
        self._avail = torch.ones(b, n_agents, len(_MOVES), dtype=torch.bool, device=dev)

    # -- episode control -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Step:
        """Reset all envs; one generator draws the whole batch, so ``(seed, num_envs)`` fixes every env."""
        seed_generator(self._gen, seed, self._started)
        self._started = True
        self._spawn(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        b, n = self.num_envs, self.n_agents
        obs, state = self._observe()
        false = torch.zeros(b, dtype=torch.bool, device=self.device)
        return Step(obs, state, torch.zeros(b, device=self.device), torch.zeros(b, n, device=self.device),
                    false, false.clone(), self._alive, self._avail,
                    info={"success": torch.zeros(b, device=self.device), "subgoal": self._on_station()})

    def _spawn(self, where: Tensor) -> None:
        """Fresh episodes where ``where`` [B] is True: one draw for the whole batch, no loop over envs."""
        b, n, g, k = self.num_envs, self.n_agents, self.grid_size, self.n_stations
        cells = torch.rand(b, g * g, generator=self._gen, device=self.device).argsort(-1)[:, :k]  # distinct
        stations = torch.stack([cells // g, cells % g], dim=-1)  # [B, K, 2]
        pos = torch.randint(0, g, (b, n, 2), generator=self._gen, device=self.device)
        self.stations = torch.where(where[:, None, None], stations, self.stations)
        self.pos = torch.where(where[:, None, None], pos, self.pos)
        self.stage = self.stage.masked_fill(where, 0)
        self.t = self.t.masked_fill(where, 0)

    def step(self, actions: Tensor) -> Step:
        if not self._started:
            raise EnvError("KeyDoor.step() called before reset(): call reset(seed) first")
        actions = check_discrete_actions(actions, self.num_envs, self.n_agents, len(_MOVES), self.device)
        self.pos = (self.pos + self._moves[actions]).clamp(0, self.grid_size - 1)
        self.t += 1
        on = self._on_station()  # [B, N]
        due = (on == self.stage[:, None]).any(-1) & (self.stage < self.n_stations)  # [B]
        self.stage = self.stage + due.long()
        success = self.stage == self.n_stations
        reward = (due & success).float()  # sparse: only the last station pays
        terminated = success
        truncated = (self.t >= self.spec.episode_limit) & ~terminated
        b, n = self.num_envs, self.n_agents
        obs, state = self._observe()
        step = Step(obs, state, reward, reward[:, None].expand(b, n) / n, terminated, truncated, self._alive,
                    self._avail, info={"success": success.float(), "subgoal": on})
        done = terminated | truncated
        if bool(done.any()):
            step.final_obs, step.final_state = obs, state
            self._spawn(done)
            step.obs, step.state = self._observe()
        return step

    def close(self) -> None:
        """Nothing to release: the batch lives in tensors."""

    # -- helpers ---------------------------------------------------------------------------
    def _on_station(self) -> Tensor:
        """The station each agent stands on ``[B, N]`` (-1: none); stations are on distinct cells."""
        same = (self.pos[:, :, None] == self.stations[:, None]).all(-1)  # [B, N, K]
        return torch.where(same.any(-1), same.float().argmax(-1), -1)

    def _observe(self) -> tuple[dict[str, Tensor], Tensor]:
        scale = 1.0 / max(self.grid_size - 1, 1)
        pos = self.pos.float()
        stations = self.stations.float()
        others = pos[:, self._others] - pos[:, :, None]  # [B, N, N-1, 2]
        rel = stations[:, None] - pos[:, :, None]  # [B, N, K, 2]
        stage = torch.nn.functional.one_hot(self.stage, self.n_stations + 1)[:, :-1].float()  # [B, K]
        n = self.n_agents
        obs = torch.cat([pos * scale, others.flatten(2) * scale, rel.flatten(2) * scale,
                         stage[:, None].expand(-1, n, -1)], dim=-1)  # [B, N, 2 + 2(N-1) + 3K]
        state = torch.cat([pos.flatten(1) * scale, stations.flatten(1) * scale, stage], dim=-1)  # [B, 2N + 3K]
        return {"vector": obs}, state


def scripted_actions(env: KeyDoor) -> Tensor:
    """Reference policy: agent i takes stations i, i + N, i + 2N, ... and walks to the first of its
    stations still due, so one agent can wait on its door while another fetches the key."""
    k, n = env.n_stations, env.n_agents
    first = env.stage[:, None] + (torch.arange(n, device=env.device)[None] - env.stage[:, None]) % n  # [B, N]
    own = first.clamp(max=k - 1)
    target = env.stations.gather(1, own[..., None].expand(-1, -1, 2))  # [B, N, 2]
    delta = target - env.pos
    act = torch.zeros(env.num_envs, n, dtype=torch.long, device=env.device)
    act = torch.where(delta[..., 1] > 0, 4, torch.where(delta[..., 1] < 0, 3, act))
    return torch.where(delta[..., 0] > 0, 2, torch.where(delta[..., 0] < 0, 1, act))


def _reference_scores(episodes: int = 16384, **params: int) -> dict[str, float]:
    out = {}
    for name in ("random", "scripted"):
        env = KeyDoor(episodes, **params)
        env.reset(seed=0)
        total = torch.zeros(episodes)
        running = torch.ones(episodes, dtype=torch.bool)
        gen = torch.Generator().manual_seed(1)
        for _ in range(env.spec.episode_limit):
            if name == "random":
                act = torch.randint(0, len(_MOVES), (episodes, env.n_agents), generator=gen)
            else:
                act = scripted_actions(env)
            step = env.step(act)
            total += step.reward * running
            running &= ~step.done
        out[name] = float(total.mean())
    return out


if __name__ == "__main__":
    print(_reference_scores())
