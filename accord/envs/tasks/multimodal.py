"""Instructed navigation ("multimodal"): a team task where image, text and sensor vector each matter.

N agents (2) on a ``size`` x ``size`` grid (5); three coloured landmarks sit on distinct random cells.
Each agent is told in words which landmark to reach, and every step it is away from it costs it.

- **image** uint8 ``[3, size, size]``: channel ``c`` is 255 on landmark ``c``'s cell. The only place
  where landmarks are.
- **text** int64 ``[4]``: the agent's instruction, e.g. ``"please go to blue"``: three filler words and
  one colour word at a random position (vocabulary of 10, id 0 is padding). The only place where the
  agent's target is.
- **vector** float32 ``[2]``: the agent's own position, scaled to ``[0, 1]``. The only place where it is.

Discrete actions (5): 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y (moves off the grid are no-ops).
Agent reward per step: ``-|p_i - target_i|_1 / (2 (size - 1))`` after the move (0 on the target);
team reward: the mean over agents. Episodes truncate after ``episode_limit`` steps (20); ``info["success"]``
says every agent stood on its target at the end. State (for centralized critics): every agent's position
and target one-hot, and the landmarks.

Reference team returns per episode (``python -m accord.envs.tasks.multimodal``, 8192 episodes, defaults):
optimum (walk straight to the target, then stay) about **-0.63**; uniformly random about **-8.1**;
walking to the grid centre and staying there (a fallback without the image) about **-6.1**.
"""

from __future__ import annotations

import torch
from torch import Tensor

from accord.envs.base import EnvSpec, Step
from accord.envs.tasks._checks import check_discrete_actions
from accord.errors import EnvError

N_LANDMARKS = 3  # = image channels = colour words
VOCAB = ("<pad>", "go", "to", "the", "please", "now", "landmark", "red", "green", "blue")
FILLERS = torch.tensor([1, 2, 3, 4, 5, 6])  # token ids of the filler words
COLOURS = 7  # token id of the first colour word; landmark c is word COLOURS + c
TEXT_LEN = 4
_MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


