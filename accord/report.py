"""``accord report RUN|STUDY|COMPARISON -o report.html``: one self-contained HTML file.

Plots are matplotlib PNGs embedded as base64 (no network, no external files): learning curves with
a 95 % t band across seeds, the evaluation protocol's greedy and sampled curves, the absolute metric
per seed, per-agent contribution (ablation and Shapley values, of the first run), then flags,
baseline alerts and, for a comparison, the A/B verdict.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from accord.errors import AccordError
from accord.eval.scores import Source, resolve, scores, task_identity
from accord.store import MetricsLog, RunDir, read_flags
from accord.store.evals import MODES, read_evals

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.verdict{font-size:1.1em;padding:.6em;
background:#eef5ff;border-left:4px solid #36c}.alert{background:#fff0f0;border-left:4px solid #c33;padding:.4em}
img{max-width:100%}.muted{color:#777}"""


# Marks the page with how many plots decoded (read by the headless-browser test; no network used).
_COUNT_PLOTS = ("<script>window.addEventListener('load',()=>{document.body.dataset.plotsLoaded="
                "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;});</script>")


def _plt() -> Any:
    """pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _band(curves: list[dict[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    vals = np.array([[c[s] for s in steps] for c in curves], dtype=float).reshape(len(curves), len(steps))
    mean = vals.mean(0) if len(steps) else np.zeros(0)
    if len(curves) > 1 and len(steps):
        half = stats.t.ppf(0.975, len(curves) - 1) * vals.std(0, ddof=1) / np.sqrt(len(curves))
    else:
        half = np.zeros(len(steps))
    return np.asarray(steps), mean, mean - half, mean + half


def _curves_plot(sources: list[Source], title: str) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for src in sources:
        train = [{int(r["env_steps"]): float(r["return_mean"]) for r in MetricsLog.read(run.path)
                  if r.get("return_mean") is not None} for run in src.runs]
        x, m, lo, hi = _band(train)
        if x.size:
            axes[0].plot(x, m, label=f"{src.name} ({len(train)} seeds)")
            axes[0].fill_between(x, lo, hi, alpha=0.25)
        for mode, style in zip(MODES, ("-", "--"), strict=True):
            ev = [{int(r["env_steps"]): float(r[mode]["return_mean"]) for r in read_evals(run.path, "interval")}
                  for run in src.runs]
            x, m, lo, hi = _band([e for e in ev if e])
            if x.size:
                axes[1].plot(x, m, style, label=f"{src.name} {mode}")
                axes[1].fill_between(x, lo, hi, alpha=0.2)
    axes[0].set(title="training return (mean, 95% t band across seeds)", xlabel="env steps", ylabel="return")
    axes[1].set(title="evaluation protocol: greedy and sampled", xlabel="env steps", ylabel="eval return")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _absolute_plot(sources: list[Source]) -> tuple[str, str]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    rows = []
    for i, src in enumerate(sources):
        sc = scores(src)
        for mode, off, marker, color in (("greedy", -0.12, "o", "C0"), ("sampled", 0.12, "s", "C1")):
            vals = [r[mode] for r in sc.rows]
            ax.scatter(np.full(len(vals), i + off), vals, marker=marker, color=color, alpha=0.8,
                       label=f"{mode}" if i == 0 else None)
        for r in sc.rows:
            rows.append((src.name, r["seed"], r["run"], r["greedy"], r["sampled"], r.get(f"success_{sc.mode}"),
                         sc.mode))
    ax.set_xticks(range(len(sources)), [s.name for s in sources], fontsize=7)
    ax.set_xlim(-0.5, len(sources) - 0.5)
    ax.set(title="absolute metric per seed (best checkpoint, many episodes)", ylabel="return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    table = _html_table(("source", "seed", "run", "greedy", "sampled", "success", "shipped mode"), rows)
    return _png(fig), table


def _contribution(src: Source) -> str:
    from accord.eval.contribution import report_run

    plt = _plt()

    run = src.runs[0]
    try:
        rep = report_run(run.path, root=run.path.parent, episodes=32)
    except AccordError as e:
        return f'<p class="muted">contribution not available: {html.escape(str(e))}</p>'
    names = [a.name for a in rep.agents]
    fig, ax = plt.subplots(figsize=(6, 3))
    x = np.arange(len(names))
    for off, key, label in ((-0.2, "ablation", "ablation v(N)-v(N-i)"), (0.2, "shapley", "Shapley")):
        vals = np.array([getattr(a, key) for a in rep.agents])
        ci = np.array([getattr(a, f"{key}_ci") for a in rep.agents])
        ax.bar(x + off, vals, 0.4, yerr=[vals - ci[:, 0], ci[:, 1] - vals], capsize=3, label=label)
    ax.set_xticks(x, names)
    ax.set(title=f"per-agent contribution ({run.name}, {rep.episodes} episodes)", ylabel="return")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    lazy = [a.name for a in rep.agents if a.lazy]
    note = f"<p>lazy agents: {', '.join(lazy) if lazy else 'none'}</p>"
    return _png(fig) + note


def _stability(src: Source) -> str:
    from accord.eval.stability import stability

    if len(src.runs) < 3:
        return '<p class="muted">needs a study of at least 3 seeds</p>'
    try:
        rep = stability(src.runs, probes=128)
    except (AccordError, IndexError) as e:
        return f'<p class="muted">not available: {html.escape(str(e) or type(e).__name__)}</p>'
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    colors = ["#c33" if r in rep.hypersensitive else "#36c" for r in rep.runs]
    ax.bar([str(s) for s in rep.seeds], rep.per_seed_divergence, color=colors)
    ax.set(title="divergence of each seed's actions from the other seeds (probe set)", xlabel="seed",
           ylabel="JS (nats)" if rep.action_kind == "discrete" else "mean |action - others|")
    ax.grid(alpha=0.3, axis="y")
    keys = [k for k in ("agreement", "js", "mean_spread") if k in rep.agents[0]]
    table = _html_table(("agent", *keys), [(a["agent"], *[a[k] for k in keys]) for a in rep.agents])
    flagged = ", ".join(rep.hypersensitive) or "none"
    return _png(fig) + table + f"<p>seeds hypersensitive to initialization: {html.escape(flagged)}</p>"


def _html_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return html.escape("-" if v is None else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _flags(sources: list[Source], root: Path) -> str:
    rows = []
    for src in sources:
        for run in src.runs:
            for f in read_flags(run.path):
                rows.append((run.name, f["flag"], f.get("env_steps"), f.get("detail", "")))
    alerts = []
    path = root / "baselines" / "alerts.jsonl"
    names = {s.name for s in sources}
    if path.is_file():
        alerts = [a for a in (json.loads(x) for x in path.read_text().splitlines() if x.strip())
                  if a.get("candidate") in names]
    out = _html_table(("run", "flag", "env steps", "detail"), rows) if rows else "<p>no flags</p>"
    for a in alerts:
        out += (f'<p class="alert">baseline alert: {html.escape(a["candidate"])} against '
                f'{html.escape(a["baseline"])} (tolerance {100 * a["tolerance"]:.1f}%, {a["time"]})</p>')
    return out


def _cost(sources: list[Source], root: Path) -> str:
    """Per-agent cost of the first run, and return vs cost across the store's runs of the same task."""
    from accord.cost import cost_rows, pareto_front, retries_note, run_point

    run = sources[-1].runs[0]
    records = [r for r in MetricsLog.read(run.path) if "return_mean" in r]
    last = records[-1] if records else {}
    header, rows = cost_rows(run.path, last)
    if not rows:
        return '<p class="muted">no cost.json (a run written before the cost meter)</p>'
    task = task_identity(run)["name"]
    points = []
    for d in sorted(root.iterdir()):
        if (d / "config.yaml").is_file() and task_identity(RunDir.open(root, d.name))["name"] == task:
            point = run_point(d)
            points += [point] if point else []
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, label) in zip(axes, (("flops", "FLOPs per decision (mean over agents)"),
                                       ("latency_p50_us", "latency p50 (us, mean over agents)"),
                                       ("messages", "messages per agent per episode")), strict=True):
        ax.scatter([p[key] for p in points], [p["return"] for p in points], s=14, alpha=0.6, label="runs")
        front = pareto_front(points, key)
        ax.step([p[key] for p in front], [p["return"] for p in front], "r-", where="post", label="Pareto front")
        ax.set(xlabel=label, ylabel="training return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"return vs cost: {len(points)} runs of task {task} in {root}")
    return (_html_table(header, rows) + f'<p class="muted">cost.json of {html.escape(run.name)}; traffic per '
            f"episode over the last log interval. {html.escape(retries_note(last))}</p>" + _png(fig))


def write_report(root: str | Path, source: str, output: str | Path) -> Path:
    """Write the report of a run, study or stored comparison (JSON path or file name) to ``output``."""
    root = Path(root)
    verdict = None
    cmp_path = Path(source)
    if not cmp_path.is_file():
        cmp_path = root / "comparisons" / (source if source.endswith(".json") else f"{source}.json")
    if cmp_path.is_file():
        verdict = json.loads(cmp_path.read_text())
        sources = [resolve(root, verdict["a"]["name"]), resolve(root, verdict["b"]["name"])]
        title = f"A/B comparison: {verdict['a']['name']} vs {verdict['b']['name']}"
    else:
        sources = [resolve(root, source)]
        title = f"{sources[0].label}"
    parts = [f"<h1>accord report: {html.escape(title)}</h1>",
             f'<p class="muted">task {html.escape(str(sources[0].task))}; written '
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>"]
    if verdict is not None:
        ci = verdict["iqm_diff_ci"]
        parts.append(
            f'<h2>Verdict</h2><p class="verdict"><b>{html.escape(verdict["verdict"])}</b> (B against A, '
            f"{verdict['unit']}: {verdict['n_a']} vs {verdict['n_b']}). IQM difference B - A "
            f"{verdict['iqm_diff']:+.3f} [95% CI {ci[0]:+.3f}, {ci[1]:+.3f}]; P(B &gt; A) = "
            f"{verdict['prob_improvement']:.2f}; Welch p = {verdict['p_welch']:.3g}; Mann-Whitney p = "
            f"{verdict['p_mannwhitney']:.3g}; {verdict['n_needed'] or '&gt;100000'} {verdict['unit']} per side "
            f"would detect the observed effect (d = {verdict['effect_size']:.2f}) at 80% power.</p>")
    parts.append("<h2>Learning curves</h2>" + _curves_plot(sources, title))
    img, table = _absolute_plot(sources)
    parts.append("<h2>Evaluation protocol: absolute metric</h2>" + img + table)
    parts.append("<h2>Per-agent contribution</h2>" + _contribution(sources[-1]))
    parts.append("<h2>Action variance across seeds</h2>" + _stability(sources[-1]))
    parts.append("<h2>Cost per agent and the return-cost Pareto front</h2>" + _cost(sources, root))
    parts.append("<h2>Flags and alerts</h2>" + _flags(sources, root))
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>{''.join(parts)}{_COUNT_PLOTS}</body></html>")
    out = Path(output)
    out.write_text(doc, encoding="utf-8")
    return out
