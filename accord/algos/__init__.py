"""Learners, by the config's ``algorithm`` name (the one registry the CLI, docs and tests read)."""

from accord.algos.ppo import PPO
from accord.algos.q import QLearner

ALGORITHMS = {"ppo": PPO, "q": QLearner}
