"""One validated config schema: defaults live here and nowhere else.

A run's config is YAML (see ``configs/``) plus ``a.b=c`` overrides from the command line. Every
problem (unknown key, wrong type, incompatible choices) is found before any work starts and
reported together, one line each, with the closest valid key suggested for typos.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from accord.errors import ConfigError

SCHEMA_VERSION = 1


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, values are validated on assignment."""

    # allow_inf_nan=False: an infinite or NaN number (lr=.inf, .nan) is refused for every float key.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class CommConfig(Section):
    """Learned messages between agents (accord.comm): a gate, a symbol and a target per agent per step."""

    enabled: bool = Field(False, description="Add a message channel to the task (it must support messages: "
                          "discrete actions and a vector observation, see `accord tasks`).")
    size: int = Field(2, ge=1, le=8, description="Bits per message: a message is one of 2**size symbols.")
    mode: Literal["broadcast", "targeted"] = Field(
        "broadcast", description="broadcast: every other agent receives the message; targeted: the sender "
        "also picks one receiver (TarMAC-style, as a choice of the action).")
    budget: int | None = Field(None, ge=0, description="Messages (or bytes, see unit) each agent may send per "
                               "episode; null: unlimited.")
    unit: Literal["messages", "bytes"] = Field("messages", description="What the budget counts; a message "
                                                "costs ceil(size / 8) bytes per receiver.")
    over_budget: Literal["drop", "penalty"] = Field(
        "drop", description="A message over the budget is dropped (not delivered), or delivered with "
        "`penalty` taken from the team reward and the sender's reward.")
    penalty: float = Field(0.1, ge=0, description="Reward taken per message over the budget (over_budget=penalty).")


class CostBudgetConfig(Section):
    """Per-agent budgets on what the task reports in ``info`` (accord.cost, docs/cost.md)."""

    tool_calls: float | None = Field(None, ge=0, description="Tool calls each agent may make per episode "
                                     "(info['tool_calls']); null: unlimited.")
    tool_cost: float | None = Field(None, ge=0, description="Tool cost each agent may spend per episode "
                                    "(info['tool_cost']); null: unlimited.")
    over: Literal["cap", "penalty"] = Field(
        "penalty", description="cap: an agent that has spent a budget plays the no-op (action 0, or zeros) "
        "until its episode ends; penalty: `penalty` x the amount over the budget is taken from the team "
        "reward and the agent's own.")
    penalty: float = Field(0.1, ge=0, description="Reward taken per unit over a budget (over=penalty).")


class CostConfig(Section):
    budget: CostBudgetConfig = Field(default_factory=CostBudgetConfig)
class StreamRate(Section):
    every: int = Field(1, ge=1, description="Steps between arrivals.")
    jitter: int = Field(0, ge=0, description="Each arrival is up to this many steps later (uniform).")


class TaskConfig(Section):
    name: str = Field("spread", description="Task from `accord tasks`, 'pettingzoo' for any ParallelEnv, or "
                      "'package.module:Name' for your own: a ParallelEnv class or factory, a module with "
                      "parallel_env(), or a vectorized class Cls(num_envs, device, **params) "
                      "(docs/bring-your-own-env.md).")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the task. Per-env "
                                   "(PettingZoo) tasks also take team_reward: sum | mean (the team reward is "
                                   "the sum or the mean of the agents' rewards, default sum) and "
                                   "episode_limit: steps before truncation (default: the env's max_cycles).")
    num_envs: int = Field(64, ge=1, description="Envs stepped together (B).")
    guard: bool = Field(True, description="Validate every env output (shapes, dtypes, NaN).")
    comm: CommConfig = Field(default_factory=CommConfig, description="Message channel between agents "
                             "(docs/communication.md); part of the task, so every consumer builds the same env.")
    cost: CostConfig = Field(default_factory=CostConfig, description="Budgets on tool calls and their cost "
                             "per agent per episode (docs/cost.md); message budgets are under comm.")
    streams: dict[str, StreamRate] = Field(default_factory=dict, description="Modality -> {every, jitter}: "
                                           "the modality arrives every `every` steps, each arrival up to "
                                           "`jitter` steps late; unlisted ones every step (docs/multimodal.md).")
    align: Literal["age_mask", "hold"] = Field("age_mask", description="With streams: hold the last value "
                                               "and tell the policy its age and availability (age_mask), or "
                                               "only hold it (hold, the naive baseline).")
    latency_ms: float = Field(0.0, ge=0, description="Simulated wall time of one env step, like an external "
                              "simulator or API call: a process steps its envs one after another, so a "
                              "step of B envs sleeps B times (accord.envs.latency).")
    jitter_ms: float = Field(0.0, ge=0, description="Each simulated step takes latency_ms +- up to this "
                             "much (uniform); at most latency_ms.")


