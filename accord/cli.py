"""``accord`` command line: train | eval | contribution | export | runs | tasks | config show.

User errors print one line (``error: ...``) and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from accord.errors import AccordError

if TYPE_CHECKING:
    from accord.eval.contribution import ContributionReport


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r]
                                          for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ci(x: float, ci: Sequence[float]) -> str:
    return f"{x:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _contribution_table(report: ContributionReport) -> str:
    """Per-agent contribution of a :class:`~accord.eval.contribution.ContributionReport`."""
    rows = [(a.name, _ci(a.ablation, a.ablation_ci), _ci(a.shapley, a.shapley_ci),
             "-" if a.success_corr is None else round(a.success_corr, 3), "LAZY" if a.lazy else "")
            for a in report.agents]
    return _table(rows, ("agent", "ablation v(N)-v(N-i) [95% CI]", f"Shapley, {report.shapley_method} [95% CI]",
                         "corr(success)", "flag"))


def _flag_lines(flags: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{f['flag'].replace('_', ' ')}: {f['detail']}" for f in flags]


def _return_cell(r: dict[str, float]) -> str:
    """Mean +- std of the return, and the success rate when the task reports one."""
    cell = f"{r['return_mean']:.3f} +- {r['return_std']:.3f}"
    return cell + (f", success rate {r['success_rate']:.3f}" if "success_rate" in r else "")


def cmd_train(args: argparse.Namespace) -> int:
    from accord.api import train
    from accord.store.mlflow_sink import read_link

    r = train(args.config, args.overrides, resume=args.resume, runs_dir=args.runs_dir,
              eval_episodes=args.eval_episodes, progress=not args.no_progress)
    if r.status == "already finished":
        print(f"run {r.run.name} already finished at {r.env_steps} env steps; extend it with "
              f"train.total_env_steps={2 * r.env_steps}")
        return 0
    rows = [("run", r.run.name), ("status", r.status), ("env steps", r.env_steps),
            ("wall time (s)", round(r.wall_s, 1)), ("env steps/s", round(r.fps)),
            ("return (last 100 training episodes)", round(r.train_return, 3))]
    if r.greedy is not None and r.random is not None:
        rows += [(f"return, greedy policy ({args.eval_episodes} eval episodes)", _return_cell(r.greedy)),
                 ("return, random policy (same episodes)", _return_cell(r.random))]
    if r.finished:
        rows += [("flags", line) for line in _flag_lines(r.flags) or ["none"]]
    print()
    print(_table(rows, ("result", "value")))
    if r.contribution is not None:
        print(f"\ncontribution ({r.contribution.episodes} episodes, absent agents: {r.contribution.replacement}):")
        print(_contribution_table(r.contribution))
    print(f"\nstored in {r.run.path}  (metrics.jsonl, tb/, checkpoints/)")
    print(f"resume with: accord train --resume {r.run.name}")
    link = read_link(r.run.path)
    if link is not None:
        print(f"mlflow: run {link['run_id']} in experiment '{link.get('experiment')}' at {link['tracking_uri']}")
    return 0 if r.finished else 130


def cmd_eval(args: argparse.Namespace) -> int:
    from accord.evaluate import evaluate_run

    ev = evaluate_run(args.run, root=args.runs_dir, episodes=args.episodes, deterministic=not args.stochastic,
                      progress=True)
    if args.json:
        print(json.dumps(ev))
    else:
        rows = [(name, r["return_mean"], r["return_std"], r.get("success_rate", "-")) for name, r in ev.items()]
        print(_table(rows, ("policy", "return_mean", "return_std", "success_rate")))
    return 0


def cmd_contribution(args: argparse.Namespace) -> int:
    from accord.eval.contribution import report_run
    from accord.eval.flags import HACKING
    from accord.store import RunDir, append_flags, read_flags

    report = report_run(args.run, root=args.runs_dir, checkpoint=args.checkpoint, episodes=args.episodes,
                        replacement=args.replacement, deterministic=True if args.greedy else None, progress=True)
    run = RunDir.open(args.runs_dir, args.run)
    append_flags(run.path, report.flags)
    flags = [f for f in read_flags(run.path) if f["flag"] == HACKING] + report.flags
    if args.json:
        print(json.dumps({**report.to_dict(), "flags": flags}))
        return 0
    src = report.source
    print(f"run {src['run']}, {src['checkpoint']} ({src['env_steps']} env steps): {report.episodes} episodes per "
          f"coalition, absent agents {report.replacement}, {'greedy' if report.deterministic else 'sampled'} actions")
    success = "-" if report.success_rate is None else f"{report.success_rate:.3f}"
    print(f"team return {_ci(report.team_return, report.team_return_ci)}, empty team {report.empty_return:.3f}, "
          f"success rate {success}\n")
    print(_contribution_table(report))
    print("\nflags:" if flags else "\nflags: none")
    for line in _flag_lines(flags):
        print(f"  {line}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from accord.export import export_run

    res = export_run(args.run, args.out, checkpoint=args.checkpoint, root=args.runs_dir, opset=args.opset,
                     tolerance=args.tolerance, parity_obs=args.parity_obs, latency_calls=args.latency_calls,
                     force=args.force, log=print)
    m = res.manifest
    rows = [(a["name"], a["graph"], a["params"], a["flops"], f"{a['parity']['max_abs_diff']:.2e}",
             a["latency"]["onnxruntime"]["p50_us"], a["latency"]["onnxruntime"]["p99_us"],
             a["latency"]["torch"]["p50_us"], a["latency"]["torch"]["p99_us"]) for a in m["agents"]]
    print()
    print(_table(rows, ("agent", "graph", "params", "FLOPs/decision", "parity max|diff|", "ort p50 us",
                        "ort p99 us", "torch p50 us", "torch p99 us")))
    print(f"\nparity: max abs diff {m['parity']['max_abs_diff']:.3g} (tolerance {m['parity']['tolerance']:g}) "
          f"on {m['parity']['observations_per_agent']} recorded observations per agent; latency: batch 1, one thread")
    print(f"bundle written to {res.out}  (manifest.json, parity.json, {len(m['agents'])} ONNX graphs, opset "
          f"{m['onnx_opset']})")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from accord.store import RunIndex

    if args.rebuild:
        RunIndex.rebuild(args.runs_dir).close()
    with RunIndex(args.runs_dir) as index:
        index.reconcile()
        runs = index.list()
    if not runs:
        print(f"no runs in {args.runs_dir}")
        return 0
    rows = [(r["name"], r["status"], r["env_steps"] or 0,
             "-" if r["last_return"] is None else round(r["last_return"], 3), r["created"][:19]) for r in runs]
    print(_table(rows, ("run", "status", "env_steps", "last_return", "created")))
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from accord.envs.registry import TASKS

    print(_table([(name, t.summary) for name, t in TASKS.items()], ("task", "description")))
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from accord.config import dump_config, load_config

    print(dump_config(load_config(args.config, args.overrides)), end="")
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    """Robustness suite (accord.suite): degradation table, worst case; exit 1 when a threshold is violated."""
    from accord.store import RunDir, list_checkpoints
    from accord.suite import degradation_table, load_suite, run_suite, summary_lines
    from accord.suite.core import progress_printer

    if args.episodes is not None and args.episodes < 2:
        raise AccordError(f"--episodes must be at least 2 (paired statistics), got {args.episodes}")
    spec = load_suite(args.suite)
    run = RunDir.open(args.runs_dir, args.run)
    if args.checkpoint == "all":
        checkpoints: list[str | None] = [str(p) for p in list_checkpoints(run.checkpoints_dir)]
        if not checkpoints:
            raise AccordError(f"run {run.name} has no checkpoints in {run.checkpoints_dir}")
    else:
        checkpoints = [args.checkpoint]
    tty = sys.stdout.isatty() and not args.json
    results = []
    for ckpt in checkpoints:
        result = run_suite(run.path, root=args.runs_dir, checkpoint=ckpt, suite=spec, episodes=args.episodes,
                           progress=None if tty else progress_printer(), bar=tty, suite_source=args.suite)
        results.append(result)
        if not args.json:
            print(degradation_table(result))
            print("\n".join(summary_lines(result)))
            print()
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    return 0 if all(r["passed"] for r in results) else 1


# Lowest allowed value of integer options, per command: a bad one is one `error:` line (exit 2).
_MINIMUM = {"train": {"eval_episodes": 0}, "eval": {"episodes": 1}, "contribution": {"episodes": 1},
            "export": {"opset": 7, "parity_obs": 1, "latency_calls": 1}}


def _check_ranges(args: argparse.Namespace) -> None:
    for name, low in _MINIMUM.get(args.command, {}).items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise AccordError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    tolerance = getattr(args, "tolerance", None)
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance > 0):
        raise AccordError(f"--tolerance must be a finite number above 0, got {tolerance}")


def _runs_dir_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--runs-dir`` on every command (``--root``: its old spelling, still accepted)."""
    parser.add_argument("--runs-dir", dest="runs_dir", default=default, metavar="DIR",
                        help=f"folder of the runs (default: {default or 'the config key runs_dir'})")
    parser.add_argument("--root", dest="runs_dir", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accord", description="Train, evaluate and ship cooperative MARL policies.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train from a config (YAML + key.path=value overrides)")
    t.add_argument("config", nargs="?", help="config file, e.g. configs/spread_mappo.yaml (default: built-in defaults)")
    t.add_argument("overrides", nargs="*", help="overrides like ppo.lr=3e-4 task.num_envs=128")
    t.add_argument("--resume", metavar="RUN", help="continue a run from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    _runs_dir_option(t, None)  # train: the same as the override runs_dir=DIR
    t.add_argument("--eval-episodes", type=int, default=256, help="greedy eval episodes at the end (0: none)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint against a random policy")
    e.add_argument("run")
    _runs_dir_option(e, "runs")
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--stochastic", action="store_true", help="sample actions instead of greedy")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    co = sub.add_parser("contribution", help="per-agent contribution (ablation, Shapley) and flags of a checkpoint")
    co.add_argument("run")
    _runs_dir_option(co, "runs")
    co.add_argument("--checkpoint", help="checkpoint file or env-step count (default: the latest)")
    co.add_argument("--episodes", type=int,
                    help="episodes per coalition (default: credit.monitor.contribution_episodes)")
    co.add_argument("--replacement", choices=("noop", "random"), help="stand-in for absent agents (default: config)")
    co.add_argument("--greedy", action="store_true", help="greedy actions instead of sampled ones")
    co.add_argument("--json", action="store_true")
    co.set_defaults(func=cmd_contribution)

    x = sub.add_parser("export", help="export a run's policy as ONNX graphs + manifest (parity-checked)")
    x.add_argument("run", help="run name, run folder or checkpoint file")
    x.add_argument("--out", required=True, help="bundle folder to write (must not exist or be empty)")
    x.add_argument("--checkpoint", help="checkpoint file or env-step count (default: the latest)")
    _runs_dir_option(x, "runs")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    x.add_argument("--tolerance", type=float, default=1e-5,
                   help="max abs diff onnxruntime vs torch (default 1e-5)")
    x.add_argument("--parity-obs", type=int, default=1000, help="recorded observations per agent for parity")
    x.add_argument("--latency-calls", type=int, default=2000, help="timed batch-1 calls per agent and runtime")
    x.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("runs", help="list runs with status, steps and last return")
    _runs_dir_option(r, "runs")
    r.add_argument("--rebuild", action="store_true", help="rebuild the index from the run folders")
    r.set_defaults(func=cmd_runs)


    su = sub.add_parser("suite", help="robustness suite: a checkpoint under perturbations, paired with clean "
                        "episodes (exit 1 when a threshold is violated)")
    su.add_argument("run")
    _runs_dir_option(su, "runs")
    su.add_argument("--checkpoint", help="checkpoint file, env-step count, or 'all' (default: the latest)")
    su.add_argument("--suite", default="default", help="'default' or a suite YAML file (docs/robustness.md)")
    su.add_argument("--episodes", type=int, help="paired episodes per case (default: the suite's, 128)")
    su.add_argument("--json", action="store_true")
    su.set_defaults(func=cmd_suite)

    sub.add_parser("tasks", help="list built-in tasks").set_defaults(func=cmd_tasks)

    c = sub.add_parser("config", help="config tools")
    csub = c.add_subparsers(dest="config_command", required=True)
    cs = csub.add_parser("show", help="print the resolved config")
    cs.add_argument("config", nargs="?")
    cs.add_argument("overrides", nargs="*")
    cs.set_defaults(func=cmd_config_show)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may follow options (`train --resume RUN a.b=c`); argparse leaves those over.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # A positional override given before the config (e.g. `train a=b cfg.yaml`) is not a config file.
    if getattr(args, "config", None) and "=" in args.config:
        args.overrides.insert(0, args.config)
        args.config = None
    try:
        _check_ranges(args)
        code = args.func(args)
    except AccordError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
