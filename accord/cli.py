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
    from pathlib import Path

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

    if getattr(args, "seeds", None) or _resume_is_study(args):  # a multi-seed study (accord.study)
        return cmd_train_study(args)
    r = train(args.config, args.overrides, resume=args.resume, runs_dir=args.runs_dir,
              eval_episodes=args.eval_episodes, progress=not args.no_progress)
    if r.status == "already finished":
        print(f"run {r.run.name} already finished at {r.env_steps} env steps; extend it with "
              f"train.total_env_steps={2 * r.env_steps}")
        return 0
    rows = [("run", r.run.name), ("status", r.status), ("env steps", r.env_steps),
            ("wall time (s)", round(r.wall_s, 1)),
            *([("of which compiling (s)", round(r.compile_s, 1))] if r.compile_s else []),
            ("env steps/s", round(r.fps)), ("return (last 100 training episodes)", round(r.train_return, 3))]
    if r.greedy is not None and r.random is not None:
        rows += [(f"return, greedy policy ({args.eval_episodes} eval episodes)", _return_cell(r.greedy)),
                 ("return, random policy (same episodes)", _return_cell(r.random))]
    rows += _protocol_rows(r.run)  # evaluation protocol (accord.eval.protocol)
    if r.finished:
        rows += [("flags", line) for line in _flag_lines(r.flags) or ["none"]]
    print()
    print(_table(rows, ("result", "value")))
    cost = _cost_table(r.run.path)
    if cost:
        print(f"\ncost per agent (cost.json; traffic per episode over the last log interval):\n{cost}")
    if r.contribution is not None:
        print(f"\ncontribution ({r.contribution.episodes} episodes, absent agents: {r.contribution.replacement}):")
        print(_contribution_table(r.contribution))
    print(f"\nstored in {r.run.path}  (metrics.jsonl, tb/, checkpoints/)")
    print(f"resume with: accord train --resume {r.run.name}")
    link = read_link(r.run.path)
    if link is not None:
        print(f"mlflow: run {link['run_id']} in experiment '{link.get('experiment')}' at {link['tracking_uri']}")
    return 0 if r.finished else 130


def _cost_table(run_path: Path) -> str:
    """The per-agent cost table of a run (accord.cost), '' for runs without one."""
    from accord.cost import cost_rows, retries_note
    from accord.store import MetricsLog

    records = [r for r in MetricsLog.read(run_path) if "return_mean" in r]
    last = records[-1] if records else {}
    header, rows = cost_rows(run_path, last)
    return "\n".join(x for x in (_table(rows, header), retries_note(last)) if x) if rows else ""


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
    _print_studies(args.runs_dir)  # studies (accord.study), above the runs
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


# -- studies, the evaluation protocol, A/B verdicts, baselines, reports (issue #9) -------------------

def _protocol_rows(run: Any) -> list[tuple[str, str]]:
    """Summary rows of the run's absolute metric (greedy and sampled, which one to ship)."""
    from accord.eval.protocol import absolute_record

    rec = absolute_record(run.path)
    if rec is None:
        return []
    rows = []
    for mode in ("greedy", "sampled"):
        r = rec[mode]
        succ = f", success {r['success_rate']:.3f}" if "success_rate" in r else ""
        ship = "  <- ship" if rec.get("ship") == mode else ""
        rows.append((f"absolute metric, {mode} (best.pt at {rec['env_steps']} steps, {r['episodes']} episodes)",
                     f"{_ci(r['return_mean'], r['ci'])}{succ}{ship}"))
    return rows


def _resume_is_study(args: argparse.Namespace) -> bool:
    from accord.study import is_study

    if not getattr(args, "resume", None):
        return False
    return is_study(_runs_root(args), args.resume)


def _runs_root(args: argparse.Namespace) -> str:
    from accord.config import load_config

    if args.runs_dir is not None:
        return args.runs_dir
    return load_config(args.config, args.overrides).runs_dir


