"""Learning tests: fixed seeds, small known tasks, real thresholds.

2-agent `spread` (25 steps, team return): a uniformly random policy scores about -41 and the scripted
assignment controller about -12 (`accord.envs.tasks.spread`). "Solved" here means the greedy policy
closes at least half of that gap (> -26.5) within 200k env steps. Measured with these seeds:
IPPO about -20, MAPPO about -21 at 200k steps; MAPPO with EPyMARL's 5-step targets from a target
critic (``ppo.nstep``, ``ppo.target_tau``) about -17.
"""

from __future__ import annotations

import pytest
from learning import train_and_evaluate

pytestmark = pytest.mark.slow

SPREAD_2 = ["task.params.n_agents=2", "task.num_envs=32", "ppo.epochs=5", "ppo.minibatches=4"]


@pytest.mark.parametrize("overrides", [["architecture=decentralized"], ["architecture=ctde"],
                                       ["architecture=ctde", "ppo.nstep=5", "ppo.target_tau=0.01"]],
                         ids=["ippo", "mappo", "mappo-nstep-target"])
def test_ppo_solves_two_agent_spread(overrides):
    learned, rand = train_and_evaluate(None, [*SPREAD_2, *overrides], 200_000, 256)
    assert rand < -38
    assert learned > -26.5, f"{overrides}: greedy return {learned:.2f} after 200k steps"


def test_mappo_through_pettingzoo_adapter_beats_random_on_mpe_simple_spread():
    """mpe2 simple_spread_v3, 3 agents, team return = sum of agents' rewards: random about -81;
    after 60k steps MAPPO's greedy policy scored -64 and -61 (seeds 0, 1)."""
    learned, rand = train_and_evaluate("configs/simple_spread_mappo.yaml", [], 60_000, 64)
    assert learned > rand + 10, f"greedy {learned:.2f} vs random {rand:.2f}"
