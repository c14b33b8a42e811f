"""One JaxMARL IPPO-FF run on MPE spread at JaxMARL's own settings, timed compile and training apart.

Runs inside the JaxMARL venv (see ``peers.py``) with the source tree's ``baselines/IPPO`` on the
path: imports ``make_train`` from ``ippo_ff_mpe.py`` and its yaml config, changes only the frame
budget and the seed count (one seed), and times ``jax.jit(jax.vmap(train))`` lowering + compile
and execution (``block_until_ready``) separately. ``--settings`` prints the config instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _measure import peak_rss_mib, report, settings  # noqa: E402

HIDDEN = 64  # ippo_ff_mpe.py's ActorCritic: two Dense(64) layers in actor and critic (not in its yaml)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", type=Path, required=True, help="JaxMARL source tree (holds baselines/IPPO)")
    p.add_argument("--frames", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", action="store_true", help="print the config and exit")
    args = p.parse_args()
    os.environ["WANDB_MODE"] = "disabled"
    ippo = args.source / "baselines" / "IPPO"
    sys.path.insert(0, str(ippo))

    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(ippo / "config" / "ippo_ff_mpe.yaml"))
    if args.settings:
        import jaxmarl

        env = jaxmarl.make(config["ENV_NAME"], **config["ENV_KWARGS"])
        settings(**config, num_agents=env.num_agents, max_steps=env.max_steps, hidden=HIDDEN)
        return

    import jax
    import numpy as np
    import wandb
    from ippo_ff_mpe import make_train

    wandb.init(mode="disabled")  # the script logs each update through wandb.log
    config["TOTAL_TIMESTEPS"], config["SEED"] = args.frames, args.seed
    train = make_train(config)
    rngs = jax.random.split(jax.random.PRNGKey(args.seed), 1)  # one seed, as accord's run
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(rngs).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(rngs))
    wall = time.perf_counter() - start
    frames = config["NUM_UPDATES"] * config["NUM_STEPS"] * config["NUM_ENVS"]
    returns = np.asarray(out["metrics"]["returned_episode_returns"][0])  # [updates]: the script's means per batch
    per_batch = config["NUM_STEPS"] * config["NUM_ENVS"]
    every = max(1, len(returns) // 50)
    curve = [[(i + 1) * per_batch, round(float(r), 3)] for i, r in enumerate(returns) if (i + 1) % every == 0]
    report(trainer="jaxmarl", frames=frames, wall_s=round(wall, 2), fps=round(frames / wall, 1), trained_at=time.time(),
           compile_s=round(compile_s, 2), peak_rss_mib=round(peak_rss_mib()), seed=args.seed,
           num_envs=config["NUM_ENVS"], return_train=round(float(returns[-10:].mean()), 3), return_eval=None,
           return_note="per agent, last 10 batches (JaxMARL's spread reward)", curve=curve)


if __name__ == "__main__":
    main()