class ModelConfig(Section):
    hidden: int = Field(64, ge=1, description="Width of hidden layers.")
    layers: int = Field(2, ge=1, description="Hidden layers in each MLP.")
    recurrent: bool = Field(False, description="Add a GRU after the MLP (memory over the episode).")
    share_params: bool = Field(True, description="One network for all agents (with agent id) or one each.")
    agent_id: bool = Field(True, description="Append a one-hot agent id to inputs.")
    activation: Literal["relu", "tanh"] = "relu"
    input_norm: bool = Field(True, description="LayerNorm on network inputs (Yu et al. 2022).")
    encoders: dict[str, str] = Field(default_factory=dict, description="Observation modality -> "
                                     "'package.module:Class' replacing its built-in encoder: an nn.Module "
                                     "built as Class(shape) (the per-agent shape of that modality) with an "
                                     "int attribute out_dim, mapping [..., *shape] to [..., out_dim].")
    fusion: Literal["concat", "attention"] = Field("concat", description="How modality features meet: "
                                                   "concatenated, or pooled by learned attention weights.")
    drop_modalities: list[str] = Field(default_factory=list, description="Modalities whose input is zeroed "
                                       "(an ablation: same network, no information), e.g. [text].")
    critic_layers: int | None = Field(None, ge=1, description="Hidden layers of the PPO critic's MLP; null: "
                                      "`layers`.")
    critic_recurrent: bool | None = Field(None, description="A GRU in the PPO critic; null: as `recurrent`. "
                                          "EPyMARL's MAPPO pairs a recurrent actor with a feed-forward critic.")

    def for_critic(self) -> ModelConfig:
        """These settings with the PPO critic's own depth and recurrence."""
        recurrent = self.recurrent if self.critic_recurrent is None else self.critic_recurrent
        return self.model_copy(update={"layers": self.critic_layers or self.layers, "recurrent": recurrent})


class PPOConfig(Section):
    critic: Literal["auto", "centralized", "local"] = Field(
        "auto", description="Critic input: global state + agent id (MAPPO) or own observation (IPPO); "
        "auto picks from the architecture.")
    rollout_len: int = Field(25, ge=1, description="Steps collected per env before each update (T).")
    epochs: int = Field(10, ge=1)
    minibatches: int = Field(1, ge=1, description="Minibatches per epoch: shuffled env "
                             "steps (feed-forward models) or whole env sequences (recurrent).")
    lr: float = Field(7e-4, gt=0, description="Actor learning rate (Adam, eps 1e-5).")
    critic_lr: float = Field(7e-4, gt=0)
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    nstep: int | None = Field(None, ge=1, description="Value targets: n-step returns, and advantages R - V(s) "
                              "against the critic as it trains, recomputed every epoch (EPyMARL's MAPPO: 5); "
                              "null: GAE(gae_lambda).")
    target_tau: float | None = Field(None, gt=0, le=1, description="Bootstrap values from a target critic, "
                                     "soft-updated at this rate after each update (EPyMARL's MAPPO: 0.01); "
                                     "null: from the critic itself.")
    clip: float = Field(0.2, gt=0, description="PPO ratio clip epsilon.")
    value_clip: bool = Field(True, description="Clip the value change by `clip` (delta clipping).")
    huber_delta: float | None = Field(10.0, gt=0, description="Huber loss on values; null for squared error.")
    value_norm: bool = Field(True, description="Normalize value targets with running statistics.")
    standardize_rewards: bool = Field(False, description="Standardize team and individual rewards with "
                                      "running statistics before credit assignment (EPyMARL's MAPPO does).")
    reward_stats: Literal["ema", "running"] = Field(
        "ema", description="Statistics of standardize_rewards: MAPPO's ValueNorm (debiased EMA, variance "
        "floor 1e-2) or running mean and variance merged by count, no floor (EPyMARL's RunningMeanStd).")
    normalize_advantages: bool = Field(True, description="Normalize advantages per batch over alive agents "
                                       "(MAPPO's code does; EPyMARL's does not).")
    entropy_coef: float = Field(0.01, ge=0)
    value_coef: float = Field(1.0, ge=0)
    max_grad_norm: float = Field(10.0, gt=0)
    log_std_init: float = Field(-0.5, description="Initial log std of Gaussian (continuous) policies.")
    vtrace_rho: float = Field(1.0, gt=0, description="async, ray: V-trace truncation rho-bar of the importance "
                              "ratio on each TD error (fixes which policy's value is learned).")
    vtrace_c: float = Field(1.0, gt=0, description="async, ray: V-trace truncation c-bar of the traces "
                            "(variance; on-policy both give GAE exactly).")


