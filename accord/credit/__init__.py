"""Credit assignment: turns a rollout into per-agent advantages; learners never branch on the method.

Every method is a function ``advantages(batch, values, next_values, gamma, lam) -> [T, B, N]`` in its
own module, registered in :data:`CREDIT` (the config's ``credit.name`` picks one).
"""

from accord.credit.individual import advantages as individual
from accord.credit.shared import advantages as shared

CREDIT = {"shared": shared, "individual": individual}
