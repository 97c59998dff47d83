"""Study configs: read a YAML file, check every value, and expand it into one :class:`RunSpec` per run.

A study config is a YAML mapping with these keys (this list is the reference; ``configs/smoke.yaml`` is a small
example)::

    name: quick                  # study name (default: the file name without .yaml)
    out: results/quick           # output directory, relative to the working directory
                                 #   (default: results/<name>; `rlnorm study --out` overrides it)
    algos:                       # algorithm (ppo, a2c, dqn, sac, td3, crossq) -> the envs to run it
      ppo: [CartPole-v1]         #   on; each pair is a task and needs an entry in agents/<algo>.yaml.
      dqn:                       #   A task can override seeds, budget, eval, probe and norms (given
        CartPole-v1:             #   as a mapping of env id -> overrides, or null for none). crossq
        Acrobot-v1: {seeds: 3, eval: {every: 5000}}        #   runs as published (its own Batch
      crossq:                    #   Renorm critic): its only variant is norm none
        Pendulum-v1: {norms: [{crossq: {norm: none}}]}
    norms:                       # the variants compared; a bare name is the norm of that name,
      - none                     #   a one-key mapping names a variant: norm (default: the variant's
      - bn                       #   name), norm_kwargs (the norm's options; `rlnorm norms` lists the
      - bn-critic: {norm: bn, norm_in: critic}               #   norms) and norm_in (both, actor
      - bn-slow: {norm: bn, norm_kwargs: {momentum: 0.01}}   #   or critic; DQN: both only) and
      - bn-frozen: {norm: bn, norm_mode: frozen}             #   norm_mode (sb3, consistent, frozen,
                                 #   fixed: for bn, mobn, wn+mobn, brn; see rlnorm.core.policies)
    seeds: 5                     # a count n (seeds 0..n-1) or a list of seeds, e.g. [0, 7, 42]
    budget: {scale: 1.0}         # training steps per run: {timesteps: 50000}, or {scale: s} for s times
                                 #   the agent's zoo budget (n_timesteps in agents/<algo>.yaml)
    eval:                        # evaluation on a separate env, separately seeded, policy in eval mode
      every: 10000               #   environment steps between evaluations (plus one before training
                                 #   and one at the end)
      episodes: 10               #   episodes per evaluation
      deterministic: true        #   deterministic actions (false samples them from the training
                                 #   random streams: still reproducible, but training then depends
                                 #   on the evaluation schedule)
    probe:                       # the minibatch-noise probe (rlnorm.core.probe) and the drift of the running
      enabled: true              #   statistics, every `every` environment steps (PPO/A2C: at the end of a
      every: 10000               #   rollout, before its update; off-policy: once updates have begun), on
      states: 16                 #   training-sized minibatches of the states training draws from; states:
      draws: 8                   #   probe states, draws: minibatches per state (probe.csv, statistics.csv)
    tensorboard: false           # also write TensorBoard logs (needs the tensorboard package)
    executor: local              # local (a process pool) or ray; `rlnorm study --executor` overrides it
    workers: 2                   # runs at the same time (default: local, the number of cores; ray, the
                                 #   cluster's CPUs); `rlnorm study --workers` overrides it
    claims: [...]                # what `rlnorm report` tests (default: claims.DEFAULT_CLAIMS), and
    scores: {...}                #   how it normalizes returns: see rlnorm.analysis.claims

Every key except algos, norms, seeds and budget is optional. A run is identified by
``<algo>/<env>/<variant>/seed-<seed>``, which is also its directory under ``out``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

from rlnorm.analysis.claims import parse_claims, parse_scores
from rlnorm.core.envs import known_env, make_env
from rlnorm.core.norms import available_norms, validate_norm
from rlnorm.core.policies import validate_norm_mode
from rlnorm.study.agents import available_agents, load_agent
from rlnorm.study.algorithms import ALGORITHMS, NORM_IN
from rlnorm.study.checks import ConfigError, check_keys, check_unique, did_you_mean, integer, positive_int, string
from rlnorm.study.executors import EXECUTORS
from rlnorm.study.records import PROBE_DRAWS, PROBE_STATES, env_directory

# A variant name becomes a directory name.
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")

STUDY_KEYS = (
    "name",
    "out",
    "algos",
    "norms",
    "seeds",
    "budget",
    "eval",
    "probe",
    "tensorboard",
    "executor",
    "workers",
    "claims",
    "scores",
)
REQUIRED_KEYS = ("algos", "norms", "seeds", "budget")
TASK_KEYS = ("seeds", "budget", "eval", "probe", "norms")
BUDGET_KEYS = ("timesteps", "scale")


@dataclass(frozen=True)
class NormVariant:
    """One of the compared norm settings.

    :param name: the variant's name, used in run ids
    :param norm: a registered norm name
    :param norm_kwargs: that norm's options
    :param norm_in: the networks that get the norm: ``both``, ``actor`` or ``critic``
    :param norm_mode: ``sb3``, ``consistent``, ``frozen`` or ``fixed`` (batch-statistics norms only)
    """

    name: str
    norm: str
    norm_kwargs: dict[str, Any] = field(default_factory=dict)
    norm_in: str = "both"
    norm_mode: str = "sb3"


@dataclass(frozen=True)
class ProbeSettings:
    """The minibatch-noise probe, run during training on its own schedule (docs/method.md#the-noise-probe).

    :param enabled: whether to probe
    :param every: least environment steps between two probes (PPO/A2C probe when a rollout is complete,
        off-policy agents once updates have begun)
    :param states: probe states per network
    :param draws: minibatches drawn per probe state
    """

    enabled: bool = True
    every: int = 10_000
    states: int = PROBE_STATES
    draws: int = PROBE_DRAWS


@dataclass(frozen=True)
class EvalSettings:
    """How a run is evaluated.

    :param every: environment steps between evaluations
    :param episodes: episodes per evaluation
    :param deterministic: whether actions are deterministic
    """

    every: int = 10_000
    episodes: int = 10
    deterministic: bool = True


# The keys a config may give for these settings are the dataclasses' own fields (a variant's name is its key).
VARIANT_KEYS = tuple(f.name for f in dataclasses.fields(NormVariant) if f.name != "name")
PROBE_KEYS = tuple(f.name for f in dataclasses.fields(ProbeSettings))
EVAL_KEYS = tuple(f.name for f in dataclasses.fields(EvalSettings))


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run; the agent's hyperparameters come from ``agents/<algo>.yaml``.

    :param algo: algorithm name (a key of :data:`ALGORITHMS`)
    :param env_id: gymnasium environment id
    :param variant: the norm setting
    :param seed: seed of training (the evaluation env is seeded from it, see :mod:`rlnorm.study.run`)
    :param timesteps: training budget in environment steps
    :param eval: evaluation settings
    :param tensorboard: whether to write TensorBoard logs
    :param probe: the minibatch-noise probe settings
    """

    algo: str
    env_id: str
    variant: NormVariant
    seed: int
    timesteps: int
    eval: EvalSettings
    tensorboard: bool = False
    probe: ProbeSettings = field(default_factory=ProbeSettings)

    @property
    def run_id(self) -> str:
        """:return: ``<algo>/<env>/<variant>/seed-<seed>``, the run's directory under the study's output (an env
        id's "/" is a "-" there: ``dqn/MinAtar-Breakout-v1/...``)"""
        return f"{self.algo}/{env_directory(self.env_id)}/{self.variant.name}/seed-{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """:return: the spec as plain data (for JSON)"""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Task:
    """An algorithm on an environment, with the seeds, budget and evaluation of its runs.

    :param algo: algorithm name
    :param env_id: environment id
    :param seeds: training seeds
    :param timesteps: training budget of each run, in environment steps
    :param eval: evaluation settings
    :param probe: the probe settings
    :param variants: the norm variants run on this task
    """

    algo: str
    env_id: str
    seeds: list[int]
    timesteps: int
    eval: EvalSettings
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    variants: list[NormVariant] = field(default_factory=list)


@dataclass(frozen=True)
class StudyConfig:
    """A checked study config (the module docstring says what each setting means).

    :param name: study name
    :param out: output directory
    :param tasks: the (algorithm, environment) pairs
    :param variants: every variant of the study, in order (each task runs its own list of them)
    :param tensorboard: whether runs write TensorBoard logs
    :param executor: ``local`` or ``ray``
    :param workers: runs at the same time (None: the executor's default)
    :param source: the config file it was read from ("" when given as data)
    :param claims: the claims the report tests, as declared (checked by :func:`rlnorm.analysis.claims.parse_claims`);
        None: the default set
    :param scores: how the report normalizes returns, as declared (:func:`rlnorm.analysis.claims.parse_scores`)
    """

    name: str
    out: Path
    tasks: list[Task]
    variants: list[NormVariant]
    tensorboard: bool = False
    executor: str = "local"
    workers: int | None = None
    source: str = ""
    claims: list[dict[str, Any]] | None = None
    scores: dict[str, Any] = field(default_factory=dict)

    def runs(self) -> list[RunSpec]:
        """Expand the grid seed by seed (the i-th seed of every task, then the next), so that an interrupted
        study has compared every variant on its first seeds.

        :return: one spec per run
        """
        return [
            RunSpec(task.algo, task.env_id, variant, task.seeds[i], task.timesteps, task.eval, self.tensorboard,
                    task.probe)
            for i in range(max(len(task.seeds) for task in self.tasks))
            for task in self.tasks
            if i < len(task.seeds)
            for variant in task.variants
        ]


def load_study(path: str | Path, out: str | Path | None = None) -> StudyConfig:
    """Read and check a study config file.

    :param path: the YAML file
    :param out: output directory replacing the config's ``out``
    :return: the checked config
    :raises ConfigError: on any unusable value, naming it
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if out is not None:
        if not isinstance(raw, dict):
            raw = {}
        raw = {**raw, "out": str(out)}
    return parse_study(raw, default_name=path.stem, source=str(path))


def parse_study(raw: Any, default_name: str, source: str) -> StudyConfig:
    """Check a study config given as plain data (as YAML loads it).

    :param raw: the config mapping
    :param default_name: study name if the config has none
    :param source: where the config comes from (kept in the config), to prefix error messages
    :return: the checked config
    :raises ConfigError: on any unusable value, naming it
    """
    try:
        return dataclasses.replace(_parse_study(raw, default_name), source=source)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}" if source else str(error)) from None


def _parse_study(raw: Any, default_name: str) -> StudyConfig:
    check_keys(raw, STUDY_KEYS, "", required=REQUIRED_KEYS)
    name = string(raw.get("name", default_name), "name")
    executor = raw.get("executor", "local")
    if executor not in EXECUTORS:
        raise ConfigError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    workers = raw.get("workers")
    if workers is not None:
        workers = positive_int(workers, "workers")
    tensorboard = _boolean(raw.get("tensorboard", False), "tensorboard")
    if tensorboard:
        _check_tensorboard_installed()
    # Study-wide settings, which a task may override.
    seeds = _parse_seeds(raw["seeds"], "seeds")
    budget = _parse_budget(raw["budget"], "budget")
    evaluation = _parse_eval(raw.get("eval", {}), EvalSettings(), "eval")
    probe = _parse_probe(raw.get("probe", {}), ProbeSettings(), "probe")
    variants = _parse_variants(raw["norms"], "norms")
    tasks = _parse_tasks(raw["algos"], seeds, budget, evaluation, probe, variants)
    every_variant = {variant.name: variant for task in tasks for variant in task.variants}
    for name_, variant in every_variant.items():
        if any(other.name == name_ and other != variant for task in tasks for other in task.variants):
            raise ConfigError(f"norms: variant {name_!r} is defined differently in two places; give them two names")
    # The report tests the claims: a claim it could not test is a config error now, not a surprise then.
    run_variants = {f"{task.algo}/{task.env_id}": [variant.name for variant in task.variants] for task in tasks}
    claims = raw.get("claims")
    if claims is not None:
        parse_claims(claims, run_variants)
    parse_scores(raw.get("scores", {}), run_variants)
    return StudyConfig(
        name=name,
        out=Path(string(raw.get("out", f"results/{name}"), "out")),
        tasks=tasks,
        variants=list(every_variant.values()),
        tensorboard=tensorboard,
        executor=executor,
        workers=workers,
        claims=claims,
        scores=raw.get("scores", {}),
    )


def _parse_tasks(
    raw: Any,
    seeds: list[int],
    budget: tuple[int | None, float | None],
    evaluation: EvalSettings,
    probe: ProbeSettings,
    variants: list[NormVariant],
) -> list[Task]:
    agents = available_agents()
    check_keys(raw, list(ALGORITHMS), "algos", what="algorithm")
    if not raw:
        raise ConfigError(f"algos: no algorithm given; allowed: {', '.join(ALGORITHMS)}")
    tasks = []
    for algo, envs in raw.items():
        where = f"algos.{algo}"
        if isinstance(envs, list):
            check_unique(envs, where)
            envs = dict.fromkeys(envs)
        if not isinstance(envs, dict) or not envs:
            raise ConfigError(
                f"{where}: expected a list of environment ids, or a mapping of environment id to overrides of "
                f"{', '.join(TASK_KEYS)}; got {envs!r}"
            )
        for env_id, overrides in envs.items():
            _check_env(algo, env_id, agents.get(algo, []))
            tasks.append(_parse_task(algo, env_id, overrides or {}, seeds, budget, evaluation, probe, variants))
    return tasks


def _parse_task(
    algo: str,
    env_id: str,
    overrides: Any,
    seeds: list[int],
    budget: tuple[int | None, float | None],
    evaluation: EvalSettings,
    probe: ProbeSettings,
    variants: list[NormVariant],
) -> Task:
    where = f"algos.{algo}.{env_id}"
    check_keys(overrides, TASK_KEYS, where)
    if "seeds" in overrides:
        seeds = _parse_seeds(overrides["seeds"], f"{where}.seeds")
    if "budget" in overrides:
        budget = _parse_budget(overrides["budget"], f"{where}.budget")
    timesteps, scale = budget
    if timesteps is None:
        timesteps = max(1, round(scale * load_agent(algo, env_id).n_timesteps))
    evaluation = _parse_eval(overrides.get("eval", {}), evaluation, f"{where}.eval")
    probe = _parse_probe(overrides.get("probe", {}), probe, f"{where}.probe")
    if "norms" in overrides:
        variants = _parse_variants(overrides["norms"], f"{where}.norms")
    _check_variants_fit(algo, variants, f"{where}.norms" if "norms" in overrides else "norms")
    _check_doses_fit(algo, env_id, variants, f"{where}.norms" if "norms" in overrides else "norms")
    return Task(algo, env_id, seeds, timesteps, evaluation, probe, variants)


def _check_env(algo: str, env_id: Any, tuned_env_ids: list[str]) -> None:
    where = f"algos.{algo}"
    try:
        known = isinstance(env_id, str) and known_env(env_id)
    except ImportError as error:  # a MinAtar id without the minatar extra
        raise ConfigError(f"{where}: {error}") from None
    if not known:
        raise ConfigError(f"{where}: unknown environment {env_id!r}{did_you_mean(env_id, list(gym.registry))}")
    try:
        env = make_env(env_id)
    except Exception as error:  # e.g. a MuJoCo env without `pip install rlnorm[mujoco]`
        raise ConfigError(f"{where}: cannot make {env_id}: {error}".replace("\n", " ")) from None
    action_space = env.action_space
    env.close()
    supported = ALGORITHMS[algo].action_spaces
    if type(action_space).__name__ not in supported:
        kinds = " or ".join(supported)
        raise ConfigError(
            f"{where}: {algo} cannot act in {env_id}, whose action space is {action_space}; {algo} needs {kinds}"
        )
    if env_id not in tuned_env_ids:
        raise ConfigError(
            f"{where}: agents/{algo}.yaml has no hyperparameters for {env_id}; "
            f"it has: {', '.join(tuned_env_ids) or 'none'}"
        )


def _parse_variants(raw: Any, where: str) -> list[NormVariant]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f"{where}: expected a non-empty list of norms or variants; norms: {', '.join(available_norms())}"
        )
    variants = [_parse_variant(item, f"{where}[{i}]") for i, item in enumerate(raw)]
    check_unique([variant.name for variant in variants], where)
    return variants


