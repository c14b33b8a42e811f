"""Studies, evaluation records, A/B verdicts, baselines and reports on a synthetic run store.

Runs are written directly (config, metrics, evals.jsonl), so these tests train nothing except the
one that checks the in-training protocol and the live baseline check on a few-second run.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from accord import cli
from accord.config import load_config
from accord.eval.baseline import load_baseline, parse_tolerance
from accord.store import MetricsLog, RunDir, read_flags
from accord.store.evals import append_eval, indexed_evals
from accord.study import STUDY_FILE, parse_seeds


def fake_run(root, name, seed, mean, sd=1.0, task="spread", n_agents=2, episodes=40, steps=(1000, 2000, 3000)):
    """A finished run with a metric history and an absolute-metric record drawn from N(mean, sd)."""
    cfg = load_config(None, [f"runs_dir={root}", f"task.name={task}", f"task.params.n_agents={n_agents}",
                             f"seed={seed}"])
    run = RunDir.create(root, config_dict=cfg.model_dump(mode="json"), task=task, algorithm="ppo", seed=seed,
                        name=name)
    rng = np.random.default_rng(seed + 1000 * int(abs(mean)))
    with MetricsLog(run.path, tensorboard=False) as log:
        for i, s in enumerate(steps):
            log.write({"env_steps": s, "return_mean": mean * (1 + 0.5 * (len(steps) - 1 - i) / len(steps))
                       + rng.normal(0, sd)})
    for s in steps:
        r = rng.normal(mean, sd, 8)
        append_eval(run.path, {"kind": "interval", "env_steps": s,
                               **{m: {"episodes": 8, "return_mean": float(r.mean()), "ci": [r.min(), r.max()],
                                      "returns": r.tolist()} for m in ("greedy", "sampled")}})
    g, smp = rng.normal(mean, sd, episodes), rng.normal(mean - 1, sd, episodes)
    append_eval(run.path, {"kind": "absolute", "env_steps": steps[-1], "checkpoint": "best.pt", "ship": "greedy",
                           "greedy": {"episodes": episodes, "return_mean": float(g.mean()), "ci": [0, 0],
                                      "returns": g.tolist(), "success_rate": 0.5},
                           "sampled": {"episodes": episodes, "return_mean": float(smp.mean()), "ci": [0, 0],
                                       "returns": smp.tolist(), "success_rate": 0.4}})
    return run


def fake_study(root, name, means, **kw):
    members = []
    for seed, mean in enumerate(means):
        fake_run(root, f"{name}__s{seed}", seed, mean, **kw)
        members.append({"seed": seed, "run": f"{name}__s{seed}", "status": "finished"})
    (root / name).mkdir()
    (root / name / STUDY_FILE).write_text(yaml.safe_dump(
        {"name": name, "config": None, "overrides": [], "seeds": list(range(len(means))), "members": members}))


def cli_run(capsys, *args):
    with pytest.raises(SystemExit) as e:
        cli.main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_seed_lists_and_tolerances():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7] and parse_seeds("5") == [5]
    assert parse_tolerance("3%") == 0.03 and parse_tolerance("0.5 %") == 0.005


def test_compare_studies_verdicts_exit_codes_and_storage(tmp_path, capsys):
    root = tmp_path / "runs"
    fake_study(root, "base", [-20, -21, -19, -20.5, -19.5])
    fake_study(root, "good", [-10, -11, -9, -10.5, -9.5])
    fake_study(root, "same", [-20.2, -20.8, -19.1, -20.1, -19.6])
    code, out, _ = cli_run(capsys, "compare", "base", "good", "--root", str(root))
    assert code == 0 and "B is better than A" in out and "P(B > A) = 1.00" in out
    code, out, _ = cli_run(capsys, "compare", "good", "base", "--root", str(root))
    assert code == 4 and "worse" in out
    code, out, _ = cli_run(capsys, "compare", "base", "same", "--root", str(root), "--json")
    verdict = json.loads(out)
    assert code == 3 and verdict["verdict"] == "no detectable difference" and verdict["unit"] == "seeds"
    assert len(list((root / "comparisons").glob("*.json"))) == 3
    code, out, _ = cli_run(capsys, "compare", "base", "same", "--root", str(root), "--margin", "10%")
    assert code == 0 and "non-inferior" in out


def test_bad_input_gives_one_line_and_exit_2(tmp_path, capsys):
    root = tmp_path / "runs"
    fake_study(root, "two_agents", [-20, -21, -19])
    fake_study(root, "three_agents", [-30, -31, -29], n_agents=3)
    fake_study(root, "lonely", [-20])
    cases = [
        (("compare", "two_agents", "three_agents"), "same task"),
        (("compare", "two_agents", "lonely"), "at least 2"),
        (("eval", "lonely"), "at least 2"),
        (("baseline", "check", "nope", "two_agents"), "no baseline 'nope'"),
        (("baseline", "check", "nope", "two_agents", "--tolerance", "three"), "not a percentage"),
    ]
    for args, needle in cases:
        code, _, err = cli_run(capsys, *args, "--root", str(root))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (args, err)


def test_eval_of_a_study_and_of_a_run(tmp_path, capsys):
    root = tmp_path / "runs"
    fake_study(root, "st", [-20, -21, -19, -22])
    code, out, _ = cli_run(capsys, "eval", "st", "--root", str(root), "--json")
    res = json.loads(out)
    assert code == 0 and res["sources"][0]["mode"] == "greedy" and res["ci"][0] <= res["iqm"] <= res["ci"][1]
    code, out, _ = cli_run(capsys, "runs", "--root", str(root), "--rebuild")
    assert code == 0 and "st" in out and "finished:4" in out


def test_baseline_alerts_on_a_regression_and_runs_the_hook(tmp_path, capsys):
    root = tmp_path / "runs"
    fake_study(root, "ref", [-20, -21, -19, -20.5, -19.5])
    fake_study(root, "again", [-20.3, -20.6, -19.2, -20.0, -19.8])
    fake_study(root, "broken", [-40, -42, -39, -41, -38])
    code, out, _ = cli_run(capsys, "baseline", "set", "demo", "ref", "--root", str(root))
    assert code == 0 and len(load_baseline(root, "demo")["curve"]["env_steps"]) == 3
    code, out, _ = cli_run(capsys, "baseline", "check", "demo", "again", "--root", str(root))
    assert code == 0 and "ok" in out
    hook_out = tmp_path / "hook.json"
    code, out, _ = cli_run(capsys, "baseline", "check", "demo", "broken", "--root", str(root), "--tolerance", "3%",
                           "--hook", f"cat > {hook_out}")
    assert code == 1 and "ALERT" in out
    assert json.loads(hook_out.read_text())["alert"] is True
    assert (root / "baselines" / "alerts.jsonl").read_text().count("\n") == 1
    assert read_flags(root / "broken__s0")[0]["flag"] == "baseline_regression"


def test_training_runs_the_protocol_and_the_live_baseline_check(tmp_path):
    from accord.loop import train

    root = tmp_path / "runs"
    fake_study(root, "ref", [-5, -5.5, -4.5], steps=(400, 800, 1200, 1600))
    from accord.eval.baseline import set_baseline

    set_baseline(root, "demo", "ref")
    cfg = load_config(None, [f"runs_dir={root}", "name=live", "task.params.n_agents=2", "task.num_envs=8",
                             "ppo.rollout_len=10", "ppo.epochs=1", "train.total_env_steps=1600",
                             "train.log_interval=400", "eval.interval=800", "eval.episodes=8", "eval.final_factor=2",
                             "credit.monitor.contribution_episodes=0", "baseline.name=demo"])
    result = train(cfg, progress=False)
    run = result.run
    evals = [json.loads(x) for x in (run.path / "evals.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in evals] == ["interval", "interval", "absolute"]
    assert evals[-1]["greedy"]["episodes"] == 16 and evals[-1]["ship"] in ("greedy", "sampled")
    assert (run.checkpoints_dir / "best.pt").is_file()
    assert {r["mode"] for r in indexed_evals(root, "live")} == {"greedy", "sampled"}
    records = MetricsLog.read(run.path)
    assert "eval_greedy_return" in records[1] and "absolute_sampled_return" in records[-1]
    # A random-ish 2-agent policy scores far below -5: the live check flags it once.
    assert any(r.get("baseline_alert") == 1.0 for r in records)
    assert [f["flag"] for f in read_flags(run.path)].count("baseline_regression") == 1


def test_report_of_a_comparison_is_self_contained_and_renders(tmp_path, capsys):
    import re
    import shutil
    import subprocess

    root = tmp_path / "runs"
    fake_study(root, "a", [-20, -21, -19])
    fake_study(root, "b", [-10, -11, -9])
    code, out, _ = cli_run(capsys, "compare", "a", "b", "--root", str(root), "--json")
    stored = json.loads(out)["stored"]
    out_html = tmp_path / "report.html"
    code, _, err = cli_run(capsys, "report", stored, "--root", str(root), "-o", str(out_html))
    assert code == 0, err
    doc = out_html.read_text()
    # Learning curves and the absolute metric; these synthetic runs have no checkpoint for contribution.
    assert doc.count("data:image/png;base64,") == 2 and "better" in doc
    assert not re.search(r"(src|href)=['\"]https?:", doc)  # nothing fetched from the network
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser is not None, "the report is checked in headless Chromium: `make browser` installs it"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", out_html.as_uri()], capture_output=True, text=True, timeout=60).stdout
    assert 'data-plots-loaded="2"' in dom, dom[-500:]


def test_stability_flags_the_seed_that_acts_unlike_the_others(tmp_path):
    import torch

    from accord.envs.registry import make_env
    from accord.eval.stability import stability
    from accord.policy import Policy
    from accord.store import save_checkpoint

    root = tmp_path / "runs"
    runs = [fake_run(root, f"st__s{s}", s, -20.0) for s in range(4)]
    cfg = load_config(None, ["task.params.n_agents=2", "task.num_envs=2"])
    env = make_env(cfg.task)
    torch.manual_seed(0)
    policy = Policy.build(env.spec, cfg.model)
    env.close()
    for i, run in enumerate(runs):
        p = Policy.from_record(policy.record())
        if i == 3:  # a seed whose policy is sharply peaked where the others are near uniform
            with torch.no_grad():
                for param in p.actor.head.parameters():
                    param.mul_(200.0)
        for steps in (1, 2):
            save_checkpoint(run.checkpoints_dir / f"ckpt_{steps:012d}.pt",
                            {"algorithm": "ppo", "algo": {"env_steps": steps}, "policy": p.record()})
    rep = stability(runs, probes=64)
    assert rep.hypersensitive == ["st__s3"]
    assert 0 < rep.agents[0]["agreement"] <= 1 and rep.agents[0]["js"] > 0
    assert rep.churn["st__s0"] == [0.0]  # the same weights in both checkpoints


def test_evaluation_does_not_change_training(tmp_path):
    from accord.loop import train

    base = [f"runs_dir={tmp_path / 'runs'}", "task.params.n_agents=2", "task.num_envs=8", "ppo.rollout_len=10",
            "ppo.epochs=1", "train.total_env_steps=800", "train.log_interval=200",
            "credit.monitor.contribution_episodes=0", "logging.tensorboard=false"]
    with_eval = train(load_config(None, [*base, "name=with", "eval.interval=400", "eval.episodes=4",
                                         "eval.final_factor=1"]), progress=False)
    without = train(load_config(None, [*base, "name=without", "eval.interval=0"]), progress=False)
    keys = ("env_steps", "return_mean", "policy_loss", "value_loss")
    a = [{k: r.get(k) for k in keys} for r in MetricsLog.read(with_eval.run.path) if "return_mean" in r]
    b = [{k: r.get(k) for k in keys} for r in MetricsLog.read(without.run.path)]
    assert a == b
    assert not (without.run.path / "evals.jsonl").exists()


def test_credit_drift_is_measured_during_training_and_flags_a_change(tmp_path):
    from accord.eval.drift import CONTRIBUTION_FILE, DriftMonitor
    from accord.loop import train

    cfg = load_config(None, [f"runs_dir={tmp_path / 'runs'}", "name=drift", "task.params.n_agents=2",
                             "task.num_envs=8", "ppo.rollout_len=10", "ppo.epochs=1", "train.total_env_steps=800",
                             "train.log_interval=200", "credit.monitor.contribution_episodes=0", "eval.interval=0",
                             "drift.interval=2", "drift.episodes=4", "drift.threshold=1e-9"])
    run = train(cfg, progress=False).run
    lines = (run.path / CONTRIBUTION_FILE).read_text().splitlines()
    assert len(lines) == 2 and set(json.loads(lines[0])["tracked"]) == {"agent_0", "agent_1"}
    assert "contribution_agent_0" in MetricsLog.read(run.path)[1]
    # Any change beyond a ~zero threshold: each agent flagged once, at the second measurement.
    drift = [f for f in read_flags(run.path) if f["flag"] == "credit_drift"]
    assert {f["agent"] for f in drift} <= {"agent_0", "agent_1"} and len(drift) == len({f["agent"] for f in drift})
    # A resumed monitor keeps the first measurement as its reference.
    assert DriftMonitor(cfg, run.path).reference == json.loads(lines[0])["tracked"]