def cmd_train_study(args: argparse.Namespace) -> int:
    from datetime import datetime
    from pathlib import Path

    from accord.study import Study, parse_seeds, run_study

    root = _runs_root(args)
    if args.resume:
        study = Study.open(root, args.resume)
    else:
        seeds = parse_seeds(args.seeds)
        if any(o.startswith(("seed=", "name=")) for o in args.overrides):
            from accord.errors import ConfigError

            raise ConfigError("a study sets seed= and name= per member; drop them from the overrides")
        stem = Path(args.config).stem if args.config else "defaults"
        name = args.study or f"{stem}__study__{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        study = Study.create(root, name, args.config, args.overrides, seeds)
    print(f"study {study.name}: {len(study.members())} seeds, {args.parallel} at once, logs in {study.path / 'logs'}")
    members = run_study(study, args.parallel, echo=not args.no_progress)
    print()
    print(_study_summary(study))
    print(f"\nstored in {study.path}  (study.yaml; member runs {study.name}__s<seed> in {study.root})")
    return 0 if all(m["status"] == "finished" for m in members) else 1


def _study_summary(study, mode: str = "ship") -> str:
    from accord.eval.scores import resolve, scores
    from accord.eval.stats import iqm_stratified_ci

    sc = scores(resolve(study.root, study.name), mode)
    status = {m["run"]: m.get("status", "?") for m in study.members()}
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    rows = [(r["seed"], r["run"], status.get(r["run"], "?"), fmt(r["final"]), fmt(r["best"]), fmt(r["greedy"]),
             fmt(r["sampled"]), fmt(r[f"success_{sc.mode}"])) for r in sc.rows]
    missing = [(m["seed"], m["run"], m.get("status", "?"), *["-"] * 5) for m in study.members()
               if m["run"] not in {r["run"] for r in sc.rows}]
    table = _table(rows + missing, ("seed", "run", "status", f"final ({sc.mode})", f"best ({sc.mode})",
                                    "absolute greedy", "absolute sampled", f"success ({sc.mode})"))
    lines = [table, ""]
    if len(sc.per_seed) >= 2:
        m, lo, hi = iqm_stratified_ci([sc.per_seed])
        lines.append(f"IQM of the absolute metric ({sc.mode} actions) over {len(sc.per_seed)} seeds: "
                     f"{m:.3f} [95% bootstrap CI {lo:.3f}, {hi:.3f}]; mean {sc.per_seed.mean():.3f}, "
                     f"CV {sc.per_seed.std(ddof=1) / max(abs(sc.per_seed.mean()), 1e-12):.3f}")
    else:
        lines.append(f"absolute metric ({sc.mode}): {sc.per_seed.mean():.3f} (one seed: no interval)")
    if sc.success is not None:
        lines.append(f"success rate ({sc.mode}): mean {sc.success.mean():.3f} over seeds")
    greedy = [r["greedy"] for r in sc.rows]
    sampled = [r["sampled"] for r in sc.rows]
    if greedy and abs(sum(greedy) - sum(sampled)) / len(greedy) > 0.05 * max(abs(sum(greedy)) / len(greedy), 1e-9):
        better = "sampled" if sum(sampled) > sum(greedy) else "greedy"
        lines.append(f"greedy and sampled actions differ: ship the {better} policy")
    return "\n".join(lines)


def _print_studies(root: str) -> None:
    from accord.study import list_studies

    studies = list_studies(root)
    if not studies:
        return
    rows = []
    for st in studies:
        data = st.data()
        counts: dict[str, int] = {}
        for m in data["members"]:
            counts[m.get("status", "?")] = counts.get(m.get("status", "?"), 0) + 1
        rows.append((st.name, ",".join(str(s) for s in data["seeds"]) if len(data["seeds"]) < 6 else
                     f"{data['seeds'][0]}-{data['seeds'][-1]} ({len(data['seeds'])})",
                     " ".join(f"{k}:{v}" for k, v in sorted(counts.items())), _path_name(data.get("config"))))
    print(_table(rows, ("study", "seeds", "members", "config")))
    print()


def _path_name(p: str | None) -> str:
    from pathlib import Path

    return "-" if not p else Path(p).name