def _check_variants_fit(algo: str, variants: list[NormVariant], where: str) -> None:
    for variant in variants:
        if variant.norm_in not in ALGORITHMS[algo].norm_in:
            raise ConfigError(
                f"{where}: variant {variant.name!r} has norm_in {variant.norm_in!r}, which {algo} "
                f"does not allow; allowed: {', '.join(ALGORITHMS[algo].norm_in)}"
            )
        if algo == "a2c" and variant.norm_mode == "consistent":
            raise ConfigError(
                f"{where}: variant {variant.name!r} has norm_mode 'consistent', which makes PPO's ratio compare "
                "train-mode outputs; a2c forms no ratio: use sb3, frozen or fixed"
            )
        if ALGORITHMS[algo].policy is None and (variant.norm != "none" or variant.norm_mode != "sb3"):
            raise ConfigError(
                f"{where}: {algo} runs as published, with its own normalization; its only variant is "
                f"norm none (e.g. `- {algo}: {{norm: none}}`), not {variant.name!r}"
            )


def smallest_training_batch(algo: str, env_id: str) -> int:
    """:return: the fewest samples a train-mode batch of the agent holds: PPO's minibatch, or the smaller last
    one of a rollout that the minibatch size does not divide; A2C's whole rollout; off-policy, the batch size"""
    agent = load_agent(algo, env_id)
    defaults = {name: parameter.default for name, parameter in inspect.signature(agent.algo_class).parameters.items()}
    hyperparameters = {**defaults, **agent.algo_kwargs}
    if algo not in ("ppo", "a2c"):
        return hyperparameters["batch_size"]
    rollout = hyperparameters["n_steps"] * agent.n_envs
    if algo == "a2c":
        return rollout
    return min(hyperparameters["batch_size"], rollout % hyperparameters["batch_size"] or rollout)


