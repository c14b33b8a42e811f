"""Robustness suite: perturbations as VecEnv wrappers (:mod:`accord.suite.perturb`) and a paired
evaluation of a stored policy under them (:mod:`accord.suite.core`); see docs/robustness.md."""

from accord.suite.core import (
    DEFAULT_SUITE,
    SuiteSpec,
    degradation_table,
    evaluate_suite,
    load_suite,
    run_suite,
    store_result,
    summary_lines,
)
from accord.suite.perturb import PERTURBATIONS, SHIFTS, wrap

__all__ = ["DEFAULT_SUITE", "PERTURBATIONS", "SHIFTS", "SuiteSpec", "degradation_table", "evaluate_suite",
           "load_suite", "run_suite", "store_result", "summary_lines", "wrap"]
