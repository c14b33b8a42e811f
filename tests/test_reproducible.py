"""Same config + same seed with the sync runner -> the same numbers, run after run."""

import json

from accord.config import load_config
from accord.loop import train

VOLATILE = {"wall_s", "compile_s", "fps"}  # timings


def _metrics(tmp_path, name: str, seed: int) -> list[dict]:
    cfg = load_config(None, [f"runs_dir={tmp_path}", f"name={name}", f"seed={seed}", "task.params.n_agents=2",
                             "task.num_envs=8", "ppo.rollout_len=10", "ppo.epochs=2", "ppo.minibatches=2",
                             "train.total_env_steps=2400", "train.log_interval=400"])
    result = train(cfg, progress=False)
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE}
            for line in result.run.metrics_path.read_text().splitlines()]


def test_same_seed_same_numbers_and_other_seed_differs(tmp_path):
    a, b, c = _metrics(tmp_path, "a", 3), _metrics(tmp_path, "b", 3), _metrics(tmp_path, "c", 4)
    assert len(a) == 6 and a == b
    assert a != c