def _check_doses_fit(algo: str, env_id: str, variants: list[NormVariant], where: str) -> None:
    """Ghost batches need at least 2 samples each, and an injected dose d the scatter of a batch of at least 2
    (n / d >= 2: its variance draw has n / d - 1 degrees of freedom)."""
    dosed = [variant for variant in variants
             if variant.norm_kwargs.get("ghost_batches", 1) > 1 or variant.norm_kwargs.get("injected_noise", 0)]
    if not dosed:
        return
    batch = smallest_training_batch(algo, env_id)
    for variant in dosed:
        ghost_batches = variant.norm_kwargs.get("ghost_batches", 1)
        injected = variant.norm_kwargs.get("injected_noise", 0)
        if batch // ghost_batches < 2:
            raise ConfigError(
                f"{where}: variant {variant.name!r} splits batches into ghost_batches={ghost_batches}, but "
                f"{algo} on {env_id} trains on batches of {batch} samples: a ghost batch needs at least 2; "
                f"allowed: ghost_batches <= {batch // 2}"
            )
        if injected and batch / injected < 2:
            raise ConfigError(
                f"{where}: variant {variant.name!r} sets injected_noise={injected}, the scatter of the statistics of "
                f"batches of {batch}/{injected} samples, but {algo} on {env_id} trains on batches of {batch}: that is "
                f"fewer than 2; allowed: injected_noise <= {batch / 2:g}"
            )


