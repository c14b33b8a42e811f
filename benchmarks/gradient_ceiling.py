"""The fastest a config's gradient work can run here: its Adam steps in plain torch, no RL code.

A peer's config fixes the gradient work per frame (Adam steps per batch, minibatch rows, networks).
This times that work alone (two tanh MLPs, actor and critic, one fused Adam, a squared-output loss)
and prints the frames/s ceiling it leaves even with a free env and a free rollout: a matched-work
speed-up above ``ceiling / peer`` is impossible on this machine. It also prints the arithmetic bound:
the work's matrix-product FLOPs (forward, weight gradients, input gradients but the first layer's)
at this core's float32 peak, measured on a large product; nothing in float32 gets past it. Prints one
JSON line and two lines of text.

    python benchmarks/gradient_ceiling.py          # BenchMARL's VMAS navigation MAPPO (docs/benchmarks.md)
    python benchmarks/gradient_ceiling.py --steps-per-batch 16 --frames-per-batch 2048 --rows 1536 \\
        --hidden 64 --actor-in 14 --critic-in 14 --actor-out 5   # JaxMARL's IPPO on spread
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, n_out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps-per-batch", type=int, default=675, help="Adam steps per batch (45 epochs x 15)")
    p.add_argument("--frames-per-batch", type=int, default=6000)
    p.add_argument("--rows", type=int, default=1200, help="minibatch rows: frames x agents (400 x 3)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--actor-in", type=int, default=18, help="observation size")
    p.add_argument("--critic-in", type=int, default=57, help="critic input (global state + agent id)")
    p.add_argument("--actor-out", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    actor, critic = mlp(args.actor_in, args.hidden, args.actor_out), mlp(args.critic_in, args.hidden, 1)
    opt = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=1e-4, fused=True)
    x, s = torch.randn(args.rows, args.actor_in), torch.randn(args.rows, args.critic_in)

    def step() -> None:
        loss = actor(x).pow(2).mean() + critic(s).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    flops = 2 * args.rows * sum(  # forward + weight gradients: 2 products a layer; input gradients: 1, not layer 1
        3 * sum(a * b for a, b in dims) - dims[0][0] * dims[0][1]
        for dims in ([(args.actor_in, args.hidden), (args.hidden, args.hidden), (args.hidden, args.actor_out)],
                     [(args.critic_in, args.hidden), (args.hidden, args.hidden), (args.hidden, 1)]))
    big, peak = torch.randn(2048, 2048), 0.0
    for _ in range(12):  # the best of several: the machine's speed drifts
        start = time.perf_counter()
        big @ big
        peak = max(peak, 2 * 2048 ** 3 / (time.perf_counter() - start))
    for _ in range(20):
        step()
    times = []
    for _ in range(args.repeats):
        start = time.process_time()
        for _ in range(50):
            step()
        times.append((time.process_time() - start) / 50)
    per_step = statistics.median(times)
    batch_s = per_step * args.steps_per_batch
    bound_s = flops * args.steps_per_batch / peak
    out = {"bench": "gradient_ceiling", **vars(args), "ms_per_adam_step": round(per_step * 1e3, 2),
           "s_per_batch": round(batch_s, 2), "ceiling_frames_per_s": round(args.frames_per_batch / batch_s, 1),
           "clock": "cpu", "mflop_per_adam_step": round(flops / 1e6, 1), "peak_gflops_fp32": round(peak / 1e9, 1),
           "arithmetic_bound_frames_per_s": round(args.frames_per_batch / bound_s, 1)}
    print(json.dumps(out))
    print(f"{out['ms_per_adam_step']} ms per Adam step, {out['s_per_batch']} s per {args.frames_per_batch}-frame "
          f"batch: at most {out['ceiling_frames_per_s']:,} frames/s with a free env and rollout")
    print(f"arithmetic bound: {out['mflop_per_adam_step']:,} MFLOP per Adam step at this core's float32 peak of "
          f"{out['peak_gflops_fp32']} GFLOP/s: at most {out['arithmetic_bound_frames_per_s']:,} frames/s")


if __name__ == "__main__":
    main()
