"""Matched comparisons with the peer trainers, by construction: alternating runs on one pinned core.

    python benchmarks/peers/peers.py jaxmarl                     # JaxMARL IPPO on MPE spread, 2M frames
    python benchmarks/peers/peers.py navigation                  # BenchMARL MAPPO on VMAS navigation
    python benchmarks/peers/peers.py lbf                         # EPyMARL MAPPO (GRU) on LBF 8x8-2p-2f-coop
    python benchmarks/peers/peers.py jaxmarl --pairs 1 --frames 100000 --settings-only

For each benchmark the peer runner first prints the peer's own config (``--settings``);
``settings.py`` derives accord's **matched-work** overrides from it (same batch, minibatch size and
count, epochs, networks, learning settings, evaluation cadence) and the driver prints every
setting side by side, marking each difference it could not remove. Then, ``--pairs`` times: a
calibration probe, the peer; a probe, accord matched; a probe, accord **recommended** (accord's own
config for the task), each its own process pinned to ``--core`` with one thread, all on the same
seed. Ratios are taken within a pair only (the machine's speed drifts), and the medians over pairs
are reported: frames/s of training, and frames/s from process launch to the end of training
(imports, start-up and any compilation included; ``--caches warm`` measures a repeated run instead,
each trainer's compile cache kept). Output: the human table, one ``SUMMARY {json}``
line, and with ``--out`` every run (learning curves included) as JSON; ``--plot`` draws the curves.
Peers are installed on first use under ``--scratch``, each in its own venv (see README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from settings import DERIVE, Setting, overrides, table  # noqa: E402


@dataclass(frozen=True)
class Peer:
    """A peer trainer: its venv's packages (installed in this order), its source snapshot, its runner."""

    name: str
    installs: tuple[tuple[str, ...], ...]  # pip install argument lists, in order
    runner: str  # in this folder, run by the peer venv's python
    source: tuple[str, str, str] | None = None  # (GitHub owner/name, commit, path inside or "")


@dataclass(frozen=True)
class Benchmark:
    peer: Peer
    recommended: str  # accord's own config for the task, relative to the repo root
    frames: int  # default budget
    peer_args: tuple[str, ...] = ()  # extra runner arguments
    eval_episodes: int = 10  # accord's greedy evaluation after training (outside every time)


CONSTRAINTS = ("-c", str(ROOT / "constraints-dev.txt"))  # torch stays the CPU wheel
BENCHMARL = Peer("benchmarl", ((*CONSTRAINTS, "benchmarl==1.5.2", "torchrl==0.11.1", "tensordict==0.11.0",
                                "vmas==1.5.2"),), "benchmarl_run.py")
JAXMARL = Peer("jaxmarl", (("--upgrade", "pip"), ("jaxmarl==0.2.0", "jax==0.10.2", "jaxlib==0.10.2", "distrax",
                                                  "wandb", "hydra-core", "omegaconf", "tqdm")),
               "jaxmarl_run.py", ("FLAIROx/JaxMARL", "c793d09", "baselines/IPPO"))
EPYMARL = Peer("epymarl", ((*CONSTRAINTS, "torch==2.13.0"),
                           (*CONSTRAINTS, "numpy==1.26.4", "pyyaml==6.0.2", "sacred==0.8.7", "gymnasium==0.29.1",
                            "scipy", "einops", "cloudpickle", "pettingzoo==1.24.3", "lbforaging==2.0.0",
                            "rware==2.0.0", "pygame==2.6.1", "setuptools<81")),  # sacred imports pkg_resources
               "epymarl_run.py", ("uoe-agents/epymarl", "cbc38c0", ""))
BENCHMARKS = {
    "jaxmarl": Benchmark(JAXMARL, "configs/spread_ippo.yaml", 2_000_000),
    "navigation": Benchmark(BENCHMARL, "configs/vmas_navigation_mappo.yaml", 120_000),
    "lbf": Benchmark(EPYMARL, "configs/lbf_8x8_mappo.yaml", 200_000, eval_episodes=100),
}
# The one line EPyMARL's source changes in the scratch copy: smaclite is not published.
SMACLITE = "from .smaclite_wrapper import SMACliteWrapper\n"
SMACLITE_OPTIONAL = ("try:  # made optional by accord's benchmarks/peers: smaclite is not published\n"
                     "    from .smaclite_wrapper import SMACliteWrapper\nexcept ImportError:\n"
                     "    SMACliteWrapper = None\n")