def _parse_variant(item: Any, where: str) -> NormVariant:
    if isinstance(item, str):
        name, settings = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        name, settings = next(iter(item.items()))
        settings = {} if settings is None else settings
        check_keys(settings, VARIANT_KEYS, f"{where} ({name})")
    else:
        raise ConfigError(
            f"{where}: expected a norm name or a one-key mapping name: {{norm: ..., norm_kwargs: "
            f"..., norm_in: ...}}, got {item!r}"
        )
    if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
        raise ConfigError(f"{where}: variant name {name!r} must be letters, digits and _ . + - (it names a directory)")
    norm = settings.get("norm", name)
    if norm not in available_norms():
        raise ConfigError(
            f"{where}: unknown norm {norm!r}{did_you_mean(norm, available_norms())}; "
            f"norms: {', '.join(available_norms())}"
        )
    norm_kwargs = settings.get("norm_kwargs") or {}
    if not isinstance(norm_kwargs, dict):
        raise ConfigError(f"{where}: norm_kwargs must be a mapping of the norm's options, got {norm_kwargs!r}")
    try:
        validate_norm(norm, norm_kwargs)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    norm_in = settings.get("norm_in", "both")
    if norm_in not in NORM_IN:
        raise ConfigError(f"{where}: norm_in {norm_in!r} is not one of {', '.join(NORM_IN)}")
    norm_mode = settings.get("norm_mode", "sb3")
    try:
        validate_norm_mode(norm, norm_mode, norm_kwargs)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None
    return NormVariant(name, norm, dict(norm_kwargs), norm_in, norm_mode)


