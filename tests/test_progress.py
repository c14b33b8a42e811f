"""Progress display: a clamped bar with one speed on a terminal, plain lines elsewhere."""

from __future__ import annotations

import pytest

from accord import progress


def test_the_bar_ends_exactly_at_its_total_and_shows_one_speed(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    p = progress.TrainProgress("run", total=100, initial=40, bar=True)
    p.update(50)
    p.update(50)  # the last iteration overshoots the total
    p.log({"env_steps": 140, "fps": 10.0, "wall_s": 1.0, "return_mean": 1.5})
    assert p.bar.n == 100 and p.bar.postfix == "ret=1.50"  # tqdm's rate is the only speed
    p.log({"env_steps": 140, "fps": 10.0, "wall_s": 1.0, "compile_s": 0.6, "return_mean": 1.5})
    assert p.bar.postfix == "compiled=1s, ret=1.50"  # tqdm sorts its keys
    p.close()


@pytest.mark.parametrize("bar", [True, False])  # no terminal, or --no-progress
def test_without_a_bar_each_log_point_is_one_line(capsys, bar):
    p = progress.TrainProgress("run", total=2000, initial=0, bar=bar)
    p.update(1000)
    p.log({"env_steps": 1000, "fps": 1234.4, "wall_s": 65.2, "return_mean": -0.5})
    p.log({"env_steps": 2000, "fps": 1234.4, "wall_s": 70.0, "compile_s": 17.4, "return_mean": -0.5})
    p.close()
    assert capsys.readouterr().err == (
        "run: 1,000/2,000 env steps, 1,234 steps/s, return -0.500, elapsed 0:01:05\n"
        "run: 2,000/2,000 env steps, 1,234 steps/s, return -0.500, elapsed 0:01:10 (of which compiling 17.4 s)\n")


def test_a_phase_ends_with_one_line(capsys):
    with progress.phase("contribution", 4, "coalition") as advance:
        for _ in range(4):
            advance(1)
    err = capsys.readouterr().err
    assert err.startswith("contribution: 4 coalitions in ") and err.count("\n") == 1
