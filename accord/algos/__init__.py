"""Learners, by the config's ``algorithm`` name (the one registry the CLI, docs and tests read).

``algorithm: package.module:MyLearner`` names a user learner class with the built-ins' interface
(:class:`accord.runners.Learner`): built as ``Learner(cfg, spec, device)``, it has ``collects``,
``policy``, ``rollout_len``, ``env_steps``, ``update(batch)``, ``state_dict`` and ``load_state_dict``.
"""

from typing import Any

from accord.algos.ppo import PPO
from accord.algos.q import QLearner
from accord.plugins import Registry, load_object

_LEARNER_METHODS = ("collects", "update", "state_dict", "load_state_dict")


def _load_learner(spec: str) -> type:
    return load_object(spec, "learner", lambda obj: isinstance(obj, type) and all(
        hasattr(obj, m) for m in _LEARNER_METHODS), "a class with " + ", ".join(_LEARNER_METHODS))


ALGORITHMS: Registry[Any] = Registry("algorithm", {"ppo": PPO, "q": QLearner}, _load_learner)


def resolve_algorithm(name: str) -> type:
    """The learner class for ``algorithm: name`` (built-in, or imported); ConfigError if unusable."""
    return ALGORITHMS.resolve(name)