class QConfig(Section):
    """Off-policy value-based learners (IQL, VDN, QMIX, Qatten): defaults follow EPyMARL's qmix.yaml."""

    rollout_len: int = Field(25, ge=1, description="Steps collected per env before each round of updates.")
    updates: int = Field(1, ge=1, description="Gradient steps after each collection round.")
    buffer_episodes: int = Field(5000, ge=1, description="Replay capacity in whole episodes (oldest dropped).")
    batch_episodes: int = Field(32, ge=1, description="Episodes sampled per gradient step.")
    checkpoint_buffer: bool = Field(True, description="Save the replay buffer in checkpoints, so a resumed "
                                    "run keeps its data (its size is logged as buffer_mib).")
    lr: float = Field(5e-4, gt=0, description="Adam learning rate for agents and mixer.")
    gamma: float = Field(0.99, ge=0, le=1)
    td_lambda: float = Field(0.0, ge=0, le=1, description="Q(lambda) targets; 0 gives one-step targets.")
    double_q: bool = Field(True, description="Bootstrap action chosen by the online agents (van Hasselt 2016).")
    target_interval: int = Field(200, ge=1, description="Gradient steps between hard target-network copies.")
    target_tau: float | None = Field(None, gt=0, le=1, description="Soft target update rate per gradient "
                                     "step; null uses hard copies every target_interval steps.")
    epsilon_start: float = Field(1.0, ge=0, le=1)
    epsilon_finish: float = Field(0.05, ge=0, le=1)
    epsilon_anneal_steps: int = Field(50_000, ge=0, description="Env steps of the linear epsilon decay.")
    max_grad_norm: float = Field(10.0, gt=0)
    standardize_rewards: bool = Field(False, description="Standardize team rewards with running statistics.")
    mixing_embed: int = Field(32, ge=1, description="Mixer width (QMIX hidden layer, Qatten key/query size).")
    hypernet_embed: int = Field(64, ge=1, description="Hidden width of the mixers' hypernetworks.")
    attention_heads: int = Field(4, ge=1, description="Qatten attention heads.")
    attention_reg: float = Field(1e-3, ge=0, description="Qatten penalty on squared attention logits.")


class HierarchicalConfig(Section):
    """``architecture: hierarchical`` (accord/algos/hierarchical.py, docs/hierarchical.md)."""

    k: int = Field(8, ge=1, description="Most env steps a sub-goal holds: the manager picks again when the "
                   "worker reaches it, after k steps, and at every episode start.")
    intrinsic: float = Field(1.0, ge=0, description="Reward a worker gets for reaching its sub-goal, on top "
                             "of its credit method's (team) reward.")
    manager_entropy: float = Field(0.01, ge=0, description="Entropy bonus of the manager's policy over "
                                   "sub-goals (ppo.entropy_coef is the workers').")


