"""Agent definitions: each algorithm's hyperparameters per env id, read from ``agents/<algo>.yaml``.

The files hold RL Baselines3 Zoo's values as plain YAML: nothing in them is evaluated as code (the zoo
writes ``policy_kwargs: "dict(...)"`` and ``learning_rate: lin_7e-4`` and evals them; we do not).
One entry per env id::

    CartPole-v1:
      n_timesteps: 100000        # required, the zoo's training budget
      n_envs: 8                  # required
      normalize: false           # VecNormalize: false, true, or a mapping of its keyword arguments
      policy_kwargs: {net_arch: {pi: [64, 64], vf: [64, 64]}, activation_fn: tanh, ortho_init: true}
      hyperparams: {n_steps: 32, learning_rate: {linear: 0.001}, clip_range: 0.2}

``normalize``, ``policy_kwargs`` and ``hyperparams`` may be left out (no VecNormalize, SB3's defaults).
Keys and value types are checked against the SB3 / sb3-contrib signatures they are passed to
(``VecNormalize``, the algorithm's ``MlpPolicy``, the algorithm's constructor), so an agents file can
only say what those accept, plus three spellings for what a YAML scalar cannot express:

- ``activation_fn: relu`` (a name from :data:`ACTIVATIONS`) becomes ``torch.nn.ReLU``; likewise
  ``optimizer_class: RMSprop`` (Adam, AdamW, RMSprop, SGD from ``torch.optim``) and
  ``features_extractor_class: MinAtarCNN`` (:data:`rlnorm.core.extractors.FEATURES_EXTRACTORS`);
- ``{linear: x}`` in a schedule argument (``learning_rate``, ``clip_range``...) becomes
  :class:`LinearSchedule` ``(x)``, SB3's linear schedule from ``x`` at the start of training to 0;
- ``action_noise: {type: normal|ornstein_uhlenbeck, sigma: s}`` becomes an :class:`ActionNoiseSpec`,
  which builds the noise once the action dimension is known (:meth:`AgentSpec.model_kwargs`).

Arguments the runner owns (``seed``, ``device``, ``verbose``, ``tensorboard_log``, the policy and env)
cannot be set in an agents file.
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from rlnorm.study.algorithms import ALGORITHMS
from rlnorm.study.checks import check_keys, did_you_mean, positive_int

if TYPE_CHECKING:
    from gymnasium import spaces
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.noise import ActionNoise

#: algo name -> ``module:class`` of its implementation, imported only when an agent is loaded.
#: activation name in an agents file -> class name in ``torch.nn``.
ACTIVATIONS: dict[str, str] = {
    "elu": "ELU",
    "gelu": "GELU",
    "leaky_relu": "LeakyReLU",
    "mish": "Mish",
    "relu": "ReLU",
    "selu": "SELU",
    "sigmoid": "Sigmoid",
    "silu": "SiLU",
    "softplus": "Softplus",
    "tanh": "Tanh",
}

NOISE_TYPES = ("normal", "ornstein_uhlenbeck")
ENTRY_KEYS = ("n_timesteps", "n_envs", "normalize", "policy_kwargs", "hyperparams")
_REQUIRED_KEYS = ("n_timesteps", "n_envs")

# An installed (non-editable) rlnorm has no repository around it, so this folder exists only in a checkout.
_REPO_AGENTS_DIR = Path(__file__).resolve().parents[2] / "agents"

# Constructor arguments the runner sets for every run, whatever the agent.
_RUNNER_OWNED = frozenset(
    "self policy env policy_kwargs seed device verbose tensorboard_log _init_setup_model".split()
)
# Policy arguments the algorithm passes itself: the same name in policy_kwargs is a TypeError inside SB3.
_SET_BY_ALGORITHM = frozenset({"self", "observation_space", "action_space", "lr_schedule", "use_sde"})
# VecNormalize arguments that belong to the env being wrapped (train or eval), not to the agent.
_SET_BY_ENV = frozenset({"self", "venv", "training"})

# Keys that are wrong where they are but have a right place: RL Zoo spellings pasted from its
# hyperparams/*.yml, runner-owned arguments, and entry keys nested one level too deep.
_KEY_HINTS = {
    **dict.fromkeys(
        ("noise_type", "noise_std"),
        "write action_noise: {type: normal|ornstein_uhlenbeck, sigma: <std>} under hyperparams",
    ),
    "policy": "the runner chooses the policy class",
    "env_wrapper": "env wrappers cannot be set in an agents file",
    "frame_stack": "frame stacking cannot be set in an agents file",
    "callback": "callbacks cannot be set in an agents file",
    **dict.fromkeys(("seed", "device", "verbose", "tensorboard_log"), "the runner sets it for each run"),
    **dict.fromkeys(ENTRY_KEYS, "it is a key of the entry itself"),
}


@dataclass(frozen=True)
class LinearSchedule:
    """SB3's linear schedule, RL Zoo's ``lin_<initial_value>``: ``initial_value`` at the start of
    training, decreasing linearly to 0 at the end. A class rather than SB3's usual lambda so that a
    resolved agent pickles (spawned workers) and prints readably (resolved configs).

    :param initial_value: value at ``progress_remaining = 1``
    """

    initial_value: float

    def __call__(self, progress_remaining: float) -> float:
        """
        :param progress_remaining: 1 at the start of training, 0 at the end
        :return: the scheduled value
        """
        return progress_remaining * self.initial_value


@dataclass(frozen=True)
class ActionNoiseSpec:
    """Exploration noise of an off-policy agent, built once the action dimension is known: mean 0 and
    standard deviation ``sigma`` on every action dimension, as RL Zoo builds it.

    :param kind: ``"normal"`` (``NormalActionNoise``) or ``"ornstein_uhlenbeck"``
        (``OrnsteinUhlenbeckActionNoise``)
    :param sigma: standard deviation of the noise on each action dimension
    """

    kind: str
    sigma: float

    def make(self, action_dim: int) -> ActionNoise:
        """
        :param action_dim: number of action dimensions
        :return: a new noise process (a fresh one per model: Ornstein-Uhlenbeck noise has state)
        """
        import numpy as np
        from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

        noise_class = NormalActionNoise if self.kind == "normal" else OrnsteinUhlenbeckActionNoise
        return noise_class(mean=np.zeros(action_dim), sigma=self.sigma * np.ones(action_dim))


@dataclass(frozen=True)
class AgentSpec:
    """One algorithm's resolved hyperparameters for one env id.

    :param algo: algorithm name, a key of :data:`ALGORITHMS`
    :param env_id: Gymnasium env id
    :param n_timesteps: the zoo's training budget
    :param n_envs: number of parallel envs
    :param normalize: ``False`` for no ``VecNormalize``, ``True`` for its defaults, or its keyword
        arguments
    :param policy_kwargs: ``policy_kwargs`` for the algorithm, ``activation_fn`` resolved to its
        ``torch.nn`` class
    :param algo_kwargs: keyword arguments for the algorithm's constructor, schedules resolved to
        :class:`LinearSchedule`; action noise is not among them (see ``action_noise``)
    :param action_noise: exploration noise to build for the env's action space, if any
    """

    algo: str
    env_id: str
    n_timesteps: int
    n_envs: int
    normalize: bool | dict[str, Any]
    policy_kwargs: dict[str, Any]
    algo_kwargs: dict[str, Any]
    action_noise: ActionNoiseSpec | None = None

    @property
    def algo_class(self) -> type[BaseAlgorithm]:
        """The SB3 / sb3-contrib algorithm class."""
        return _algo_class(self.algo)

    def model_kwargs(self, action_space: spaces.Space) -> dict[str, Any]:
        """Everything the algorithm's constructor takes besides the policy and the env:
        ``spec.algo_class(policy, env, **spec.model_kwargs(env.action_space))``.

        The result is a new copy on each call, with a new action-noise process, so that models built
        from one spec share no mutable state.

        :param action_space: the env's action space (needed for the action noise's dimension)
        :return: ``algo_kwargs`` plus ``policy_kwargs`` and, if the agent has one, ``action_noise``
        """
        kwargs = copy.deepcopy(self.algo_kwargs)
        kwargs["policy_kwargs"] = copy.deepcopy(self.policy_kwargs)
        if self.action_noise is not None:
            from gymnasium import spaces

            if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
                raise ValueError(
                    f"{self.algo} {self.env_id}: action noise needs a 1-D Box action space, "
                    f"not {action_space}"
                )
            kwargs["action_noise"] = self.action_noise.make(action_space.shape[0])
        return kwargs


def load_agent(algo: str, env_id: str, agents_dir: Path | None = None) -> AgentSpec:
    """Read and resolve the hyperparameters of ``algo`` for ``env_id`` from ``<agents_dir>/<algo>.yaml``.

    :param algo: algorithm name, a key of :data:`ALGORITHMS`
    :param env_id: Gymnasium env id, a key of the algorithm's agents file
    :param agents_dir: folder of the agents files; by default the repository's ``agents/``
    :return: the resolved agent
    :raises ValueError: unknown algo or env id, malformed YAML, an unknown key or a value of the wrong type
        (one line naming the bad value and what is allowed)
    :raises FileNotFoundError: no agents folder or no file for ``algo`` in it
    """
    _check_algo(algo)
    path = _agents_file(algo, _resolve_agents_dir(agents_dir))
    entries = _read_entries(path)
    if env_id not in entries:
        raise ValueError(
            f"{path.name} has no entry for env {env_id!r}{did_you_mean(str(env_id), entries)}; "
            f"it has: {', '.join(entries)}"
        )
    return _resolve_entry(algo, env_id, entries[env_id], where=f"{path.name} {env_id}")


def available_agents(agents_dir: Path | None = None) -> dict[str, list[str]]:
    """The env ids that each algorithm has an agents file entry for.

    :param agents_dir: folder of the agents files; by default the repository's ``agents/``
    :return: algo -> env ids, in file order, for every algorithm of :data:`ALGORITHMS` with a file
    :raises ValueError: malformed YAML in a file
    :raises FileNotFoundError: no agents folder
    """
    directory = _resolve_agents_dir(agents_dir)
    return {
        algo: list(_read_entries(directory / f"{algo}.yaml"))
        for algo in ALGORITHMS
        if (directory / f"{algo}.yaml").is_file()
    }


def _resolve_agents_dir(agents_dir: Path | None) -> Path:
    if agents_dir is not None:
        if not Path(agents_dir).is_dir():
            raise FileNotFoundError(f"agents_dir {str(agents_dir)!r} is not a directory")
        return Path(agents_dir)
    # Checking for files, not only the folder, keeps an unrelated site-packages/agents from being taken.
    if not any(_REPO_AGENTS_DIR.glob("*.yaml")):
        raise FileNotFoundError(
            f"no agents files at {_REPO_AGENTS_DIR}: rlnorm is not running from its repository "
            "(an installed package has no agents/ folder); pass agents_dir=<path to rlnorm's agents/ folder>"
        )
    return _REPO_AGENTS_DIR


def _check_algo(algo: str) -> None:
    if algo not in ALGORITHMS:
        raise ValueError(
            f"unknown algo {algo!r}{did_you_mean(str(algo).lower(), ALGORITHMS)}; "
            f"allowed: {', '.join(ALGORITHMS)}"
        )


def _agents_file(algo: str, directory: Path) -> Path:
    path = directory / f"{algo}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no agents file for {algo}: {path} does not exist")
    return path


def _read_entries(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise ValueError(f"{path}: expected a mapping from env id to entry, got {type(data).__name__}")
    return data


def _algo_class(algo: str) -> type[BaseAlgorithm]:
    return ALGORITHMS[algo].model_class()


def _resolve_entry(algo: str, env_id: str, entry: Any, where: str) -> AgentSpec:
    if not isinstance(entry, dict):
        raise ValueError(
            f"{where}: the entry is {entry!r}; allowed: a mapping with keys {', '.join(ENTRY_KEYS)}"
        )
    check_keys(entry, ENTRY_KEYS, where, hints=_KEY_HINTS)
    missing = [key for key in _REQUIRED_KEYS if key not in entry]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)} (required: {', '.join(_REQUIRED_KEYS)})")
    algo_class = _algo_class(algo)
    algo_kwargs, action_noise = _resolve_hyperparams(entry.get("hyperparams", {}), algo_class, where)
    return AgentSpec(
        algo=algo,
        env_id=env_id,
        n_timesteps=positive_int(entry["n_timesteps"], f"{where}: n_timesteps"),
        n_envs=positive_int(entry["n_envs"], f"{where}: n_envs"),
        normalize=_resolve_normalize(entry.get("normalize", False), where),
        policy_kwargs=_resolve_policy_kwargs(entry.get("policy_kwargs", {}), algo_class, where),
        algo_kwargs=algo_kwargs,
        action_noise=action_noise,
    )


def _resolve_normalize(value: Any, where: str) -> bool | dict[str, Any]:
    if isinstance(value, bool):
        return value
    if not isinstance(value, dict):
        raise ValueError(
            f"{where}: normalize = {value!r} has the wrong type; allowed: true, false or a mapping of "
            "VecNormalize arguments (a YAML mapping, not RL Zoo's Python string)"
        )
    from stable_baselines3.common.vec_env import VecNormalize

    parameters = _parameters(VecNormalize.__init__, _SET_BY_ENV)
    check_keys(value, parameters, f"{where}: normalize", hints=_KEY_HINTS)
    for key, item in value.items():
        _check_type(item, parameters[key].annotation, f"{where}: normalize.{key}")
    # An empty mapping means VecNormalize with its defaults; True says so without being falsy.
    return dict(value) or True


def _resolve_policy_kwargs(value: Any, algo_class: type[BaseAlgorithm], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(
            f"{where}: policy_kwargs = {value!r} has the wrong type; allowed: a YAML mapping such as "
            "{net_arch: [64, 64], activation_fn: relu} (not RL Zoo's Python string)"
        )
    policy_class = algo_class.policy_aliases["MlpPolicy"]
    parameters = _parameters(policy_class.__init__, _SET_BY_ALGORITHM)
    check_keys(value, parameters, f"{where}: policy_kwargs", hints=_KEY_HINTS)
    resolved = {}
    for key, item in value.items():
        name = f"{where}: policy_kwargs.{key}"
        if key == "activation_fn":
            resolved[key] = _activation(item, name)
        elif key in _NAMED_CLASSES:
            resolved[key] = _named_class(item, name, _NAMED_CLASSES[key]())
        else:
            resolved[key] = _check_type(item, parameters[key].annotation, name)
    return resolved


def _optimizers() -> dict[str, type]:
    from torch import optim

    return {name: getattr(optim, name) for name in ("Adam", "AdamW", "RMSprop", "SGD")}


def _features_extractors() -> dict[str, type]:
    from rlnorm.core.extractors import FEATURES_EXTRACTORS

    return FEATURES_EXTRACTORS


#: policy_kwargs given as a class name -> the classes an agents file may name (imported when needed).
_NAMED_CLASSES: dict[str, Callable[[], dict[str, type]]] = {
    "optimizer_class": _optimizers,
    "features_extractor_class": _features_extractors,
}


def _named_class(value: Any, name: str, classes: dict[str, type]) -> type:
    if not isinstance(value, str) or value not in classes:
        raise ValueError(f"{name} = {value!r} is not one of {', '.join(classes)}{did_you_mean(str(value), classes)}")
    return classes[value]


def _activation(value: Any, name: str) -> type:
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise ValueError(
            f"{name} = {value!r} is not a known activation{did_you_mean(str(value).lower(), ACTIVATIONS)}; "
            f"allowed: {', '.join(ACTIVATIONS)}"
        )
    from torch import nn

    return getattr(nn, ACTIVATIONS[value])


def _resolve_hyperparams(
    value: Any, algo_class: type[BaseAlgorithm], where: str
) -> tuple[dict[str, Any], ActionNoiseSpec | None]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: hyperparams = {value!r} has the wrong type; allowed: a mapping")
    parameters = _parameters(algo_class.__init__, _RUNNER_OWNED)
    check_keys(value, parameters, f"{where}: hyperparams", hints=_KEY_HINTS)
    resolved = {}
    action_noise = None
    for key, item in value.items():
        name = f"{where}: hyperparams.{key}"
        annotation = parameters[key].annotation
        if key == "action_noise":
            action_noise = _action_noise(item, name)
        elif isinstance(item, dict) and _takes_schedule(annotation):
            resolved[key] = _schedule(item, name)
        else:
            resolved[key] = _check_type(item, annotation, name)
    return resolved, action_noise


def _takes_schedule(annotation: Any) -> bool:
    return any(typing.get_origin(arg) is Callable for arg in _union_args(annotation))


def _schedule(value: dict[str, Any], name: str) -> LinearSchedule:
    initial = value.get("linear")
    if set(value) != {"linear"} or isinstance(initial, bool) or not isinstance(initial, (int, float)):
        raise ValueError(f"{name} = {value!r} is not a schedule; allowed: a number or {{linear: <number>}}")
    return LinearSchedule(float(initial))


def _action_noise(value: Any, name: str) -> ActionNoiseSpec:
    allowed = f"allowed: {{type: {'|'.join(NOISE_TYPES)}, sigma: <positive number>}}"
    if not isinstance(value, dict) or set(value) != {"type", "sigma"}:
        raise ValueError(f"{name} = {value!r}; {allowed}")
    kind, sigma = value["type"], value["sigma"]
    if kind not in NOISE_TYPES:
        raise ValueError(f"{name}.type = {kind!r}{did_you_mean(str(kind), NOISE_TYPES)}; {allowed}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0:
        raise ValueError(f"{name}.sigma = {sigma!r}; {allowed}")
    return ActionNoiseSpec(kind, float(sigma))


def _parameters(function: Callable, excluded: frozenset[str]) -> dict[str, inspect.Parameter]:
    return {
        name: parameter
        for name, parameter in inspect.signature(function).parameters.items()
        if name not in excluded and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }


def _union_args(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _check_type(value: Any, annotation: Any, name: str) -> Any:
    """Check a YAML value against a signature's annotation; a YAML list becomes a tuple where the
    annotation wants one (``train_freq: [1, "episode"]``), since SB3 tells the two apart."""
    matches = [arg for arg in _union_args(annotation) if _conforms(value, arg)]
    if not matches:
        allowed = " or ".join(dict.fromkeys(filter(None, map(_describe, _union_args(annotation)))))
        hint = " (RL Zoo's lin_<x> is written {linear: <x>})" if str(value).startswith("lin_") else ""
        raise ValueError(
            f"{name} = {value!r} has the wrong type{hint}; "
            f"allowed: {allowed or 'nothing an agents file can express'}"
        )
    if isinstance(value, list) and typing.get_origin(matches[0]) is tuple:
        return tuple(value)
    return value


def _conforms(value: Any, annotation: Any) -> bool:
    """Whether a plain YAML value fits an annotation. Classes, callables and other objects that YAML
    cannot spell never match."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_conforms(item, args[0]) for item in value)
    if origin is tuple:
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(args)
            and all(_conforms(item, arg) for item, arg in zip(value, args, strict=True))
        )
    if origin is dict:
        return isinstance(value, dict) and all(
            _conforms(key, args[0]) and _conforms(item, args[1]) for key, item in value.items()
        )
    return False


def _describe(annotation: Any) -> str | None:
    """How an annotation is written in YAML, for error messages; None if YAML cannot spell it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if annotation in names:
        return names[annotation]
    if origin is Callable:
        return "{linear: <number>}"
    if origin is list:
        return f"[{_describe(args[0])}, ...]"
    if origin is tuple:
        return "[" + ", ".join(str(_describe(arg)) for arg in args) + "]"
    if origin is dict:
        return "a mapping"
    return None
