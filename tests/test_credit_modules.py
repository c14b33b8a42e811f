"""The PPO credit interface: every registered method trains, logs and survives a checkpoint."""

from __future__ import annotations

import pytest
import torch
from batches import random_batch

from accord.config import load_config
from accord.credit import CREDIT
from accord.credit.base import CreditContext
from accord.envs.registry import make_env
from accord.loop import build_learner, train_step
from accord.store import load_checkpoint, save_checkpoint

PPO_METHODS = [name for name, m in CREDIT.items() if "ppo" in m.algorithms]

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.mark.parametrize("method", PPO_METHODS)
def test_method_trains_and_resumes_from_a_checkpoint(method, tmp_path):
    overrides = ["task.name=freerider", "task.num_envs=4", "ppo.rollout_len=10", "ppo.epochs=1",
                 f"credit.name={method}"]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    algo, runner = build_learner(cfg, make_env(cfg.task))
    out = train_step(algo, runner)
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert any(k.startswith("credit/adv_std/") for k in out)
    path = save_checkpoint(tmp_path / "ckpt.pt", {"algo": algo.state_dict()})

    other, runner = build_learner(cfg, make_env(cfg.task))
    other.load_state_dict(load_checkpoint(path)["algo"])
    for (k, a), b in zip(algo.credit.state_dict().items(), other.credit.state_dict().values(), strict=True):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, msg=k)
    assert [o.state_dict()["state"].keys() for o in algo.credit.optimizers.values()] == \
        [o.state_dict()["state"].keys() for o in other.credit.optimizers.values()]


def test_mixed_credit_interpolates_between_shared_and_individual():
    spec = make_env(load_config(None, ["task.name=freerider", "task.num_envs=3"]).task).spec
    batch = random_batch(spec, t=5, b=3, seed=0)
    g = torch.Generator().manual_seed(1)
    ctx = CreditContext(torch.randn(5, 3, 4, generator=g), torch.randn(5, 3, 4, generator=g), batch.state, None)

    def adv(method: str, *extra: str) -> torch.Tensor:
        cfg = load_config(None, ["task.name=freerider", f"credit.name={method}", *extra])
        return CREDIT[method].fn(cfg, spec).advantages(batch, ctx).advantages

    torch.testing.assert_close(adv("mixed", "credit.individual_weight=0"), adv("shared"))
    torch.testing.assert_close(adv("mixed", "credit.individual_weight=1"), adv("individual"))
    half = adv("mixed", "credit.individual_weight=0.5")
    torch.testing.assert_close(half, (adv("shared") + adv("individual")) / 2)  # GAE is linear in the reward