class MonitorConfig(Section):
    """Contribution monitoring: who does the work, and is the reward being gamed (accord.eval)."""

    contribution_episodes: int = Field(128, ge=0, description="Evaluation episodes per coalition for the "
                                       "contribution report at the end of `accord train` (0: off).")
    replacement: Literal["noop", "random"] = Field(
        "noop", description="What stands in for an absent agent: the no-op action, or uniform random actions.")
    noop_action: int = Field(0, ge=0, description="The discrete action meaning 'do nothing' (0 in every "
                             "built-in task); absent agents with continuous actions play zeros.")
    deterministic: bool = Field(False, description="Greedy actions in contribution evaluation (default: "
                                "sample, as the policy acts in training).")
    shapley_permutations: int = Field(64, ge=2, description="Permutations sampled for Shapley values of "
                                      "teams above 6 agents (exact below).")
    lazy_tolerance: float = Field(0.05, ge=0, description="An agent is lazy when the team succeeds and the "
                                  "whole 95% CI of its contribution (its upper end) is below this fraction of "
                                  "the team's gain over the empty team.")
    success_threshold: float = Field(0.5, ge=0, le=1, description="Success rate from which the team counts "
                                     "as succeeding (tasks without info['success']: beating the empty team).")
    hacking_window: int = Field(8, ge=3, description="Log points over which a rising training return with "
                                "a falling success rate flags reward hacking.")
    hacking_min_drop: float = Field(0.1, gt=0, le=1, description="Fall of the success rate across the "
                                    "window that counts as falling.")