class Multimodal:
    """Batch of ``num_envs`` instructed-navigation envs sharing one RNG."""

    def __init__(self, num_envs: int, device: str | torch.device = "cpu", n_agents: int = 2, size: int = 5,
                 episode_limit: int = 20) -> None:
        if n_agents < 1 or size < 2 or size * size < N_LANDMARKS or episode_limit < 1:
            raise EnvError(f"multimodal needs n_agents >= 1, size >= 2 and episode_limit >= 1; got "
                           f"n_agents={n_agents}, size={size}, episode_limit={episode_limit}")
        self.num_envs, self.device, self.n, self.size = num_envs, torch.device(device), n_agents, size
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_shapes={"image": (N_LANDMARKS, size, size), "text": (TEXT_LEN,), "vector": (2,)},
            state_dim=n_agents * (2 + N_LANDMARKS) + 2 * N_LANDMARKS,
            action_kind="discrete", n_actions=5, episode_limit=episode_limit, vocab_size=len(VOCAB),
        )
        b, n = num_envs, n_agents
        self._gen = torch.Generator(device=self.device)
        self._moves = _MOVES.to(self.device)
        self._fillers = FILLERS.to(self.device)
        self.pos = torch.zeros(b, n, 2, dtype=torch.long, device=self.device)
        self.landmarks = torch.zeros(b, N_LANDMARKS, 2, dtype=torch.long, device=self.device)
        self.target = torch.zeros(b, n, dtype=torch.long, device=self.device)  # landmark index per agent
        self.text = torch.zeros(b, n, TEXT_LEN, dtype=torch.long, device=self.device)
        self.t = torch.zeros(b, dtype=torch.long, device=self.device)
        self._avail = torch.ones(b, n, 5, dtype=torch.bool, device=self.device)
        self._alive = torch.ones(b, n, dtype=torch.bool, device=self.device)

    def reset(self, seed: int | None = None) -> Step:
        if seed is not None:
            self._gen.manual_seed(seed)
        self._respawn(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return Step.first(*self._observe(), self._alive, self._avail)

    def _respawn(self, where: Tensor) -> None:
        """Fresh episodes where ``where`` [B] is True (one draw for all B, no loop over envs)."""
        b, n, g, dev = self.num_envs, self.n, self.size, self.device

        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=self._gen, device=dev)

        cells = rand(b, g * g).argsort(-1)[:, :N_LANDMARKS]  # distinct cells [B, 3]
        marks = torch.stack([cells // g, cells % g], dim=-1)  # [B, 3, 2]
        pos = (rand(b, n, 2) * g).long().clamp_max(g - 1)
        target = (rand(b, n) * N_LANDMARKS).long().clamp_max(N_LANDMARKS - 1)
        words = self._fillers[(rand(b, n, TEXT_LEN) * len(self._fillers)).long().clamp_max(len(self._fillers) - 1)]
        slot = (rand(b, n) * TEXT_LEN).long().clamp_max(TEXT_LEN - 1)  # where the colour word goes
        words = words.scatter(-1, slot[..., None], (COLOURS + target)[..., None])  # [B, N, L]
        self.landmarks = torch.where(where[:, None, None], marks, self.landmarks)
        self.pos = torch.where(where[:, None, None], pos, self.pos)
        self.target = torch.where(where[:, None], target, self.target)
        self.text = torch.where(where[:, None, None], words, self.text)
        self.t = torch.where(where, torch.zeros_like(self.t), self.t)

    def step(self, actions: Tensor) -> Step:
        actions = check_discrete_actions(actions, self.num_envs, self.n, 5, self.device)
        self.pos = (self.pos + self._moves[actions]).clamp(0, self.size - 1)  # [B, N, 2]
        self.t += 1
        agent_reward = -self._distance().float() / (2 * (self.size - 1))  # [B, N]
        truncated = self.t >= self.spec.episode_limit
        info = {"success": (truncated & (self._distance() == 0).all(-1)).float()}
        obs, state = self._observe()
        step = Step(obs, state, agent_reward.mean(-1), agent_reward, torch.zeros_like(truncated), truncated,
                    self._alive, self._avail, info=info)
        if bool(truncated.any()):
            step.final_obs, step.final_state = obs, state
            self._respawn(truncated)
            step.obs, step.state = self._observe()
        return step

    def close(self) -> None:
        """Nothing to release: the batch lives in tensors."""

    def _distance(self) -> Tensor:
        goal = self.landmarks.gather(1, self.target[..., None].expand(-1, -1, 2))  # [B, N, 2]
        return (self.pos - goal).abs().sum(-1)  # [B, N]

    def _observe(self) -> tuple[dict[str, Tensor], Tensor]:
        b, n, g = self.num_envs, self.n, self.size
        image = torch.zeros(b, N_LANDMARKS, g * g, dtype=torch.uint8, device=self.device)
        cell = self.landmarks[..., 0] * g + self.landmarks[..., 1]  # [B, 3]
        image.scatter_(-1, cell[..., None], 255)
        image = image.view(b, 1, N_LANDMARKS, g, g).expand(b, n, N_LANDMARKS, g, g)  # same view for all
        vector = self.pos.float() / (g - 1)  # [B, N, 2]
        onehot = torch.nn.functional.one_hot(self.target, N_LANDMARKS).float()  # [B, N, 3]
        state = torch.cat([torch.cat([vector, onehot], -1).flatten(1),
                           self.landmarks.flatten(1).float() / (g - 1)], dim=-1)  # [B, S]
        return {"image": image, "text": self.text.clone(), "vector": vector}, state


def greedy_actions(env: Multimodal, to_centre: bool = False) -> Tensor:
    """Scripted reference: step along x, then y, towards the target (or the grid centre)."""
    goal = env.landmarks.gather(1, env.target[..., None].expand(-1, -1, 2))
    if to_centre:
        goal = torch.full_like(goal, (env.size - 1) // 2)
    dx, dy = (goal - env.pos).unbind(-1)
    act = torch.where(dy > 0, 4, torch.where(dy < 0, 3, 0))
    return torch.where(dx > 0, 2, torch.where(dx < 0, 1, act))


def reference_returns(episodes: int = 8192, seed: int = 0) -> dict[str, float]:
    """Mean team return per episode of the optimum, random, and walk-to-centre policies."""
    out = {}
    for name in ("optimum", "random", "centre"):
        env = Multimodal(episodes)
        env.reset(seed=seed)
        gen = torch.Generator().manual_seed(seed + 1)
        total = torch.zeros(episodes)
        for _ in range(env.spec.episode_limit):
            if name == "random":
                act = torch.randint(0, 5, (episodes, env.n), generator=gen)
            else:
                act = greedy_actions(env, to_centre=name == "centre")
            total += env.step(act).reward
        out[name] = round(float(total.mean()), 3)
    return out


if __name__ == "__main__":
    print(reference_returns())
