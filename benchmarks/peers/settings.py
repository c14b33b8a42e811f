"""accord's settings derived from a peer's own config, and the side-by-side table of both.

Each peer runner prints the peer's configuration as the peer's own code reads it at run time
(``<peer>_run.py --settings``: one ``SETTINGS {json}`` line in the peer's native names).
``DERIVE[benchmark](peer)`` turns it into rows of :class:`Setting`: the peer's value, accord's value
in the **matched-work** run, the accord overrides that set it, and, where the harness could not
remove a difference, why (``differs``). Stdlib only: tests import it without any peer installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SAME = object()  # accord takes the peer's value


@dataclass(frozen=True)
class Setting:
    name: str
    peer: Any
    accord: Any
    overrides: tuple[str, ...] = ()  # accord `key=value` overrides this row contributes
    differs: str = ""  # why the two still differ; empty when matched


def yaml_text(value: Any) -> str:
    """An override value as accord's YAML parser reads it back."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def row(name: str, peer: Any, accord: Any = SAME, keys: tuple[str, ...] = (), sets: tuple[str, ...] = (),
        differs: str = "") -> Setting:
    """A row; each of ``keys`` is set to accord's value, ``sets`` are further literal overrides."""
    value = peer if accord is SAME else accord
    return Setting(name, peer, value, tuple(f"{k}={yaml_text(value)}" for k in keys) + sets, differs)


# EPyMARL's ppo_learner and BenchMARL's ClipPPOLoss(normalize_advantage=False) use advantages as they come.
RAW_ADVANTAGES = row("advantage normalization", "none", sets=("ppo.normalize_advantages=false",))


def overrides(rows: list[Setting]) -> list[str]:
    return [o for r in rows for o in r.overrides]