class CreditConfig(Section):
    name: str = Field("shared", description="Credit-assignment method from accord.credit.CREDIT "
                      "(shared, individual, ...); each names the algorithms and architectures it fits. "
                      "'package.module:Class' names a CreditModule (ppo) or Mixer (q) subclass.")
    individual_weight: float = Field(0.5, ge=0, le=1, description="mixed: weight w of the individual "
                                     "reward, r = (1 - w) r_team + w r_individual.")
    critic_lr: float = Field(1e-3, gt=0, description="counterfactual, attention: Q critic; shaped: "
                             "extrinsic critic; potential: learned potential (Adam).")
    critic_epochs: int = Field(8, ge=1, description="Full-batch gradient steps of the module's own "
                               "critic per update.")
    critic_hidden: int = Field(64, ge=1, description="Width of the module's own networks.")
    td_lambda: float = Field(0.8, ge=0, le=1, description="counterfactual, attention: lambda of the Q "
                             "critic's TD(lambda) targets (COMA).")
    attention_heads: int = Field(4, ge=1, description="attention: heads; must divide critic_hidden.")
    intrinsic_scale: float = Field(0.1, ge=0, description="shaped: lambda in r = r_team + lambda r_in, "
                                   "r_in in [-1, 1] (LIIR).")
    intrinsic_lr: float = Field(5e-4, gt=0, description="shaped: meta-gradient step size of the "
                                "intrinsic reward (Adam).")
    potential: str | None = Field(None, description="potential: 'package.module:function' mapping states "
                                  "[..., S] to potentials [...]; null learns Phi as the team's state value.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)


DECOUPLED = ("async", "ray")  # runner kinds whose actors act with lagged weights (accord.runners.decoupled)


class RunnerConfig(Section):
    kind: Literal["sync", "subproc", "async", "ray"] = Field(
        "sync", description="sync: envs in this process; subproc: PettingZoo envs in worker processes; "
        "async: actor processes with their own envs feed the learner through a queue (docs/scale.md); "
        "ray: the same actors as Ray actors, locally or on a cluster (pip install 'accord[ray]').")
    workers: int | None = Field(None, ge=1, description="Worker processes for subproc (default: cores); "
                                "actors for async and ray (default 2), each with task.num_envs / workers envs.")
    max_lag: int = Field(8, ge=0, description="async, ray: batches acted by weights more than this many learner "
                         "updates old are dropped (and counted); the rest are corrected with V-trace.")
    address: str | None = Field(None, description="ray: 'auto' or host:port of an existing cluster; null "
                                "starts Ray on this machine.")

    @property
    def actors(self) -> int:
        """async, ray: the number of actors (``workers``, default 2)."""
        return self.workers or 2
    # Fault handling (docs/robustness.md): in-process envs step in a watchdog thread when a timeout is set.
    step_timeout_s: float | None = Field(None, gt=0, description="Seconds an env step may take before it "
                                         "counts as hung (restart); null: subproc 60 s, in-process no limit.")
    max_restarts: int = Field(3, ge=0, description="Env restarts (hang, or an env that keeps raising) "
                              "before the run fails.")
    retries: int = Field(0, ge=0, description="Retries of an env call that raised, with exponential "
                         "backoff and jitter, before it counts as a fault (restart or quarantine).")
    backoff_s: float = Field(0.05, ge=0, description="First retry delay; doubles each retry, +-50% jitter.")
    quarantine_after: int = Field(3, ge=1, description="Per-env (PettingZoo) tasks: an env copy that fails "
                                  "this many times in a row is quarantined (masked out); the others go on.")


class TrainConfig(Section):
    total_env_steps: int = Field(500_000, ge=1, description="Env transitions (env x time step) to train.")
    log_interval: int = Field(20_000, ge=1, description="Env steps between metric log points.")
    checkpoint_interval_s: float = Field(60.0, gt=0, description="Seconds between checkpoints.")
    keep_checkpoints: int = Field(3, ge=1)
    device: str = "cpu"
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads (1 is fastest for small nets).")
    compile: Literal[False, True, "auto"] = Field(False, description="torch.compile the PPO update's minibatch loss: "
                                            "true, false, or auto (eager, with a warning, when compiling "
                                            "fails). Faster for some networks, slower for others: docs/speed.md.")
    max_nonfinite: int = Field(5, ge=0, description="Updates with a non-finite loss or weights are rolled "
                               "back (lr halved, counted); fail after this many in a row (0: no check).")


class LoggingConfig(Section):
    """Where metrics go besides ``metrics.jsonl`` (always written): TensorBoard and MLflow."""

    tensorboard: bool = Field(True, description="Mirror numeric metrics to TensorBoard event files (tb/).")
    mlflow: bool = Field(False, description="Also log params, metrics and checkpoints to MLflow "
                         "(needs pip install 'accord[mlflow]').")
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI (file:, http(s):, sqlite:, "
                                   "databricks, ...); null: a file store at <runs_dir>/mlruns.")
    mlflow_experiment: str | None = Field(None, description="MLflow experiment (default: the task name).")


class SuiteConfig(Section):
    """The robustness suite (accord.suite, ``accord suite``) run on new checkpoints during training."""

    every: int = Field(0, ge=0, description="Run the suite on every N-th checkpoint (0: off).")
    file: str = Field("default", description="'default' or a suite YAML file (docs/robustness.md).")
    episodes: int = Field(32, ge=2, description="Paired episodes per perturbation and severity.")


class Config(Section):
    schema_version: int = SCHEMA_VERSION
    name: str | None = Field(None, description="Run name (default: task__algorithm__seed__time).")
    seed: int = 0
    architecture: Literal["ctde", "decentralized", "hierarchical"] = "ctde"
    algorithm: str = Field("ppo", description="Learner from accord.algos.ALGORITHMS, or "
                           "'package.module:Class' with the same interface.")
    runs_dir: str = "runs"
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    q: QConfig = Field(default_factory=QConfig)
    credit: CreditConfig = Field(default_factory=CreditConfig)
    hierarchical: HierarchicalConfig = Field(default_factory=HierarchicalConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    suite: SuiteConfig = Field(default_factory=SuiteConfig)
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig())
    baseline: BaselineConfig = Field(default_factory=lambda: BaselineConfig())
    compare: CompareConfig = Field(default_factory=lambda: CompareConfig())
    drift: DriftConfig = Field(default_factory=lambda: DriftConfig())

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str | None) -> str | None:
        """A run name is a folder name: no empty names, separators or '..' (accord.store.run)."""
        from accord.store.run import name_problem

        problem = None if name is None else name_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @property
    def centralized_critic(self) -> bool:
        """MAPPO's critic (state + agent id) unless asked otherwise or decentralized."""
        if self.ppo.critic == "auto":
            return self.architecture != "decentralized"
        return self.ppo.critic == "centralized"

    def compatibility_problems(self) -> list[str]:
        """Cross-field rules; each problem is one line naming the keys and the allowed choices."""
        from accord.algos import resolve_algorithm
        from accord.credit import CREDIT
        from accord.credit.potential import load_potential
        from accord.envs.registry import task_problems
        from accord.models.encoders import load_encoder
        from accord.plugins import is_plugin
        from accord.store.mlflow_sink import mlflow_problems

        problems: list[str] = []

        def resolve(key: str, lookup: Callable[[str], Any], name: str) -> Any:
            try:
                return lookup(name)
            except ConfigError as e:
                problems.append(f"{key}: {e}")
                return None

        resolve("algorithm", resolve_algorithm, self.algorithm)
        for modality, encoder in self.model.encoders.items():
            resolve(f"model.encoders.{modality}", load_encoder, encoder)
        method = resolve("credit.name", CREDIT.resolve, self.credit.name)
        if method is not None:
            # A user learner decides itself which credit methods it uses.
            if not is_plugin(self.algorithm) and self.algorithm not in method.algorithms:
                fits = [n for n, m in CREDIT.items() if self.algorithm in m.algorithms]
                problems.append(f"credit.name: '{self.credit.name}' does not work with algorithm "
                                f"'{self.algorithm}'; allowed: {', '.join(fits)}")
            # Hierarchical workers are CTDE agents: the credit method works at the worker level.
            level = "ctde" if self.architecture == "hierarchical" else self.architecture
            if level not in method.architectures:
                problems.append(f"credit.name: '{self.credit.name}' needs architecture "
                                f"{' or '.join(method.architectures)}, not '{self.architecture}'")
            n_agents = self.task.params.get("n_agents")  # other tasks are checked when the env is built
            if isinstance(n_agents, int) and n_agents < method.min_agents:
                problems.append(f"credit.name: '{self.credit.name}' needs at least {method.min_agents} agents, "
                                f"but task.params.n_agents is {n_agents}")
        if self.credit.critic_hidden % self.credit.attention_heads:
            problems.append(f"credit.attention_heads: {self.credit.attention_heads} does not divide "
                            f"credit.critic_hidden ({self.credit.critic_hidden})")
        if self.credit.potential is not None:
            resolve("credit.potential", load_potential, self.credit.potential)
        if method is not None and "ppo" in method.algorithms and self.ppo.nstep is not None \
                and not method.fn.nstep_targets:
            fits = [n for n, m in CREDIT.items() if "ppo" in m.algorithms and m.fn.nstep_targets]
            problems.append(f"ppo.nstep: credit '{self.credit.name}' computes its own advantages; n-step "
                            f"returns need one of {', '.join(fits)}, or ppo.nstep=null (GAE)")
        if self.ppo.nstep is not None and self.runner.kind in DECOUPLED:
            problems.append(f"ppo.nstep: n-step returns do not correct for the lagged actors of runner "
                            f"'{self.runner.kind}' (V-trace does); use runner.kind=sync or ppo.nstep=null")
        if self.ppo.target_tau is not None and self.model.for_critic().recurrent:
            problems.append("ppo.target_tau: a target critic needs a feed-forward critic "
                            "(model.critic_recurrent=false)")
        if self.architecture == "hierarchical" and self.algorithm != "ppo":
            problems.append(f"architecture: 'hierarchical' composes PPO learners (manager and workers); "
                            f"algorithm '{self.algorithm}' is not allowed with it; allowed: ppo")
        if self.architecture == "decentralized" and self.ppo.critic == "centralized":
            problems.append("ppo.critic: 'centralized' needs architecture 'ctde' (decentralized agents "
                            "see only their own observation); allowed here: auto, local")
        if self.algorithm == "q" and self.q.batch_episodes > self.q.buffer_episodes:
            problems.append(f"q.batch_episodes: {self.q.batch_episodes} is more than the replay buffer holds "
                            f"(q.buffer_episodes={self.q.buffer_episodes})")
        problems += task_problems(self.task, self.runner.kind)
        if self.task.comm.enabled:
            from accord.comm import comm_problems

            problems += comm_problems(self.task)
        if self.task.jitter_ms > self.task.latency_ms:
            problems.append(f"task.jitter_ms: {self.task.jitter_ms} is more than task.latency_ms "
                            f"({self.task.latency_ms}); a step cannot take negative time")
        if self.runner.kind in DECOUPLED:
            from accord.runners.decoupled import decoupled_problems

            problems += decoupled_problems(self, method)
        from accord.memory import device_problem

        device = device_problem(self.train.device)
        if device:
            problems.append(f"train.device: {device}")
        problems += mlflow_problems(self.logging.mlflow, self.logging.mlflow_uri)
        return problems


