"""Forward and backward of a GRU over a sequence, three ways, in one process on one thread.

- ``cell loop``: ``T`` ``GRUCell`` calls under autograd (what a sequence with episode starts inside used);
- ``torch.gru``: one multi-step call (only possible when no episode starts inside the sequence);
- ``accord BPTT``: :class:`accord.models.gru.MaskedGRUSequence`, resets inside or not.

Each round times every variant once (alternating), the median over rounds is printed. The default
shape is LBF's matched-work batch against EPyMARL (docs/benchmarks.md): 50 steps, 10 envs x 2 agents,
128 units. Prints one JSON line and a table.

    python benchmarks/gru.py
    python benchmarks/gru.py --steps 128 --rows 96 --hidden 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from accord.models.gru import MaskedGRUSequence


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50, help="sequence length T")
    p.add_argument("--rows", type=int, default=20, help="envs x agents")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--repeats", type=int, default=10, help="forward+backward passes per timing")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    T, B, H = args.steps, args.rows, args.hidden
    cell = torch.nn.GRUCell(H, H)
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    x, h0 = torch.randn(T, B, H, requires_grad=True), torch.randn(B, H)
    keep = (torch.rand(T, B, 1) > 1 / 25).float()  # an episode start every 25 steps on average
    ones = torch.ones(T, B, 1)

    def cell_loop() -> tuple[torch.Tensor, torch.Tensor]:
        h, outs = h0, []
        for t in range(T):
            h = cell(x[t], h * keep[t])
            outs.append(h)
        return torch.stack(outs), h

    def fused() -> tuple[torch.Tensor, torch.Tensor]:
        out, h = torch.gru(x, h0[None], weights, True, 1, 0.0, True, False, False)
        return out, h[0]

    variants: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]] = {
        "cell loop (resets inside)": cell_loop,
        "accord BPTT (resets inside)": lambda: MaskedGRUSequence.apply(x, h0, keep, *weights),
        "torch.gru (no resets inside)": fused,
        "accord BPTT (no resets inside)": lambda: MaskedGRUSequence.apply(x, h0, ones, *weights),
    }
    scale = torch.linspace(-1, 1, H)

    def pass_(f: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> None:
        out, h = f()
        torch.autograd.grad((out * scale).sum() + h.sum(), (x, *weights))

    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds + 1):  # the first round warms up
        for name, f in variants.items():
            start = time.perf_counter()
            for _ in range(args.repeats):
                pass_(f)
            times[name].append((time.perf_counter() - start) / args.repeats * 1e3)
    ms = {k: round(statistics.median(v[1:]), 3) for k, v in times.items()}
    ratios = {"resets inside": round(ms["cell loop (resets inside)"] / ms["accord BPTT (resets inside)"], 2),
              "no resets inside": round(ms["torch.gru (no resets inside)"] / ms["accord BPTT (no resets inside)"], 2)}
    print(json.dumps({"benchmark": "gru", "steps": T, "rows": B, "hidden": H, "ms_per_pass": ms,
                      "speedup": ratios}))
    print(f"\nGRU forward+backward, T={T}, {B} rows, {H} units, one thread (median of {args.rounds} rounds)")
    for name, v in ms.items():
        print(f"  {name:32s} {v:8.2f} ms")
    print(f"  accord BPTT speed-up: x{ratios['resets inside']} against the cell loop, "
          f"x{ratios['no resets inside']} against torch.gru")


if __name__ == "__main__":
    main()
