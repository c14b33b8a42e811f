"""Evaluation beyond the return: who contributes (ablation, Shapley values), statistics, and flags.

- :mod:`accord.eval.contribution`: replace agents by a no-op or random stand-in on the same env
  seeds; per-agent ablation, exact Shapley values (up to 6 agents) or a permutation estimate.
- :mod:`accord.eval.stats`: interquartile mean and bootstrap confidence intervals (rliable-style).
- :mod:`accord.eval.flags`: lazy-agent and reward-hacking detectors, written to ``flags.jsonl``.
"""