class EvalConfig(Section):
    """The evaluation protocol during training (accord.eval.protocol), stored in ``evals.jsonl``."""

    interval: int = Field(100_000, ge=0, description="Env steps between evaluations of the current policy, "
                          "greedy and sampled, and once more at the end (0, or a run shorter than this: off).")
    episodes: int = Field(32, ge=1, description="Episodes per evaluation, on fixed eval seeds.")
    seed: int = Field(1_000_003, description="Eval seed base; kept apart from training seeds (seed + env "
                      "index), so evaluation never replays training episodes.")
    final_factor: int = Field(10, ge=1, description="The absolute metric at the end: the best checkpoint "
                              "re-evaluated on this many times `episodes`.")
    num_envs: int = Field(64, ge=1, description="Envs stepped together while evaluating.")


class BaselineConfig(Section):
    """A stored baseline (`accord baseline set`) the run is checked against live (accord.eval.baseline)."""

    name: str | None = Field(None, description="Baseline to check this run against during training.")
    tolerance: float = Field(0.03, ge=0, description="Fraction of the baseline's |value| a run may fall "
                             "below the baseline's band before an alert.")
    hook: str | None = Field(None, description="Shell command run on an alert (alert JSON on stdin, "
                             "ACCORD_ALERT_FILE set); e.g. a curl to a webhook.")