def cmd_eval_stats(args: argparse.Namespace) -> int:
    """`accord eval`: one run (mean, Student-t CI, greedy and sampled, random for scale) or studies
    (per-seed table, IQM with stratified bootstrap CI across seeds and tasks)."""
    from accord.eval.scores import SourceError, resolve, scores
    from accord.eval.stats import iqm_stratified_ci
    from accord.study import is_study

    if len(args.run) == 1 and not is_study(args.runs_dir, args.run[0]):
        return _eval_one_run(args)
    if args.checkpoint or args.episodes or args.seed is not None:
        raise SourceError("--checkpoint, --episodes and --seed apply to one run; studies use their stored "
                          "absolute metric")
    per_task, out = [], []
    for name in args.run:
        src = resolve(args.runs_dir, name)
        sc = scores(src, args.mode)
        if len(sc.per_seed) < 2:
            raise SourceError(f"{src.label} has {len(sc.per_seed)} finished seed; a confidence interval across "
                              "seeds needs at least 2 (train more with --seeds)")
        per_task.append(sc.per_seed)
        m, lo, hi = iqm_stratified_ci([sc.per_seed])
        out.append({"source": src.name, "task": src.task["name"], "mode": sc.mode, "seeds": len(sc.per_seed),
                    "iqm": m, "ci": [lo, hi], "mean": float(sc.per_seed.mean()),
                    "success_rate": None if sc.success is None else float(sc.success.mean()), "runs": sc.rows})
    m, lo, hi = iqm_stratified_ci(per_task)
    if args.json:
        print(json.dumps({"sources": out, "iqm": m, "ci": [lo, hi]}))
        return 0
    rows = [(o["source"], o["task"], o["mode"], o["seeds"], _ci(o["iqm"], o["ci"]), o["mean"],
             "-" if o["success_rate"] is None else o["success_rate"]) for o in out]
    print(_table(rows, ("source", "task", "actions", "seeds", "IQM [95% stratified bootstrap CI]", "mean",
                        "success_rate")))
    if len(out) > 1:
        print(f"\nIQM over all {sum(len(p) for p in per_task)} runs, stratified by source: {_ci(m, (lo, hi))} "
              "(raw returns pooled: compare like with like)")
    return 0


def _eval_one_run(args: argparse.Namespace) -> int:
    from accord.config import build_config
    from accord.envs.registry import make_env
    from accord.eval.protocol import ship_mode
    from accord.eval.scores import ensure_absolute
    from accord.evaluate import evaluate_policy
    from accord.policy import Policy
    from accord.store import RunDir, load_checkpoint, resolve_checkpoint
    from accord.store.evals import append_eval

    run = RunDir.open(args.runs_dir, args.run[0])
    cfg = build_config(run.load_config())
    if args.checkpoint or args.episodes or args.seed is not None:
        # Evaluate now, on the episodes `accord eval` always played (seed 12345 by default, as many envs
        # as the run trained with), so exported bundles and older figures see the same episodes.
        path = resolve_checkpoint(run.path, args.checkpoint, args.runs_dir)
        payload = load_checkpoint(path)
        policy = Policy.from_checkpoint(payload, str(path), cfg.train.device)
        episodes = args.episodes or cfg.eval.episodes * cfg.eval.final_factor
        seed = 12345 if args.seed is None else args.seed
        task = cfg.task.model_copy()
        task.num_envs = min(episodes, cfg.task.num_envs)
        env = make_env(task, cfg.runner.kind, cfg.runner.workers, cfg.train.device)
        try:
            policy.check_fits(env.spec, f"run {run.name}")
            modes = {m: _t_summary(evaluate_policy(env, policy, episodes, m == "greedy", seed))
                     for m in ("greedy", "sampled")}
            rnd = evaluate_policy(env, None, episodes, seed=seed)
        finally:
            env.close()
        ev = {"kind": "manual", "env_steps": int(payload["algo"]["env_steps"]), "checkpoint": path.name,
              "seed": seed, **modes}
        ev["ship"] = ship_mode(ev)
        ev = append_eval(run.path, ev)
    else:
        ev = ensure_absolute(run)
        seed = cfg.eval.seed + 1
        task = cfg.task.model_copy()
        task.num_envs = min(ev["greedy"]["episodes"], cfg.eval.num_envs)
        env = make_env(task, cfg.runner.kind, cfg.runner.workers, cfg.train.device)
        try:
            rnd = evaluate_policy(env, None, ev["greedy"]["episodes"], seed=seed)
        finally:
            env.close()
    if args.json:
        print(json.dumps({**ev, "random": rnd}))
        return 0
    print(f"run {run.name}, {ev.get('checkpoint')} ({ev['env_steps']} env steps), {ev['greedy']['episodes']} "
          f"episodes, mean with 95% Student-t CI:")
    rows = [(f"{m} policy", _ci(ev[m]["return_mean"], ev[m]["ci"]), ev[m]["return_std"],
             ev[m].get("success_rate", "-"), "ship" if ev.get("ship") == m else "")
            for m in ("greedy", "sampled")]
    rows.append(("random policy", f"{rnd['return_mean']:.3f}", rnd["return_std"], rnd.get("success_rate", "-"), ""))
    print(_table(rows, ("actions", "return_mean [95% CI]", "return_std", "success_rate", "")))
    return 0


