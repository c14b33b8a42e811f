"""Credit assignment: how a team's outcome becomes each agent's learning signal.

Every method lives in its own module and is registered in :data:`CREDIT` with the algorithm
family it serves and the architectures it fits; the config's ``credit.name`` picks one, and
learners never branch on a method's name.

- PPO family: a :class:`~accord.credit.base.CreditModule` class ``fn(cfg, spec)`` with
  ``advantages(batch, ctx) -> Signals``, ``update(batch, ctx) -> metrics`` and ``stats()``.
- Value-based family (``algorithm: q``): a mixer class ``fn(cfg, spec)``, see :mod:`accord.credit.mixer`.

``credit.name: package.module:MyCredit`` names a user subclass of ``CreditModule`` (PPO) or ``Mixer``
(q); optional class attributes ``architectures`` and ``min_agents`` narrow where it fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accord.credit.attention import Attention
from accord.credit.base import CreditModule
from accord.credit.counterfactual import Counterfactual
from accord.credit.individual import Individual, Mixed
from accord.credit.iql import Independent
from accord.credit.mixer import Mixer
from accord.credit.potential import Potential
from accord.credit.qatten import Qatten
from accord.credit.qmix import QMIX
from accord.credit.shaped import Shaped
from accord.credit.shared import Shared
from accord.credit.vdn import VDN
from accord.plugins import Registry, load_object

BOTH = ("ctde", "decentralized")


@dataclass(frozen=True)
class CreditMethod:
    fn: Callable[..., Any]  # the method's entry point (signature depends on the family, see above)
    algorithms: tuple[str, ...]
    architectures: tuple[str, ...]
    summary: str
    min_agents: int = 1  # teams smaller than this are refused (config load, or env build)


def _load_credit(spec: str) -> CreditMethod:
    cls = load_object(spec, "credit method", lambda obj: isinstance(obj, type) and issubclass(
        obj, (CreditModule, Mixer)), "a subclass of accord.credit.base.CreditModule (ppo) or "
        "accord.credit.mixer.Mixer (q)")
    family = ("ppo",) if issubclass(cls, CreditModule) else ("q",)
    summary = (cls.__doc__ or spec).strip().splitlines()[0]
    return CreditMethod(cls, family, tuple(getattr(cls, "architectures", BOTH)), summary,
                        int(getattr(cls, "min_agents", 1)))


CREDIT: Registry[CreditMethod] = Registry("credit method", {
    "shared": CreditMethod(Shared, ("ppo",), BOTH, "every agent learns from the team reward"),
    "individual": CreditMethod(Individual, ("ppo",), BOTH, "each agent learns from its own reward"),
    "mixed": CreditMethod(Mixed, ("ppo",), BOTH, "a blend of team and own reward, weight credit.individual_weight"),
    "counterfactual": CreditMethod(Counterfactual, ("ppo",), ("ctde",),
                                   "COMA: centralized Q(s, u) critic, baseline marginalizes the agent's own action"),
    "attention": CreditMethod(Attention, ("ppo",), ("ctde",),
                              "MAAC-style attention critic over teammates, COMA's counterfactual baseline",
                              min_agents=2),
    "shaped": CreditMethod(Shaped, ("ppo",), ("ctde",),
                           "LIIR: learned per-agent intrinsic reward, meta-gradient on the team return"),
    "potential": CreditMethod(Potential, ("ppo",), ("ctde",),
                              "potential-based shaping gamma Phi(s') - Phi(s), Phi given or learned"),
    "iql": CreditMethod(Independent, ("q",), BOTH, "no mixer: each agent's Q regresses the team reward"),
    "vdn": CreditMethod(VDN, ("q",), ("ctde",), "Q_tot = sum of agent utilities"),
    "qmix": CreditMethod(QMIX, ("q",), ("ctde",), "monotonic hypernetwork mixer conditioned on the state"),
    "qatten": CreditMethod(Qatten, ("q",), ("ctde",), "multi-head attention over utilities, queried by the state"),
}, _load_credit)