class CompareConfig(Section):
    """A/B verdicts (`accord compare`, accord.eval.compare)."""

    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the verdict.")
    margin: float = Field(0.0, ge=0, description="Non-inferiority margin as a fraction of |A|'s mean "
                          "(0: no non-inferiority verdict).")
    seeds: int = Field(5, ge=2, description="Seeds per side when `accord compare` trains two configs.")
    power: float = Field(0.8, gt=0, lt=1, description="Power for the seeds-needed estimate.")


# -- loading -------------------------------------------------------------------------------------

def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _known_keys(ann, prefix + name + ".")
    return keys


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        match = difflib.get_close_matches(key, _known_keys(Config), n=1, cutoff=0.6)
        hint = f" (did you mean '{match[0]}'?)" if match else ""
        return f"{key}: unknown key{hint}"
    allowed = err.get("ctx", {}).get("expected")
    if allowed:
        return f"{key}: got {err['input']!r}; allowed: {allowed}"
    return f"{key}: {err['msg'].lower()} (got {err['input']!r})"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], c) with c parsed as YAML (so numbers, bools and lists work)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw  # a blank value stays a (blank) string
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    from accord.safe_yaml import load_file  # size, encoding, depth and alias caps (hostile files)

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    data = load_file(p) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _without(data: dict[str, Any], locs: list[tuple[Any, ...]]) -> dict[str, Any]:
    """A copy of ``data`` without the values at ``locs`` (so defaults stand in for them)."""
    out = copy.deepcopy(data)
    for loc in locs:
        node: Any = out
        for part in loc[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(loc[-1], None)
    return out


def build_config(data: dict[str, Any]) -> Config:
    """Validate a plain dict; raise one ConfigError listing every problem.

    Schema errors do not hide cross-field ones: the cross-field rules also run on the config with
    the invalid values left at their defaults (skipping rules about the keys already reported).
    """
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        problems = [_describe(err) for err in errors]
        bad = {".".join(str(p) for p in err["loc"]) for err in errors}
        try:
            rest = Config.model_validate(_without(data, [err["loc"] for err in errors]))
        except ValidationError:
            rest = None  # e.g. a section that is not a mapping: nothing more to check
        if rest is not None:
            problems += [p for p in rest.compatibility_problems() if p.split(":")[0] not in bad]
        raise ConfigError("invalid config: " + "; ".join(problems)) from None
    problems = cfg.compatibility_problems()
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file (or defaults when None) + overrides -> validated Config."""
    data = read_yaml(path) if path is not None else {}
    return build_config(apply_overrides(data, list(overrides or [])))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


class DriftConfig(Section):
    """Credit drift over training (accord.eval.drift): contribution tracked at log points."""

    interval: int = Field(0, ge=0, description="Log points between contribution measurements during "
                          "training (0: off); stored in contribution.jsonl.")
    episodes: int = Field(32, ge=2, description="Episodes per coalition for each measurement.")
    threshold: float = Field(0.5, gt=0, description="Drift alert when an agent's correlation of contribution "
                             "with success (or, without success, its share of the team's Shapley value) moves "
                             "this far from its first measurement.")