def _t_summary(r: dict[str, float]) -> dict[str, Any]:
    """evaluate_policy's mean and std with the Student-t 95% interval (scipy t quantile)."""
    from scipy import stats

    n = int(r["episodes"])
    half = float(stats.t.ppf(0.975, n - 1) * r["return_std"] / n ** 0.5) if n > 1 else 0.0
    out: dict[str, Any] = {"episodes": n, "return_mean": r["return_mean"], "return_std": r["return_std"],
                           "ci": [r["return_mean"] - half, r["return_mean"] + half]}
    if "success_rate" in r:
        out["success_rate"] = r["success_rate"]
    return out


def _side(args: argparse.Namespace, text: str, label: str):
    """A compare side: a run or study name, or a config file trained now as a study."""
    from datetime import datetime
    from pathlib import Path

    from accord.eval.scores import resolve
    from accord.study import Study, is_study, run_study

    if text.endswith((".yaml", ".yml")) and Path(text).is_file() and not is_study(args.runs_dir, text):
        from accord.config import load_config

        cfg = load_config(text, [*args.overrides, f"runs_dir={args.runs_dir}"])
        seeds = args.seeds or cfg.compare.seeds
        name = f"{Path(text).stem}__cmp{label}__{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        overrides = [*args.overrides, f"runs_dir={args.runs_dir}"]
        study = Study.create(args.runs_dir, name, text, overrides, list(range(seeds)))
        print(f"{label}: training {text} as study {name} ({seeds} seeds, {args.parallel} at once)", flush=True)
        run_study(study, args.parallel, echo=True)
        text = name
    return resolve(args.runs_dir, text)


def cmd_compare(args: argparse.Namespace) -> int:
    from datetime import datetime
    from pathlib import Path

    from accord.eval.baseline import parse_tolerance
    from accord.eval.compare import CompareError, compare_scores
    from accord.eval.scores import scores
    from accord.store import atomic_write_text
    from accord.store.metrics import jsonable

    margin = parse_tolerance(args.margin) if args.margin else 0.0
    a, b = _side(args, args.a, "A"), _side(args, args.b, "B")
    if a.task != b.task:
        raise CompareError(f"A ({a.label}) is on task {a.task['name']} {a.task['params']}, B ({b.label}) on "
                           f"{b.task['name']} {b.task['params']}: compare runs of the same task")
    if a.kind != b.kind:
        raise CompareError(f"A is a {a.kind} and B a {b.kind}: compare a study with a study (seeds) or a run "
                           "with a run (episodes)")
    sa, sb = scores(a, args.mode), scores(b, args.mode)
    if a.kind == "study":
        for side, sc in (("A", sa), ("B", sb)):
            if sc.per_seed.size < 2:
                raise CompareError(f"{side} ({sc.source.label}) has {sc.per_seed.size} finished seed; a confidence "
                                   "interval across seeds needs at least 2")
        xa, xb, unit = sa.per_seed, sb.per_seed, "seeds"
    else:
        xa, xb, unit = sa.episodes, sb.episodes, "episodes"
    v = compare_scores(xa, xb, unit=unit, alpha=args.alpha, margin=margin * abs(float(xa.mean())))
    v.a = {"name": a.name, "kind": a.kind, "mode": sa.mode, "task": a.task, "runs": [r["run"] for r in sa.rows]}
    v.b = {"name": b.name, "kind": b.kind, "mode": sb.mode, "task": b.task, "runs": [r["run"] for r in sb.rows]}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.runs_dir) / "comparisons" / f"{a.name}__vs__{b.name}__{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(jsonable(v.to_dict()), indent=1))
    if args.json:
        print(json.dumps(jsonable({**v.to_dict(), "stored": str(out)})))
        return v.exit_code
    rows = [("A", a.name, sa.mode, v.n_a, v.mean_a, v.iqm_a), ("B", b.name, sb.mode, v.n_b, v.mean_b, v.iqm_b)]
    print(_table(rows, ("side", "source", "actions", unit, "mean", "IQM")))
    print(f"\n{v.summary()}")
    if unit == "episodes":
        print("(two single runs: the verdict is about these two policies; for configs compare studies)")
    print(f"stored in {out}")
    return v.exit_code


