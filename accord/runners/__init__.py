"""Runners: ways of driving envs and learners (in-process, worker processes, ...)."""
