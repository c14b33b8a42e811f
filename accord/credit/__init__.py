"""Credit assignment: how a team's outcome becomes each agent's learning signal.

Every method lives in its own module and is registered in :data:`CREDIT` with the algorithm
family it serves and the architectures it fits; the config's ``credit.name`` picks one, and
learners never branch on a method's name.

- PPO family: ``advantages(batch, values, next_values, gamma, lam) -> [T, B, N]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accord.credit import individual, shared

BOTH = ("ctde", "decentralized")


@dataclass(frozen=True)
class CreditMethod:
    fn: Callable[..., Any]  # the method's entry point (signature depends on the family, see above)
    algorithms: tuple[str, ...]
    architectures: tuple[str, ...]
    summary: str


CREDIT: dict[str, CreditMethod] = {
    "shared": CreditMethod(shared.advantages, ("ppo",), BOTH, "every agent learns from the team reward"),
    "individual": CreditMethod(individual.advantages, ("ppo",), BOTH, "each agent learns from its own reward"),
}
