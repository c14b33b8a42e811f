"""The reliability battery's CI subset (benchmarks/reliability.py --short, without the kill cycle, which
tests/test_resume.py covers): malformed inputs refused cleanly, env faults survived or failed cleanly."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_reliability_battery_short(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reliability.py"
    spec = importlib.util.spec_from_file_location("reliability", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = mod.battery(short=True, kill_count=0, work=tmp_path)
    failed = [c for c in result["checks"] if not c["passed"]]
    assert not failed, failed
    assert result["malformed"]["total"] >= 8 and result["env_fault"]["total"] >= 4
