from pathlib import Path

import pytest

from accord.config import Config, dump_config, load_config, parse_override
from accord.errors import ConfigError

CONFIGS = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    assert isinstance(load_config(path), Config)


def test_defaults_are_mappo_on_spread():
    cfg = load_config()
    assert cfg.task.name == "spread" and cfg.architecture == "ctde" and cfg.centralized_critic


def test_overrides_are_typed():
    cfg = load_config(None, ["ppo.lr=3e-4", "model.recurrent=true", "task.params.n_agents=4"])
    assert cfg.ppo.lr == 3e-4 and cfg.model.recurrent is True and cfg.task.params == {"n_agents": 4}
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_typo_suggests_the_closest_key():
    with pytest.raises(ConfigError, match=r"ppo\.lrr: unknown key \(did you mean 'ppo\.lr'\?\)"):
        load_config(None, ["ppo.lrr=1"])


def test_wrong_type_and_wrong_choice_are_named():
    with pytest.raises(ConfigError, match=r"ppo\.epochs: .*'many'"):
        load_config(None, ["ppo.epochs=many"])
    with pytest.raises(ConfigError, match=r"architecture: got 'central'; allowed: 'ctde', 'decentralized'"):
        load_config(None, ["architecture=central"])


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["ppo.lrr=1", "model.hiden=3", "seed=x"])
    msg = str(e.value)
    assert "ppo.lrr" in msg and "model.hiden" in msg and "seed" in msg and "\n" not in msg


def test_invalid_combination_is_refused():
    with pytest.raises(ConfigError, match="ppo.critic: 'centralized' needs architecture 'ctde'"):
        load_config(None, ["architecture=decentralized", "ppo.critic=centralized"])
    with pytest.raises(ConfigError, match="architecture: 'hierarchical' composes PPO learners"):
        load_config(None, ["architecture=hierarchical", "algorithm=q", "credit.name=iql"])
    with pytest.raises(ConfigError, match="runner.kind: 'subproc'"):
        load_config(None, ["runner.kind=subproc"])


def test_unknown_task_and_task_parameter():
    with pytest.raises(ConfigError, match="unknown task 'sprea' \\(did you mean 'spread'\\?\\)"):
        load_config(None, ["task.name=sprea"])
    with pytest.raises(ConfigError, match="task.params.n_agent: unknown parameter of 'spread' "
                                          "\\(did you mean 'n_agents'\\?\\)"):
        load_config(None, ["task.params.n_agent=2"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["seed=7", "ppo.clip=0.1"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


def test_schema_errors_do_not_hide_cross_field_problems():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["seed=x", "architecture=decentralized", "ppo.critic=centralized", "credit.name=vdn"])
    msg = str(e.value)
    assert msg.startswith("invalid config: seed: ") and "\n" not in msg
    assert "ppo.critic: 'centralized' needs architecture 'ctde'" in msg
    assert "credit.name: 'vdn' does not work with algorithm 'ppo'" in msg
    with pytest.raises(ConfigError) as e:  # a rule about a key that is itself invalid is not repeated
        load_config(None, ["credit.name=3", "credit.attention_heads=5"])
    assert "credit.attention_heads: 5 does not divide" in str(e.value) and "credit.name: unknown" not in str(e.value)
