"""V-trace importance weights (Espeholt et al. 2018, "IMPALA", arXiv 1802.01561, Sec. 4.1).

An actor of runner ``async`` or ``ray`` acts with weights some learner updates old (the behaviour
policy mu); the learner corrects its value targets and advantages towards its own policy pi with
truncated importance ratios, applied inside the one backward recursion (:func:`accord.credit.gae.gae`):

    rho_t = min(rho_bar, pi(a_t|o_t) / mu(a_t|o_t)),   c_t = min(c_bar, pi(a_t|o_t) / mu(a_t|o_t))

The policy is factored over agents, so the ratios are per agent ``[T, B, N]`` (a joint ratio, the
product over agents, vanishes or explodes with the team size); each agent's value (a centralized
critic's included) is corrected by its own ratio.
"""

from __future__ import annotations

import torch
from torch import Tensor


def truncated_ratios(logp: Tensor, logp_behaviour: Tensor, rho_bar: float, c_bar: float) -> tuple[Tensor, Tensor]:
    """``(rho, c)`` [T, B, N] from log pi and log mu of the taken actions [T, B, N]; no gradient."""
    ratio = torch.exp((logp - logp_behaviour).detach())  # [T, B, N]
    return ratio.clamp(max=rho_bar), ratio.clamp(max=c_bar)