def cmd_baseline_set(args: argparse.Namespace) -> int:
    from accord.eval.baseline import baseline_path, set_baseline

    rec = set_baseline(args.runs_dir, args.name, args.source, args.mode)
    ret = rec["metrics"]["return"]
    print(f"baseline {args.name}: {rec['kind']} {rec['source']} ({len(rec['runs'])} runs, {rec['mode']} actions), "
          f"return {_ci(ret['mean'], ret['ci'])} (t CI), IQM {_ci(ret['iqm'], ret['iqm_ci'])}; "
          f"curve band over {len(rec['curve']['env_steps'])} log points")
    print(f"stored in {baseline_path(args.runs_dir, args.name)}")
    return 0


def cmd_baseline_check(args: argparse.Namespace) -> int:
    from accord.eval.baseline import check, parse_tolerance

    tol = parse_tolerance(args.tolerance)
    res = check(args.runs_dir, args.name, args.source, tol, args.alpha, args.hook)
    if args.json:
        print(json.dumps(res))
    else:
        rows = [(c["metric"], c["unit"], c["baseline_mean"], c["candidate_mean"], f"{100 * c['deviation']:+.1f}%",
                 f"{c['p']:.3g}", "ALERT" if c["alert"] else "ok") for c in res["checks"]]
        print(_table(rows, ("metric", "unit", "baseline", "candidate", "deviation", "p (one-sided)", "status")))
        print(f"\n{'ALERT' if res['alert'] else 'ok'}: {res['candidate']} against baseline {args.name}, tolerance "
              f"{100 * tol:.1f}%, alpha {args.alpha}")
    return 1 if res["alert"] else 0


