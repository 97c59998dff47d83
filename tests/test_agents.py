"""Agent definitions (agents/<algo>.yaml) and their loader (rlnorm.study.agents)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml
from gymnasium import spaces

from rlnorm.core.envs import make_env
from rlnorm.study import agents
from rlnorm.study.agents import ActionNoiseSpec, LinearSchedule, available_agents, load_agent
from rlnorm.study.algorithms import ALGORITHMS
from rlnorm.study.config import load_study

AGENTS_DIR = Path(__file__).resolve().parent.parent / "agents"
MUJOCO_ENVS = {"HalfCheetah-v5", "Hopper-v5"}

ENTRIES = sorted((algo, env_id) for algo, env_ids in available_agents().items() for env_id in env_ids)


def _raw(algo: str) -> dict[str, Any]:
    return yaml.safe_load((AGENTS_DIR / f"{algo}.yaml").read_text())


def _linear_schedules() -> list[tuple[str, str, str, float]]:
    return [
        (algo, env_id, key, value["linear"])
        for algo, env_id in ENTRIES
        for key, value in _raw(algo)[env_id].get("hyperparams", {}).items()
        if isinstance(value, dict) and "linear" in value
    ]


def _skip_without_simulator(env_id: str) -> None:
    if env_id in MUJOCO_ENVS:
        pytest.importorskip("mujoco")
    if env_id.startswith("LunarLander"):
        pytest.importorskip("Box2D")
    if env_id.startswith("MinAtar/"):
        pytest.importorskip("minatar")


def test_every_algorithm_has_an_agents_file_with_the_reference_study_tasks() -> None:
    assert set(available_agents()) == set(ALGORITHMS)
    study = load_study("configs/claim.yaml")
    assert {(task.algo, task.env_id) for task in study.tasks} <= set(ENTRIES)


@pytest.mark.parametrize(("algo", "env_id"), ENTRIES)
def test_entry_loads(algo: str, env_id: str) -> None:
    spec = load_agent(algo, env_id)
    assert (spec.algo, spec.env_id) == (algo, env_id)
    # The budget is the file's, as an integer (the zoo writes 1e6 and 1_000_000 alike).
    assert spec.n_timesteps == int(float(_raw(algo)[env_id]["n_timesteps"])) > 0
    assert spec.n_envs >= 1
    assert isinstance(spec.normalize, bool) or spec.normalize
    assert all(isinstance(value, type) for key, value in spec.policy_kwargs.items() if key == "activation_fn")


# The zoo's PPO MountainCarContinuous-v0 has batch_size 256 > n_steps * n_envs = 8, which SB3 warns about.
@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")
@pytest.mark.parametrize(("algo", "env_id"), ENTRIES)
def test_entry_builds_the_real_algorithm(
    algo: str, env_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _skip_without_simulator(env_id)
    # MuJoCo writes its warnings to MUJOCO_LOG.TXT in the working directory, which is the checkout.
    monkeypatch.chdir(tmp_path)
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    spec = load_agent(algo, env_id)
    venv = make_vec_env(make_env, n_envs=spec.n_envs, seed=0, env_kwargs={"env_id": env_id})
    if spec.normalize:
        venv = VecNormalize(venv, **(spec.normalize if isinstance(spec.normalize, dict) else {}))
    model = spec.algo_class("MlpPolicy", venv, device="cpu", **spec.model_kwargs(venv.action_space))

    assert model.n_envs == spec.n_envs
    # SB3 keeps most scalars as attributes of the same name. Not compared: schedules it wraps (clip_range
    # becomes a FloatSchedule), train_freq (a TrainFreq) and A2C's use_rms_prop (spent on the optimizer).
    for key, value in spec.algo_kwargs.items():
        attribute = getattr(model, key, None)
        if isinstance(value, (int, float)) and attribute is not None and key != "train_freq":
            assert callable(attribute) or attribute == value, key
    if isinstance(spec.algo_kwargs.get("learning_rate"), LinearSchedule):
        initial = spec.algo_kwargs["learning_rate"].initial_value
        assert model.lr_schedule(1.0) == pytest.approx(initial)
        assert model.lr_schedule(0.5) == pytest.approx(initial / 2)
    if "activation_fn" in spec.policy_kwargs:
        assert any(isinstance(module, spec.policy_kwargs["activation_fn"]) for module in model.policy.modules())
    if isinstance(spec.normalize, dict) and "gamma" in spec.normalize:
        assert model.get_vec_normalize_env().gamma == spec.normalize["gamma"]
    if spec.action_noise is not None:
        assert model.action_noise().shape == venv.action_space.shape
    venv.close()


@pytest.mark.parametrize(("algo", "env_id", "key", "initial"), _linear_schedules())
def test_linear_schedule_gives_the_zoo_value_then_decays(algo: str, env_id: str, key: str, initial: float) -> None:
    schedule = load_agent(algo, env_id).algo_kwargs[key]
    assert schedule(1.0) == initial
    assert schedule(0.5) == pytest.approx(initial / 2)
    assert schedule(0.0) == 0.0


def test_known_schedules_are_resolved() -> None:
    kwargs = load_agent("ppo", "CartPole-v1").algo_kwargs
    assert kwargs["learning_rate"] == LinearSchedule(0.001)
    assert kwargs["clip_range"](0.5) == pytest.approx(0.1)


def test_action_noise_is_built_fresh_for_the_action_dimension() -> None:
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    box = spaces.Box(-1.0, 1.0, shape=(3,))
    spec = load_agent("td3", "Pendulum-v1")
    assert spec.action_noise == ActionNoiseSpec("normal", 0.1)
    first, second = spec.model_kwargs(box)["action_noise"], spec.model_kwargs(box)["action_noise"]
    assert isinstance(first, NormalActionNoise) and first is not second
    assert first().shape == (3,)
    ou_noise = load_agent("td3", "MountainCarContinuous-v0").model_kwargs(box)["action_noise"]
    assert isinstance(ou_noise, OrnsteinUhlenbeckActionNoise)
    with pytest.raises(ValueError, match="1-D Box"):
        spec.model_kwargs(spaces.Discrete(2))


def test_model_kwargs_are_copies() -> None:
    spec = load_agent("ppo", "HalfCheetah-v5")
    kwargs = spec.model_kwargs(spaces.Box(-1.0, 1.0, shape=(6,)))
    kwargs["policy_kwargs"]["net_arch"]["pi"].append(7)
    kwargs["gamma"] = 0.5
    assert spec.policy_kwargs["net_arch"]["pi"] == [256, 256]
    assert spec.algo_kwargs["gamma"] == 0.98


def test_spec_pickles_for_spawned_workers() -> None:
    spec = load_agent("ppo", "HalfCheetah-v5")
    assert pickle.loads(pickle.dumps(spec)) == spec


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_files_are_plain_yaml_with_a_source_header(algo: str) -> None:
    text = (AGENTS_DIR / f"{algo}.yaml").read_text()
    header = text.split("\n\n")[0]
    assert header.startswith("#") and "DLR-RM/rl-baselines3-zoo" in header and "n_timesteps" in text

    def strings(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [s for item in value.values() for s in strings(item)]
        if isinstance(value, list):
            return [s for item in value for s in strings(item)]
        return [value] if isinstance(value, str) else []

    # RL Zoo's evaluated spellings: "dict(...)", "nn.ReLU", "lin_0.001".
    assert not [s for s in strings(_raw(algo)) if "(" in s or "nn." in s or s.startswith("lin_")]


def test_unknown_algo_is_named_with_a_suggestion() -> None:
    allowed = "ppo, a2c, dqn, sac, td3, crossq"
    with pytest.raises(ValueError, match=rf"unknown algo 'ppo2' \(did you mean 'ppo'\?\); allowed: {allowed}"):
        load_agent("ppo2", "CartPole-v1")


def test_unknown_env_lists_the_entries_and_suggests_one() -> None:
    with pytest.raises(ValueError, match=r"'LunarLander-v2' \(did you mean 'LunarLander-v3'\?\); it has: Cart"):
        load_agent("ppo", "LunarLander-v2")
    with pytest.raises(ValueError, match=r"dqn.yaml has no entry for env 'Pendulum-v1'; it has: CartPole-v1"):
        load_agent("dqn", "Pendulum-v1")


def _write(directory: Path, entry: Any, algo: str = "td3", env_id: str = "Pendulum-v1") -> Path:
    (directory / f"{algo}.yaml").write_text(yaml.safe_dump({env_id: entry}))
    return directory


BASE = {"n_timesteps": 1000, "n_envs": 1}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**BASE, "n_step": 3}, "unknown key 'n_step' (did you mean 'n_timesteps'?); allowed: n_timesteps, n_envs"),
        ({"n_timesteps": 1000}, "missing n_envs (required: n_timesteps, n_envs)"),
        ({**BASE, "n_timesteps": 0}, "n_timesteps: 0 is not a positive integer"),
        ({**BASE, "n_envs": 1.5}, "n_envs: 1.5 is not a positive integer"),
        ({**BASE, "n_timesteps": True}, "n_timesteps: True is not a positive integer"),
        ({**BASE, "hyperparams": {"learning_rat": 0.1}}, "unknown key 'learning_rat' (did you mean 'learning_rate'?)"),
        ({**BASE, "hyperparams": {"noise_type": "normal"}}, "unknown key 'noise_type' (write action_noise:"),
        ({**BASE, "hyperparams": {"seed": 1}}, "unknown key 'seed' (the runner sets it for each run)"),
        ({**BASE, "hyperparams": {"n_steps": "32"}}, "hyperparams.n_steps = '32' has the wrong type; allowed: an int"),
        ({**BASE, "hyperparams": {"learning_rate": "lin_0.001"}}, "= 'lin_0.001' has the wrong type (RL Zoo's lin_"),
        ({**BASE, "hyperparams": {"learning_rate": {"lin": 1}}}, "learning_rate = {'lin': 1} is not a schedule"),
        ({**BASE, "hyperparams": {"train_freq": [1, 2]}}, "train_freq = [1, 2] has the wrong type; allowed: an int"),
        (
            {**BASE, "hyperparams": {"action_noise": {"type": "ornstein-uhlenbeck", "sigma": 0.5}}},
            "action_noise.type = 'ornstein-uhlenbeck' (did you mean 'ornstein_uhlenbeck'?)",
        ),
        ({**BASE, "hyperparams": {"action_noise": {"type": "normal", "sigma": 0}}}, "action_noise.sigma = 0;"),
        ({**BASE, "policy_kwargs": "dict(net_arch=[64, 64])"}, "policy_kwargs = 'dict(net_arch=[64, 64])' has the"),
        ({**BASE, "policy_kwargs": {"activation_fn": "Relu"}}, "activation_fn = 'Relu' is not a known activation"),
        ({**BASE, "policy_kwargs": {"activation_fn": ["relu"]}}, "activation_fn = ['relu'] is not a known"),
        ({**BASE, "policy_kwargs": {"net_arch": [64, "64"]}}, "net_arch = [64, '64'] has the wrong type"),
        ({**BASE, "policy_kwargs": {"use_sde": True}}, "policy_kwargs: unknown key 'use_sde'"),
        ({**BASE, "normalize": "yes"}, "normalize = 'yes' has the wrong type; allowed: true, false or a mapping"),
        ({**BASE, "normalize": {"clip_ob": 5}}, "unknown key 'clip_ob' (did you mean 'clip_obs'?)"),
        ({**BASE, "normalize": {"gamma": "high"}}, "normalize.gamma = 'high' has the wrong type; allowed: a number"),
        ([1, 2], "the entry is [1, 2]; allowed: a mapping"),
    ],
)
def test_bad_entry_raises_one_line_naming_the_value(tmp_path: Path, entry: Any, message: str) -> None:
    with pytest.raises(ValueError) as error:
        load_agent("td3", "Pendulum-v1", agents_dir=_write(tmp_path, entry))
    assert message in str(error.value)
    assert str(error.value).startswith("td3.yaml Pendulum-v1: ")
    assert "\n" not in str(error.value)


def test_good_custom_entry_resolves(tmp_path: Path) -> None:
    entry = {
        **BASE,
        "normalize": {},
        "policy_kwargs": {"activation_fn": "tanh", "net_arch": [8]},
        "hyperparams": {"train_freq": [1, "episode"], "learning_rate": {"linear": 3}},
    }
    from torch import nn

    spec = load_agent("td3", "Pendulum-v1", agents_dir=_write(tmp_path, entry))
    assert spec.normalize is True
    assert spec.policy_kwargs == {"activation_fn": nn.Tanh, "net_arch": [8]}
    assert spec.algo_kwargs == {"train_freq": (1, "episode"), "learning_rate": LinearSchedule(3.0)}


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ppo.yaml").write_text("CartPole-v1:\n  n_timesteps: [1\n")
    with pytest.raises(ValueError, match=r"ppo.yaml: malformed YAML at line \d+: "):
        load_agent("ppo", "CartPole-v1", agents_dir=tmp_path)


def test_missing_agents_folder_says_to_pass_agents_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An installed package sits in site-packages, with no repository and so no agents/ beside it.
    monkeypatch.setattr(agents, "_REPO_AGENTS_DIR", tmp_path / "site-packages" / "agents")
    with pytest.raises(FileNotFoundError, match="pass agents_dir="):
        load_agent("ppo", "CartPole-v1")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        available_agents(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no agents file for sac"):
        load_agent("sac", "Pendulum-v1", agents_dir=_write(tmp_path, BASE))