def batch_rows(num_envs: int, steps: int, minibatches: int, epochs: int, peer_sampling: str) -> list[Setting]:
    """Batch shape, epochs and minibatch count and size. accord's feed-forward models train on
    minibatches of shuffled env steps (all agents of a step together, docs/speed.md), so the size
    matches when the env steps divide evenly."""
    if (num_envs * steps) % minibatches:
        raise ValueError(f"{num_envs} envs x {steps} steps cannot make {minibatches} equal minibatches")
    whole = peer_sampling == "whole batch"
    return [
        row("envs", num_envs, keys=("task.num_envs",)),
        row("steps per env per batch", steps, keys=("ppo.rollout_len",)),
        row("epochs (passes over a batch)", epochs, keys=("ppo.epochs",)),
        row("minibatches per epoch", minibatches, keys=("ppo.minibatches",)),
        row("Adam steps per batch", epochs * minibatches),
        row("minibatch size (frames)", num_envs * steps // minibatches),
        row("minibatch sampling", peer_sampling, "whole batch" if whole else "shuffled env steps",
            differs="" if whole else "accord keeps the agents of one env step in the same minibatch"),
    ]


def evaluation_sets(peer_evaluations: int, peer_episodes: int, interval: int,
                    frames: int) -> tuple[tuple[str, ...], str]:
    """accord's evaluation overrides (and their description) playing as many evaluation episodes as
    the peer within ``frames``: accord evaluates every ``interval`` steps and at the last step, each
    time greedy *and* sampled, then replays its best checkpoint once (``eval.final_factor: 1``)."""
    if peer_evaluations == 0:
        return ("eval.interval=0",), "none"
    interval = min(interval, frames)
    accord_evaluations = -(-frames // interval) + 1  # interval points (the last step included), best checkpoint
    episodes = max(1, round(peer_evaluations * peer_episodes / (2 * accord_evaluations)))
    return ((f"eval.interval={interval}", f"eval.episodes={episodes}", "eval.final_factor=1"),
            f"{accord_evaluations} x 2 modes x {episodes} (every {interval} steps, then the best checkpoint)")


def jaxmarl(peer: dict[str, Any]) -> list[Setting]:
    """JaxMARL IPPO-FF (baselines/IPPO/config/ippo_ff_mpe.yaml, ippo_ff_mpe.py) -> accord IPPO on spread."""
    n, limit, h, act = peer["num_agents"], peer["max_steps"], peer["hidden"], peer["ACTIVATION"]
    grad = peer["MAX_GRAD_NORM"]
    return [
        row("task", f"{peer['ENV_NAME']} ({n} agents, {limit} steps)", f"spread ({n} agents, {limit} steps)",
            sets=("task.name=spread", f"task.params.n_agents={n}", f"task.params.episode_limit={limit}"),
            differs="JaxMARL's spread: 18-dim obs (4 zero comm dims), per-agent mix of local and global "
                    "reward, the time limit treated as a true end"),
        *batch_rows(int(peer["NUM_ENVS"]), int(peer["NUM_STEPS"]), int(peer["NUM_MINIBATCHES"]),
                    int(peer["UPDATE_EPOCHS"]), "shuffled frames"),
        row("critic input", "own observation (IPPO)", sets=("architecture=decentralized",)),
        row("networks (actor, critic)", f"separate, {h}-{h} {act}",
            sets=(f"model.hidden={h}", "model.layers=2", f"model.activation={act}")),
        row("compiled", "the whole training loop, jax.jit (compile time counted apart)",
            "update, and acting + env step (one program per two steps), torch.compile (compile time in training time)",
            sets=("train.compile=auto", "task.params.compile=auto")),
        row("env output validation", "none", "off (task.guard=false; on by default)", sets=("task.guard=false",)),
        row("agent id in input", False, keys=("model.agent_id",)),
        row("input LayerNorm", False, keys=("model.input_norm",)),
        row("lr (Adam eps 1e-5)", peer["LR"], keys=("ppo.lr", "ppo.critic_lr")),
        row("lr schedule", "linear to 0" if peer["ANNEAL_LR"] else "constant", "constant",
            differs="accord has no lr annealing" if peer["ANNEAL_LR"] else ""),
        row("gamma", peer["GAMMA"], keys=("ppo.gamma",)),
        row("GAE lambda", peer["GAE_LAMBDA"], keys=("ppo.gae_lambda",)),
        row("clip (ratio and value)", peer["CLIP_EPS"], keys=("ppo.clip",)),
        row("entropy coef", peer["ENT_COEF"], keys=("ppo.entropy_coef",)),
        row("value coef", peer["VF_COEF"], keys=("ppo.value_coef",)),
        row("value loss", "0.5 max(sq err, clipped sq err), raw targets",
            sets=("ppo.huber_delta=null", "ppo.value_clip=true", "ppo.value_norm=false")),
        row("advantage normalization", "per minibatch", "per batch", differs="accord normalizes once per batch"),
        row("grad-norm clip", f"{grad}, one global norm", f"{grad}, actor and critic each",
            sets=(f"ppo.max_grad_norm={grad}",), differs="accord clips each network's norm"),
        row("evaluation during training", "none", sets=("eval.interval=0",)),
    ]


def benchmarl(peer: dict[str, Any]) -> list[Setting]:
    """BenchMARL MAPPO on VMAS (base_experiment.yaml, mappo.yaml, layers/mlp.yaml, vmas/<task>.yaml)."""
    n_env, batch, size = int(peer["num_envs"]), int(peer["frames_per_batch"]), int(peer["minibatch_size"])
    if batch % n_env or batch % size:
        raise ValueError(f"{batch} frames per batch do not split into {n_env} envs and {size}-frame minibatches")
    cells, act, task = peer["num_cells"], peer["activation"], peer["task"]
    eval_every, eval_n = peer["evaluation_interval"], peer["evaluation_episodes"]
    evaluations = 1 + peer["frames"] // eval_every  # BenchMARL: after its first batch, then at each multiple
    sets, accord_text = evaluation_sets(evaluations, eval_n, eval_every, peer["frames"])
    return [
        row(f"task VMAS {peer['task_name']}", f"its yaml's {len(task)} params", "the same params",
            sets=("task.name=vmas", f"task.params.scenario={peer['task_name']}", "task.params.continuous=true",
                  "task.params.team_reward=mean", *(f"task.params.{k}={yaml_text(v)}" for k, v in task.items()))),
        *batch_rows(n_env, batch // n_env, batch // size, int(peer["n_minibatch_iters"]), "shuffled frames"),
        row("networks (actor, critic)", f"MLP {'x'.join(map(str, cells))} {act}",
            sets=(f"model.hidden={cells[0]}", f"model.layers={len(cells)}", f"model.activation={act}")),
        row("parameters shared by agents", peer["share_param_critic"], True, keys=("model.share_params",)),
        row("compiled", "no (eager torchrl)", "the update's minibatch step and acting, torch.compile (compile time in "
            "training time)", sets=("train.compile=auto",)),
        row("critic input", "all agents' observations", "global state + agent id",
            differs="accord's MAPPO critic conditions on the agent id"),
        row("policy", "TanhNormal, scale from the network" if peer["use_tanh_normal"] else "Normal",
            "Gaussian, state-independent log std", differs="accord's Gaussian has a learned log std"),
        row("reward learned from", "shared" if task.get("shared_rew") else "each agent's own",
            sets=("credit.name=" + ("shared" if task.get("shared_rew") else "individual"),)),
        row("lr", peer["lr"], keys=("ppo.lr", "ppo.critic_lr")),
        row("Adam eps", peer["adam_eps"], 1e-5,
            differs="" if peer["adam_eps"] == 1e-5 else "accord's Adam eps is 1e-5"),
        row("gamma", peer["gamma"], keys=("ppo.gamma",)),
        row("GAE lambda", peer["lmbda"], keys=("ppo.gae_lambda",)),
        row("clip", peer["clip_epsilon"], keys=("ppo.clip",)),
        row("entropy coef", peer["entropy_coef"], keys=("ppo.entropy_coef",)),
        row("value coef", peer["critic_coef"], keys=("ppo.value_coef",)),
        row("value loss", f"{peer['loss_critic_type']}; no value clipping, value or input normalization",
            sets=("ppo.huber_delta=null", "ppo.value_clip=false", "ppo.value_norm=false", "model.input_norm=false")),
        RAW_ADVANTAGES,
        row("grad-norm clip", peer["max_grad_norm"], keys=("ppo.max_grad_norm",)),
        row("evaluation episodes in the budget", f"{evaluations} x {eval_n} (after the first batch and every "
            f"{eval_every} frames, deterministic)", accord_text, sets=sets,
            differs="the same episode count, spread differently"),
    ]


def reward_row(standardize: bool) -> Setting:
    """EPyMARL's MAPPO standardizes rewards by running statistics (``standardise_rewards``)."""
    if not standardize:
        return row("reward standardization", False, sets=("ppo.standardize_rewards=false",))
    return row("reward standardization", "running mean/std, padded steps too", "running mean/std, real steps",
               sets=("ppo.standardize_rewards=true", "ppo.reward_stats=running"),
               differs="EPyMARL also counts the zero rewards of the padding after an episode ends")


def value_targets(nstep: int, target_update: float) -> Setting:
    """EPyMARL's MAPPO: n-step returns bootstrapped from a target critic, updated softly when
    ``target_update_interval_or_tau`` <= 1 (a rate) and copied every that many updates otherwise;
    advantages R - V(s) from the critic as it trains, every epoch."""
    text = f"{nstep}-step returns, advantages R - V(s) each epoch, target critic "
    if target_update <= 1:
        return row("value targets", text + f"(tau {target_update})",
                   sets=(f"ppo.nstep={nstep}", f"ppo.target_tau={target_update}"))
    return row("value targets", text + f"(copied every {target_update:g} updates)",
               f"{nstep}-step returns, advantages R - V(s) each epoch, no target critic", sets=(f"ppo.nstep={nstep}",),
               differs="accord's target critic follows softly (ppo.target_tau), never by copies")


def epymarl(peer: dict[str, Any]) -> list[Setting]:
    """EPyMARL MAPPO (src/config/default.yaml < envs/gymma.yaml < algs/mappo.yaml) on an lbforaging task."""
    n_env, limit, h = int(peer["batch_size_run"]), int(peer["env_args"]["time_limit"]), int(peer["hidden_dim"])
    if not peer["batch_size"] == peer["buffer_size"] == n_env:
        raise ValueError("the matched LBF run assumes EPyMARL trains on the episodes of one parallel collection")
    every, episodes = peer["test_interval"], peer["test_nepisode"]
    evaluations = peer["t_max"] // every + 1  # EPyMARL tests before training and at each interval
    sets, accord_text = evaluation_sets(evaluations, episodes, every, peer["t_max"])
    return [
        row("task", f"{peer['env_args']['key']}, time limit {limit}", f"same, time limit {peer['env_limit']}",
            sets=("task.name=gymma", f"task.params.env={peer['env_args']['key']}", "runner.kind=sync"),
            differs="" if peer["env_limit"] == limit else "accord keeps the env's registered limit"),
        row("env processes", n_env, "none (one process)", differs="each trainer's own way of running envs"),
        row("data per update", f"{n_env} whole episodes (<= {n_env * limit} steps)", f"{n_env} envs x {limit} steps",
            differs="accord collects fixed-length batches"),
        *batch_rows(n_env, limit, 1, int(peer["epochs"]), "whole batch"),
        row("actor", f"fc {h} relu, GRU {h}" if peer["use_rnn"] else f"fc {h} relu, fc {h}",
            sets=(f"model.hidden={h}", "model.layers=1", f"model.recurrent={yaml_text(bool(peer['use_rnn']))}",
                  "model.activation=relu", "model.input_norm=false")),
        row("critic", f"{peer['critic_type']}: MLP {h}-{h} relu on the state + agent id",
            f"MLP {h}-{h} relu on the state + agent id", sets=("model.critic_layers=2", "model.critic_recurrent=false"),
            differs="" if peer["critic_type"] == "cv_critic" and not peer.get("obs_individual_obs")
            and not peer.get("obs_last_action") else "EPyMARL's critic is not its state-only cv_critic"),
        row("agent id in input", peer["obs_agent_id"], keys=("model.agent_id",)),
        row("lr (Adam)", peer["lr"], keys=("ppo.lr", "ppo.critic_lr")),
        row("gamma", peer["gamma"], keys=("ppo.gamma",)),
        value_targets(int(peer["q_nstep"]), float(peer["target_update_interval_or_tau"])),
        reward_row(bool(peer["standardise_rewards"])),
        RAW_ADVANTAGES,
        row("clip", peer["eps_clip"], keys=("ppo.clip",)),
        row("entropy coef", peer["entropy_coef"], keys=("ppo.entropy_coef",)),
        row("value loss", "squared error; no value clipping or normalization",
            sets=("ppo.huber_delta=null", "ppo.value_clip=false", "ppo.value_norm=false")),
        row("grad-norm clip (each network)", peer["grad_norm_clip"], keys=("ppo.max_grad_norm",)),
        row("evaluation episodes in the budget", f"{evaluations} x {episodes} (at step 0 and every {every} steps, "
            f"{'greedy' if peer['test_greedy'] else 'sampled'})", accord_text, sets=(*sets, f"eval.num_envs={n_env}"),
            differs="the same episode count, spread differently"),
    ]


DERIVE: dict[str, Callable[[dict[str, Any]], list[Setting]]] = {
    "jaxmarl": jaxmarl, "navigation": benchmarl, "lbf": epymarl}


def table(rows: list[Setting], peer_name: str) -> str:
    """Every setting side by side; a difference the harness could not remove is marked DIFFERS."""
    w = max(len(r.name) for r in rows)
    cols = [max(len(str(getattr(r, c))) for r in rows + [Setting("", peer_name, "accord (matched work)")])
            for c in ("peer", "accord")]
    lines = [f"{'setting':<{w}}  {peer_name:<{cols[0]}}  {'accord (matched work)'}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        mark = f"  DIFFERS: {r.differs}" if r.differs else ""
        lines.append(f"{r.name:<{w}}  {str(r.peer):<{cols[0]}}  {str(r.accord):<{cols[1]}}{mark}".rstrip())
    return "\n".join(lines)
