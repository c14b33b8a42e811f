"""Level-based foraging (LBF), cooperative variant, vectorized in torch over a batch of envs.

Re-implements lbforaging's ``Foraging-8x8-2p-2f-coop-v3`` (Papoudakis et al. 2021) so that all B
envs step in one set of tensor ops: there is no Python loop over envs, and the only loop (over
food items, at spawn) is needed because each item narrows where the next may go.

Rules (grid ``G x G``, N agents, F food items):

- Agents get levels uniform in ``1..max_agent_level`` (2). Coop: every food item's level is the
  sum of all agent levels, so all agents must load it together.
- Spawn as lbforaging: food away from the border and never next to other food (no food within
  the 3x3 block or two cells along a row/column), so no cell touches two items; agents on
  distinct cells that hold no food.
- Actions: 0 noop, 1 north (row - 1), 2 south, 3 west (col - 1), 4 east, 5 load. A move into a
  wall, live food or a cell occupied by another agent is unavailable; ``load`` is available only
  next to live food (4-neighbour). An unavailable action is played as noop. Agents whose moves
  target the same cell all stay. Unlike lbforaging, a move into a cell another agent holds at
  the start of the step is refused even if that agent leaves it: no swaps, no move chains, and
  no chance of two agents ending on one cell (which lbforaging's collision rule allows).
- A food item is collected when the agents next to it that chose ``load`` have summed level at
  least the food's level.
- Team reward: sum over collected items of ``food_level / total food level of the episode``, so
  the best possible team return is exactly 1.0. Individual reward (as lbforaging):
  ``agent_level * food_level / (loading level * total food level)``; it sums to the team reward.
- Terminates when all food is collected (``info["success"] = 1``); truncates at
  ``episode_limit`` (50).

Observation of agent i (``3 + 4F + 3(N-1)``): own (row, col) / (G-1) and level / max level; per
food: position relative to i / (G-1), level / (N * max level), a flag 1 when alive and seen;
per other agent (in index order, skipping i): position relative to i / (G-1), level / max
level. Items outside ``sight`` (Chebyshev distance, all seen when ``None``) and collected food
read as zeros. State (``3N + 4F``): per agent (row, col) / (G-1), level / max level
(``agent_state_dim`` = 3); then per food (row, col) / (G-1), level / (N * max level), alive
(zeros once collected).

Known optimum: team return 1.0 (all food collected). A uniform random policy almost never gets
both agents to load the same item on the same step: on 8x8, 2 agents, 2 food, 50 steps, over
16384 episodes (``python -m accord.envs.tasks.foraging``), uniform over all 6 actions scores a
team return of 0.004 and uniform over the available actions 0.008 (success rate < 0.01 %).
"""

from __future__ import annotations

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.envs.tasks._checks import check_discrete_actions, seed_generator
from accord.errors import ConfigError, EnvError

NOOP, LOAD = 0, 5
# (row, col) displacement per action: noop, north, south, west, east, load.
_MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1], [0, 0]])
# Interior cells one food item rules out for the next ones: its 3x3 block plus 2 along each axis.
_FOOD_EXCLUSION = 13