def _parse_seeds(raw: Any, where: str) -> list[int]:
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{where}: the list is empty; give a count (seeds 0..n-1) or a list of seeds")
        seeds = [_non_negative_int(seed, where) for seed in raw]
        check_unique(seeds, where)
        return seeds
    count = integer(raw, where, "a positive count or a list of seeds")
    if count < 1:
        raise ConfigError(f"{where}: {count} means no runs; give a positive count (seeds 0..n-1) or a list of seeds")
    return list(range(count))


def _parse_budget(raw: Any, where: str) -> tuple[int | None, float | None]:
    check_keys(raw, BUDGET_KEYS, where)
    if len(raw) != 1:
        raise ConfigError(
            f"{where}: give exactly one of timesteps (steps per run) or scale (times the agent's zoo budget)"
        )
    if "timesteps" in raw:
        return positive_int(raw["timesteps"], f"{where}.timesteps"), None
    scale = raw["scale"]
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ConfigError(f"{where}.scale: {scale!r} is not a positive number (times the agent's zoo budget)")
    return None, float(scale)


def _parse_eval(raw: Any, defaults: EvalSettings, where: str) -> EvalSettings:
    check_keys(raw, EVAL_KEYS, where)
    return EvalSettings(
        every=positive_int(raw.get("every", defaults.every), f"{where}.every"),
        episodes=positive_int(raw.get("episodes", defaults.episodes), f"{where}.episodes"),
        deterministic=_boolean(raw.get("deterministic", defaults.deterministic), f"{where}.deterministic"),
    )