def ensure_source(peer: Peer, scratch: Path, mirror: Path) -> Path | None:
    """The peer's source tree at its pinned commit, extracted on first use (from a local bare mirror
    ``<mirror>/<owner>+<name>/repo`` when there is one, else cloned from GitHub)."""
    if peer.source is None:
        return None
    repo, commit, inside = peer.source
    tree = scratch / f"{peer.name}-src"
    if not tree.exists():
        print(f"extracting {repo}@{commit} into {tree} ...", flush=True)
        git_dir = mirror / repo.replace("/", "+") / "repo"
        if not git_dir.exists():
            git_dir = scratch / f"{peer.name}.git"
            if not git_dir.exists():
                subprocess.run(["git", "clone", "--bare", f"https://github.com/{repo}", str(git_dir)], check=True)
        part = tree.with_suffix(".part")
        part.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", commit, *([inside] if inside else [])],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(part)], input=archive, check=True)
        if peer is EPYMARL:
            init = part / "src" / "envs" / "__init__.py"
            init.write_text(init.read_text().replace(SMACLITE, SMACLITE_OPTIONAL, 1))
        part.rename(tree)
    return tree


def ensure_venv(peer: Peer, scratch: Path) -> Path:
    """The peer venv's python, creating the venv and installing the peer on first use."""
    venv = scratch / f"{peer.name}-venv"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    if not done.exists():
        print(f"installing {peer.name} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for args in peer.installs:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)
        done.touch()
    return python


def pinned_env(peer: bool) -> dict[str, str]:
    """One thread everywhere (torch, BLAS, XLA); peers do not see accord's PYTHONPATH."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    if peer:
        env.pop("PYTHONPATH", None)
    return env


def tagged(stdout: str, tag: str) -> list[dict[str, Any]]:
    return [json.loads(line[len(tag) + 1:]) for line in stdout.splitlines() if line.startswith(tag + " ")]


def run(cmd: list[str], core: int, log: Path, peer: bool, tag: str = "RESULT",
        caches: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` pinned to ``core``; its last ``tag`` line, plus the seconds from launch
    (``process_s``) and, given the runner's ``trained_at``, from launch to the end of training.

    Without ``caches`` accord compiles cold in every run, as JaxMARL does by default: an empty inductor
    cache of its own. With it (``--caches warm``) every run keeps its compiles there: inductor's cache
    and JAX's persistent compilation cache, which JAX leaves off unless asked."""
    launched = time.time()
    with log.open("a") as out, tempfile.TemporaryDirectory(prefix="accord-inductor-") as fresh:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        env = pinned_env(peer)
        if caches is not None:
            env.update(TORCHINDUCTOR_CACHE_DIR=str(caches / "inductor"), JAX_COMPILATION_CACHE_DIR=str(caches / "jax"),
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        elif not peer:
            env["TORCHINDUCTOR_CACHE_DIR"] = fresh
        proc = subprocess.run(["taskset", "-c", str(core), *cmd], env=env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=out)
        out.write(proc.stdout)
    found = tagged(proc.stdout, tag)
    if proc.returncode != 0 or not found:
        sys.exit(f"error: run failed (exit {proc.returncode}): {' '.join(cmd)}; see {log}")
    result = found[-1]
    result["process_s"] = round(time.time() - launched, 2)
    if "trained_at" in result:
        result["launch_to_trained_s"] = round(result.pop("trained_at") - launched, 2)
        result["fps_from_launch"] = round(result["frames"] / result["launch_to_trained_s"], 1)
    return result


def probe(core: int, log: Path) -> float:
    return run([sys.executable, str(HERE / "_measure.py")], core, log, peer=False, tag="PROBE")["probe_s"]


def loadavg() -> float | None:
    """The 1-minute load average (Linux): the probe times the core's speed, this the competition for it."""
    path = Path("/proc/loadavg")
    return float(path.read_text().split()[0]) if path.exists() else None


def peer_command(bench: Benchmark, python: Path, source: Path | None, *args: str) -> list[str]:
    return [str(python), str(HERE / bench.peer.runner), *(["--source", str(source)] if source else []),
            *bench.peer_args, *args]


def accord_command(config: str, extra: list[str], frames: int, seed: int, eval_episodes: int) -> list[str]:
    return [sys.executable, str(HERE / "accord_run.py"), config, *extra, f"train.total_env_steps={frames}",
            f"train.log_interval={max(frames // 40, 1)}", f"seed={seed}", "--eval-episodes", str(eval_episodes)]


def ratios(rows: list[dict[str, Any]], variant: str, key: str, peer_key: str | None = None) -> list[float]:
    """accord's ``key`` / the peer's ``peer_key`` (default the same) within each pair: the only ratios
    that mean anything on a drifting machine."""
    peer_key = peer_key or key
    by_pair: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_pair.setdefault(r["pair"], {})[r["variant"]] = r
    return [p[variant][key] / p["peer"][peer_key] for p in by_pair.values()
            if variant in p and "peer" in p and p[variant].get(key) and p["peer"].get(peer_key)]


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        out[v] = {k: median([r[k] for r in mine if r.get(k) is not None])
                  for k in ("fps", "fps_from_launch", "fps_after_first_log", "wall_s", "launch_to_trained_s",
                            "compile_s", "peak_rss_mib", "return_train", "return_eval", "probe_s")}
        if v != "peer":
            out[v]["ratio_fps"] = [round(x, 3) for x in ratios(rows, v, "fps")]
            # accord after its first log point (its compile) against the peer's fps (after compile, JaxMARL)
            out[v]["ratio_fps_after_first_log"] = [round(x, 3) for x in ratios(rows, v, "fps_after_first_log", "fps")]
            out[v]["median_ratio_fps_after_first_log"] = median(out[v]["ratio_fps_after_first_log"])
            out[v]["ratio_fps_from_launch"] = [round(x, 3) for x in ratios(rows, v, "fps_from_launch")]
            out[v]["median_ratio_fps"] = median(out[v]["ratio_fps"])
            out[v]["median_ratio_fps_from_launch"] = median(out[v]["ratio_fps_from_launch"])
    return out


def print_summary(name: str, peer: str, summary: dict[str, Any], pairs: int) -> None:
    label = {"peer": peer, "matched": "accord, matched work", "recommended": "accord, recommended"}
    cols = ("fps", "fps_from_launch", "wall_s", "launch_to_trained_s", "compile_s", "peak_rss_mib",
            "return_train", "return_eval")
    print(f"\n{name}: medians over {pairs} pair(s)")
    print(f"{'run':<22}" + "".join(f"{c:>20}" for c in cols))
    for v, m in summary.items():
        print(f"{label[v]:<22}" + "".join(f"{'-' if m[c] is None else m[c]:>20}" for c in cols))
    for v, m in summary.items():
        if v != "peer":
            print(f"accord / {peer}, {label[v].split(', ')[1]}: frames/s x{m['median_ratio_fps']} "
                  f"(pairs {m['ratio_fps']}); from launch x{m['median_ratio_fps_from_launch']} "
                  f"(pairs {m['ratio_fps_from_launch']}); after accord's first log point (its compiles) "
                  f"x{m['median_ratio_fps_after_first_log']} (pairs {m['ratio_fps_after_first_log']})")


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Learning curves of every run, by variant (matplotlib, imported only here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"peer": "tab:gray", "matched": "tab:blue", "recommended": "tab:orange"}
    for r in rows:
        pts = [(x, y) for x, y in r.get("curve") or [] if y is not None]
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], ".-", color=colors[r["variant"]], alpha=0.8,
                    label=f"{r['trainer'] if r['variant'] == 'peer' else 'accord ' + r['variant']}")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys())
    ax.set(xlabel="frames (env steps)", ylabel="training return (each trainer's own reward)", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", choices=sorted(BENCHMARKS))
    p.add_argument("--pairs", type=int, default=3, help="rounds of peer, accord matched, accord recommended")
    p.add_argument("--frames", type=int, help="env steps per run (default: the benchmark's)")
    p.add_argument("--variants", default="matched,recommended", help="accord runs in each pair")
    p.add_argument("--core", type=int, default=1)
    p.add_argument("--scratch", type=Path, default=Path("/tmp/peers"))
    p.add_argument("--mirror", type=Path, default=Path("/work/.mirror"),
                   help="folder of local bare git mirrors <owner>+<name>/repo, tried before GitHub")
    p.add_argument("--settings-only", action="store_true", help="print the settings table and stop")
    p.add_argument("--out", type=Path, help="write every run (curves included) as JSON here")
    p.add_argument("--plot", type=Path, help="write the learning curves as an image here")
    p.add_argument("--caches", choices=("cold", "warm"), default="cold",
                   help="cold: every run compiles from nothing; warm: a repeated run, each trainer's compile "
                        "cache kept (inductor's; JAX's persistent cache, switched on) and filled by one "
                        "uncounted run of each first")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if args.pairs < 1 or not variants or set(variants) - {"matched", "recommended"}:
        p.error("--pairs must be >= 1 and --variants a comma list of matched, recommended")

    bench = BENCHMARKS[args.benchmark]
    frames = args.frames or bench.frames
    args.scratch.mkdir(parents=True, exist_ok=True)
    log = args.scratch / f"{args.benchmark}.log"
    python = ensure_venv(bench.peer, args.scratch)
    source = ensure_source(bench.peer, args.scratch, args.mirror)
    peer_settings = run(peer_command(bench, python, source, "--settings", "--frames", str(frames)), args.core, log,
                        peer=True, tag="SETTINGS")
    try:
        rows: list[Setting] = DERIVE[args.benchmark](peer_settings)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"\n{args.benchmark}: settings read from {bench.peer.name}'s own config\n{table(rows, bench.peer.name)}")
    matched = overrides(rows)
    print(f"\naccord matched-work overrides: {' '.join(matched)}")
    print(f"accord recommended: {bench.recommended}")
    if args.settings_only:
        return

    def commands(pair: int) -> dict[str, list[str]]:
        return {"peer": peer_command(bench, python, source, "--frames", str(frames), "--seed", str(pair)),
                "matched": accord_command("-", ["algorithm=ppo", *matched], frames, pair, bench.eval_episodes),
                "recommended": accord_command(bench.recommended, [], frames, pair, bench.eval_episodes)}

    runs: list[dict[str, Any]] = []
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        caches = (Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="caches-", dir=args.scratch)))
                  if args.caches == "warm" else None)
        if caches is not None:
            first = commands(0)
            for variant in ["peer", *variants]:
                print(f"  filling the compile caches: {variant} (not counted)", flush=True)
                run(first[variant], args.core, log, peer=variant == "peer", caches=caches)
        for pair in range(args.pairs):
            pair_commands = commands(pair)
            for variant in ["peer", *variants]:
                probe_s, load_start = probe(args.core, log), loadavg()
                result = run(pair_commands[variant], args.core, log, peer=variant == "peer", caches=caches)
                result.update(pair=pair, variant=variant, probe_s=probe_s, loadavg_start=load_start,
                              loadavg_end=loadavg())
                runs.append(result)
                shown = {k: v for k, v in result.items() if k not in ("curve", "eval_curve")}
                print(f"  pair {pair} {variant:<11} {json.dumps(shown)}", flush=True)

    summary = summarize(runs, ["peer", *variants])
    print_summary(f"{args.benchmark} (compile caches {args.caches})", bench.peer.name, summary, args.pairs)
    record = {"benchmark": args.benchmark, "peer": bench.peer.name, "frames": frames, "pairs": args.pairs,
              "caches": args.caches, "core": args.core, "harness_wall_s": round(time.perf_counter() - began),
              "loadavg_end": loadavg(),
              "matched_overrides": matched, "recommended": bench.recommended, "medians": summary}
    print("SUMMARY " + json.dumps(record), flush=True)
    if args.out:
        args.out.write_text(json.dumps({**record, "settings": [vars(r) for r in rows], "runs": runs}, indent=1))
    if args.plot:
        plot(runs, args.plot, f"{args.benchmark}: {bench.peer.name} vs accord, {frames} frames")


if __name__ == "__main__":
    main()