class Foraging:
    """Batch of ``num_envs`` cooperative level-based-foraging envs sharing one RNG."""

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        grid_size: int = 8,
        n_agents: int = 2,
        n_food: int = 2,
        episode_limit: int = 50,
        sight: int | None = None,
        max_agent_level: int = 2,
    ) -> None:
        g = grid_size
        if g < 3 or n_agents < 1 or n_food < 1 or max_agent_level < 1 or episode_limit < 1:
            raise ConfigError(f"foraging needs grid_size >= 3 and n_agents, n_food, max_agent_level, "
                              f"episode_limit >= 1; got grid_size={g}, n_agents={n_agents}, "
                              f"n_food={n_food}, max_agent_level={max_agent_level}, "
                              f"episode_limit={episode_limit}")
        # Food goes in the (G-2)^2 interior; each item rules out at most 13 of those cells, so this
        # bound guarantees every draw finds room. Agents need the cells the food leaves.
        if (n_food - 1) * _FOOD_EXCLUSION >= (g - 2) ** 2 or n_agents + n_food > g * g:
            raise ConfigError(f"foraging grid {g}x{g} is too small for {n_food} food items and "
                              f"{n_agents} agents: use a larger grid_size or fewer items")
        if sight is not None and sight < 1:
            raise ConfigError(f"foraging sight must be >= 1 or None (full view), got {sight}")
        self.num_envs, self.device = num_envs, torch.device(device)
        self.grid_size, self.n_agents, self.n_food = g, n_agents, n_food
        self.sight, self.max_agent_level = sight, max_agent_level
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_shapes={"vector": (3 + 4 * n_food + 3 * (n_agents - 1),)},
            state_dim=3 * n_agents + 4 * n_food,
            action_kind="discrete",
            n_actions=len(_MOVES),
            episode_limit=episode_limit,
            agent_state_dim=3,
        )
        dev = self.device
        self._gen = torch.Generator(device=dev)
        self._started = False
        self._moves = _MOVES.to(dev)
        cells = torch.arange(g * g, device=dev)
        self._cell_rc = torch.stack([cells // g, cells % g], dim=-1)  # [G*G, 2]
        self._interior = ((self._cell_rc >= 1) & (self._cell_rc <= g - 2)).all(-1)  # [G*G]
        others = [[j for j in range(n_agents) if j != i] for i in range(n_agents)]
        self._others = torch.tensor(others, dtype=torch.long, device=dev).view(n_agents, n_agents - 1)
        b = num_envs
        self._agent_cell = torch.zeros(b, n_agents, dtype=torch.long, device=dev)
        self._agent_level = torch.ones(b, n_agents, device=dev)
        self._food_cell = torch.zeros(b, n_food, dtype=torch.long, device=dev)
        self._food_level = torch.ones(b, n_food, device=dev)
        self._food_alive = torch.zeros(b, n_food, dtype=torch.bool, device=dev)
        self._t = torch.zeros(b, dtype=torch.long, device=dev)
        self._agent_mask = torch.ones(b, n_agents, dtype=torch.bool, device=dev)
        self._avail = torch.ones(b, n_agents, len(_MOVES), dtype=torch.bool, device=dev)

    # -- episode control -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Step:
        """Reset all envs. One generator draws the whole batch: ``(seed, num_envs)`` fixes every env.

        Without a seed the generator continues (its first seed is drawn from torch's global RNG).
        """
        seed_generator(self._gen, seed, self._started)
        self._started = True
        self._spawn(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        obs, state, self._avail = self._observe()
        b, n = self.num_envs, self.n_agents
        false = torch.zeros(b, dtype=torch.bool, device=self.device)
        return Step(obs, state, torch.zeros(b, device=self.device), torch.zeros(b, n, device=self.device),
                    false, false.clone(), self._agent_mask, self._avail,
                    info={"success": torch.zeros(b, device=self.device)})

    def step(self, actions: Tensor) -> Step:
        if not self._started:
            raise EnvError("Foraging.step() called before reset(): call reset(seed) first")
        actions = check_discrete_actions(actions, self.num_envs, self.n_agents, self.spec.n_actions,
                                         self.device)
        g = self.grid_size
        allowed = self._avail.gather(2, actions[..., None]).squeeze(-1)  # [B, N]
        act = torch.where(allowed, actions, NOOP)

        # Move: available moves target free cells, so only movers can clash (then all stay).
        target = self._cell_rc[self._agent_cell] + self._moves[act]  # [B, N, 2]
        target_cell = target[..., 0] * g + target[..., 1]  # [B, N]
        clash = (target_cell[:, :, None] == target_cell[:, None, :]).sum(-1) > 1  # [B, N]
        moving = (act != NOOP) & (act != LOAD)
        self._agent_cell = torch.where(moving & ~clash, target_cell, self._agent_cell)

        # Load: an item goes when its loading neighbours' levels reach its level.
        loaders = self._adjacent() & (act == LOAD)[..., None]  # [B, N, F]
        level = self._agent_level
        load_level = (loaders * level[..., None]).sum(1)  # [B, F]
        collected = self._food_alive & (load_level >= self._food_level)
        value = collected * self._food_level / self._food_level.sum(-1, keepdim=True)  # [B, F]
        share = loaders * level[..., None] / load_level.clamp_min(1)[:, None]  # [B, N, F]
        agent_reward = (share * value[:, None]).sum(-1)  # [B, N]
        self._food_alive &= ~collected

        self._t += 1
        terminated = ~self._food_alive.any(-1)
        truncated = (self._t >= self.spec.episode_limit) & ~terminated
        obs, state, self._avail = self._observe()
        step = Step(obs, state, value.sum(-1), agent_reward, terminated, truncated, self._agent_mask,
                    self._avail, info={"success": terminated.float()})
        done = terminated | truncated
        if bool(done.any()):
            step.final_obs, step.final_state = obs, state
            self._spawn(done)
            step.obs, step.state, self._avail = self._observe()
            step.avail_actions = self._avail
        return step

    def close(self) -> None:
        """Nothing to release: the batch lives in tensors."""

    # -- helpers ---------------------------------------------------------------------------
    def _spawn(self, where: Tensor) -> None:
        """Draw fresh episodes for envs where ``where`` [B] is True (one draw for all B: no loop)."""
        b, gg, dev, gen = self.num_envs, self.grid_size**2, self.device, self._gen
        free = self._interior.expand(b, gg).clone()  # [B, G*G] cells the next food item may take
        food = []
        for _ in range(self.n_food):
            pick = torch.rand(b, gg, generator=gen, device=dev).masked_fill(~free, -1.0).argmax(-1)  # [B]
            food.append(pick)
            d = (self._cell_rc[None] - self._cell_rc[pick][:, None]).abs()  # [B, G*G, 2]
            free &= ~((d.amax(-1) <= 1) | ((d.amin(-1) == 0) & (d.amax(-1) <= 2)))
        food_cell = torch.stack(food, dim=1)  # [B, F]
        score = torch.rand(b, gg, generator=gen, device=dev).scatter(1, food_cell, -1.0)
        agent_cell = score.topk(self.n_agents, dim=-1).indices  # [B, N] distinct, food-free cells
        level = torch.randint(1, self.max_agent_level + 1, (b, self.n_agents), generator=gen,
                              device=dev).float()
        food_level = level.sum(-1, keepdim=True).expand(b, self.n_food)  # [B, F] coop: all must load

        w = where[:, None]
        self._agent_cell = torch.where(w, agent_cell, self._agent_cell)
        self._agent_level = torch.where(w, level, self._agent_level)
        self._food_cell = torch.where(w, food_cell, self._food_cell)
        self._food_level = torch.where(w, food_level, self._food_level)
        self._food_alive = self._food_alive | w
        self._t = torch.where(where, 0, self._t)

    def _adjacent(self) -> Tensor:
        """[B, N, F] True where agent n is a 4-neighbour of live food item f."""
        gap = self._cell_rc[self._agent_cell][:, :, None] - self._cell_rc[self._food_cell][:, None]
        return (gap.abs().sum(-1) == 1) & self._food_alive[:, None]  # [B, N, F]

    def _seen(self, rel: Tensor) -> Tensor:
        """[...] True where an offset ``rel`` [..., 2] lies within ``sight``."""
        if self.sight is None:
            return torch.ones(rel.shape[:-1], dtype=torch.bool, device=self.device)
        return rel.abs().amax(-1) <= self.sight

    def _observe(self) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        b, n, f, g = self.num_envs, self.n_agents, self.n_food, self.grid_size
        scale = float(g - 1)
        agent_rc, food_rc = self._cell_rc[self._agent_cell], self._cell_rc[self._food_cell]  # [B, N|F, 2]
        alive = self._food_alive

        # Available actions: noop, the four moves into free in-grid cells, load next to live food.
        taken = torch.zeros(b, g * g, dtype=torch.bool, device=self.device)
        taken.scatter_(1, self._food_cell, alive)
        taken.scatter_(1, self._agent_cell, True)
        dest = agent_rc[:, :, None] + self._moves[1:5]  # [B, N, 4, 2]
        inside = ((dest >= 0) & (dest < g)).all(-1)  # [B, N, 4]
        dest_cell = (dest[..., 0] * g + dest[..., 1]).clamp(0, g * g - 1).view(b, n * 4)
        free = inside & ~taken.gather(1, dest_cell).view(b, n, 4)  # [B, N, 4]
        noop = torch.ones(b, n, 1, dtype=torch.bool, device=self.device)
        avail = torch.cat([noop, free, self._adjacent().any(-1, keepdim=True)], dim=-1)  # [B, N, 6]

        level = self._agent_level / self.max_agent_level  # [B, N]
        food_level = self._food_level / (n * self.max_agent_level)  # [B, F]
        own = torch.cat([agent_rc / scale, level[..., None]], dim=-1)  # [B, N, 3]
        rel_food = food_rc[:, None] - agent_rc[:, :, None]  # [B, N, F, 2]
        food_flag = alive[:, None] & self._seen(rel_food)  # [B, N, F]
        food_obs = torch.cat([rel_food / scale, food_level[:, None, :, None].expand(b, n, f, 1),
                              torch.ones(b, n, f, 1, device=self.device)], dim=-1)  # [B, N, F, 4]
        food_obs = food_obs * food_flag[..., None]
        rows = torch.arange(n, device=self.device)[:, None]
        rel_agents = (agent_rc[:, None] - agent_rc[:, :, None])[:, rows, self._others]  # [B, N, N-1, 2]
        agent_obs = torch.cat([rel_agents / scale, level[:, self._others][..., None]], dim=-1)
        agent_obs = agent_obs * self._seen(rel_agents)[..., None]  # [B, N, N-1, 3]
        vector = torch.cat([own, food_obs.flatten(2), agent_obs.flatten(2)], dim=-1)  # [B, N, D]

        food_state = torch.cat([food_rc / scale, food_level[..., None], alive[..., None]], dim=-1)
        food_state = food_state * alive[..., None]  # [B, F, 4]
        state = torch.cat([own.flatten(1), food_state.flatten(1)], dim=-1)  # [B, 3N + 4F]
        return {"vector": vector}, state, avail


def random_return(
    episodes: int = 4096, respect_mask: bool = True, seed: int = 0, **task: int
) -> tuple[float, float]:
    """Mean team return and success rate of a uniform random policy over one episode per env."""
    env = Foraging(episodes, **task)
    step = env.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    total, success = torch.zeros(episodes), torch.zeros(episodes)
    running = torch.ones(episodes, dtype=torch.bool)
    for _ in range(env.spec.episode_limit):
        logits = torch.rand(step.avail_actions.shape, generator=gen)
        if respect_mask:
            logits = logits.masked_fill(~step.avail_actions, -1.0)
        step = env.step(logits.argmax(-1))
        total += step.reward * running
        success += step.info["success"] * running
        running &= ~step.done
    return float(total.mean()), float(success.mean())


if __name__ == "__main__":
    for mask in (False, True):
        ret, succ = random_return(episodes=16384, respect_mask=mask)
        kind = "available" if mask else "all"
        print(f"random policy over {kind} actions: team return {ret:.4f}, success rate {succ:.5f}")