def cmd_stability(args: argparse.Namespace) -> int:
    from accord.eval.scores import SourceError, resolve, scores
    from accord.eval.stability import stability
    from accord.store import append_flags

    src = resolve(args.runs_dir, args.study)
    if len(src.runs) < 2:
        raise SourceError(f"{src.label} has {len(src.runs)} finished run; stability across seeds needs at least 2")
    per_seed = scores(src).per_seed
    cv = float(per_seed.std(ddof=1) / max(abs(per_seed.mean()), 1e-12))
    rep = stability(src.runs, probes=args.probes, return_cv=cv)
    for f in rep.flags:
        append_flags(next(r.path for r in src.runs if r.name == f["run"]), [f])
    if args.json:
        print(json.dumps(rep.to_dict()))
        return 0
    keys = [k for k in ("agreement", "js", "mean_spread") if k in rep.agents[0]]
    print(f"{src.label}: {len(rep.runs)} seeds, {args.probes} probe observations, {rep.action_kind} actions")
    print(_table([(a["agent"], *[a[k] for k in keys]) for a in rep.agents], ("agent", *keys)))
    print(_table([(r, s, d, "HYPERSENSITIVE" if r in rep.hypersensitive else "",
                   " ".join(f"{c:.2f}" for c in rep.churn.get(r, [])) or "-")
                  for r, s, d in zip(rep.runs, rep.seeds, rep.per_seed_divergence, strict=True)],
                 ("run", "seed", "divergence from other seeds", "flag", "churn between checkpoints")))
    print(f"CV of the absolute-metric return across seeds: {cv:.3f}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from accord.report import write_report

    path = write_report(args.runs_dir, args.source, args.output)
    print(f"report written to {path}")
    return 0


# Lowest allowed value of integer options, per command: a bad one is one `error:` line (exit 2).
_MINIMUM = {"train": {"eval_episodes": 0}, "eval": {"episodes": 1}, "contribution": {"episodes": 1},
            "export": {"opset": 7, "parity_obs": 1, "latency_calls": 1}}


def _check_ranges(args: argparse.Namespace) -> None:
    for name, low in _MINIMUM.get(args.command, {}).items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise AccordError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    tolerance = getattr(args, "tolerance", None) if args.command == "export" else None  # baselines take "3%"
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
    t.add_argument("--seeds", help="train a study: one process per seed, e.g. 0-9 or 0,3,7")
    t.add_argument("--parallel", type=int, default=1, help="study: seeds trained at once")
    t.add_argument("--study", help="study name (default: <config>__study__<time>)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate runs or studies: mean with t CI per run, IQM with bootstrap CI "
                       "across seeds and tasks")
    e.add_argument("run", nargs="+", help="run or study names (several studies: one stratum per task)")
    _runs_dir_option(e, "runs")
    e.add_argument("--episodes", type=int, help="evaluate now on this many episodes (default: the stored "
                   "absolute metric, else eval.episodes x eval.final_factor)")
    e.add_argument("--checkpoint", help="run: checkpoint file, name (best.pt) or env-step count (default: latest)")
    e.add_argument("--seed", type=int, help="run: eval seed (default 12345)")
    e.add_argument("--mode", choices=("ship", "greedy", "sampled"), default="ship",
                   help="study: which actions to aggregate (ship: the better mode)")
    e.add_argument("--stochastic", action="store_true", help=argparse.SUPPRESS)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval_stats)

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

    cp = sub.add_parser("compare", help="A/B verdict between two runs, studies, or configs (trained with N seeds)")
    cp.add_argument("a")
    cp.add_argument("b")
    cp.add_argument("overrides", nargs="*", help="overrides for configs trained here")
    _runs_dir_option(cp, "runs")
    cp.add_argument("--mode", choices=("ship", "greedy", "sampled"), default="ship")
    cp.add_argument("--margin", help="non-inferiority margin as a percentage of |A|, e.g. 2%%")
    cp.add_argument("--alpha", type=float, default=0.05)
    cp.add_argument("--seeds", type=int, help="seeds per config when A/B are config files (default compare.seeds)")
    cp.add_argument("--parallel", type=int, default=1)
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(func=cmd_compare)

    bl = sub.add_parser("baseline", help="store a reference result, check runs against it")
    blsub = bl.add_subparsers(dest="baseline_command", required=True)
    bs = blsub.add_parser("set", help="store RUN|STUDY as baseline NAME")
    bs.add_argument("name")
    bs.add_argument("source")
    _runs_dir_option(bs, "runs")
    bs.add_argument("--mode", choices=("ship", "greedy", "sampled"), default="ship")
    bs.set_defaults(func=cmd_baseline_set)
    bc = blsub.add_parser("check", help="alert (exit 1) when RUN|STUDY falls below baseline NAME")
    bc.add_argument("name")
    bc.add_argument("source")
    _runs_dir_option(bc, "runs")
    bc.add_argument("--tolerance", default="3%", help="allowed fall, a percentage of |baseline| (default 3%%)")
    bc.add_argument("--alpha", type=float, default=0.05)
    bc.add_argument("--hook", help="shell command run on an alert (alert JSON on stdin)")
    bc.add_argument("--json", action="store_true")
    bc.set_defaults(func=cmd_baseline_check)

    sb = sub.add_parser("stability", help="action variance across the seeds of a study on a probe set")
    sb.add_argument("study")
    _runs_dir_option(sb, "runs")
    sb.add_argument("--probes", type=int, default=256)
    sb.add_argument("--json", action="store_true")
    sb.set_defaults(func=cmd_stability)

    rp = sub.add_parser("report", help="one self-contained HTML report of a run, study or comparison")
    rp.add_argument("source", help="run or study name, or a comparison JSON from runs/comparisons")
    rp.add_argument("-o", "--output", default="report.html")
    _runs_dir_option(rp, "runs")
    rp.set_defaults(func=cmd_report)

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


def run_captured(argv: Sequence[str]) -> tuple[int, str, str]:
    """``accord ARGV`` in this process: (exit code, stdout, stderr), as a shell would see them (tests,
    the reliability battery). An exception that escapes ``main`` is a bug: exit 1, traceback in stderr."""
    import contextlib
    import io
    import traceback

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main(list(argv))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        except Exception:
            traceback.print_exc(file=err)
            code = 1
    return code, out.getvalue(), err.getvalue()


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
