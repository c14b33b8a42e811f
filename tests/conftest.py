"""Shared fixtures: small configs and one-thread torch so tests are fast and repeatable."""

from __future__ import annotations

import pytest
import torch

from accord.config import Config, load_config


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def tiny_config(tmp_path) -> Config:
    """A few-second MAPPO run on 2-agent spread writing into a temporary run store."""
    return load_config(None, [
        f"runs_dir={tmp_path / 'runs'}", "task.name=spread", "task.params.n_agents=2", "task.num_envs=8",
        "ppo.rollout_len=10", "ppo.epochs=2", "train.total_env_steps=800", "train.log_interval=160",
    ])