def _parse_probe(raw: Any, defaults: ProbeSettings, where: str) -> ProbeSettings:
    check_keys(raw, PROBE_KEYS, where)
    draws = positive_int(raw.get("draws", defaults.draws), f"{where}.draws")
    if draws < 2:
        raise ConfigError(f"{where}.draws: {draws} minibatch cannot show a spread; give at least 2")
    return ProbeSettings(
        enabled=_boolean(raw.get("enabled", defaults.enabled), f"{where}.enabled"),
        every=positive_int(raw.get("every", defaults.every), f"{where}.every"),
        states=positive_int(raw.get("states", defaults.states), f"{where}.states"),
        draws=draws,
    )


def _check_tensorboard_installed() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError("tensorboard: true needs the tensorboard package (pip install tensorboard)") from None


def _non_negative_int(value: Any, where: str) -> int:
    number = integer(value, where, "a non-negative integer")
    if number < 0:
        raise ConfigError(f"{where}: {number} is not a non-negative integer")
    return number


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not true or false")
    return value


def single_run(
    algo: str,
    env_id: str,
    norm: str,
    seed: int,
    timesteps: int | None = None,
    norm_in: str = "both",
    eval_settings: EvalSettings | None = None,
    tensorboard: bool = False,
    norm_mode: str = "sb3",
) -> RunSpec:
    """Check the settings of one run (``rlnorm train``) as a study of one run would.

    :param algo: algorithm name
    :param env_id: environment id
    :param norm: norm name, also the variant name
    :param seed: training seed
    :param timesteps: budget (default: the agent's zoo budget)
    :param norm_in: the networks that get the norm
    :param eval_settings: evaluation settings (default: :class:`EvalSettings`'s)
    :param tensorboard: whether to write TensorBoard logs
    :param norm_mode: ``sb3``, ``consistent``, ``frozen`` or ``fixed``
    :return: the run's spec
    :raises ConfigError: on any unusable value, naming it
    """
    raw = {
        "algos": {algo: [env_id]},
        "norms": [{norm: {"norm_in": norm_in, "norm_mode": norm_mode}}],
        "seeds": [seed],
        "budget": {"scale": 1.0} if timesteps is None else {"timesteps": timesteps},
        "eval": dataclasses.asdict(eval_settings or EvalSettings()),
        "tensorboard": tensorboard,
    }
    try:
        return parse_study(raw, default_name="train", source="").runs()[0]
    except ConfigError as error:
        # Name the command-line flag rather than the key of the config this was translated into.
        message = str(error)
        where, _, what = message.partition(": ")
        flag = "--env" if where.startswith("algos.") else _TRAIN_FLAGS.get(where)
        if where == "norms[0]" and what.startswith(("norm_mode", "norm_in")):
            flag = "--" + what.split()[0].replace("_", "-")
        if where.startswith("norms") and " has norm_in " in what:
            flag = "--norm-in"
        raise ConfigError(f"{flag}: {what}" if flag else message) from None


_TRAIN_FLAGS = {
    "norms[0]": "--norm",
    "seeds": "--seed",
    "budget.timesteps": "--timesteps",
    "eval.every": "--eval-every",
    "eval.episodes": "--eval-episodes",
}
