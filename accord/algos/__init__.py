"""Learners, by the config's ``algorithm`` name (the one registry the CLI, docs and tests read)."""

from accord.algos.ppo import PPO

ALGORITHMS = {"ppo": PPO}
