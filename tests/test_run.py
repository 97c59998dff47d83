"""One run: its files, its determinism, and its failures recorded instead of raised."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy

from rlnorm.study import callbacks, run
from rlnorm.study.config import EvalSettings, single_run
from rlnorm.study.run import EVAL_SEED_OFFSET, run_one

EVAL = EvalSettings(every=256, episodes=2)


def ppo_spec(seed: int = 0, norm: str = "bn", eval_settings: EvalSettings = EVAL):
    return single_run("ppo", "CartPole-v1", norm, seed, timesteps=768, eval_settings=eval_settings)


def evaluations(run_dir):
    with np.load(run_dir / "evaluations.npz") as data:
        return {key: data[key] for key in data.files}


def training_episodes(run_dir):
    with open(run_dir / "monitor.csv") as file:
        next(file)  # the Monitor's JSON header line
        return [(row["r"], row["l"]) for row in csv.DictReader(file)]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    return run_one(ppo_spec(), run_dir), run_dir


def test_a_run_writes_every_file(finished_run):
    result, run_dir = finished_run
    assert result.ok and result.run_id == "ppo/CartPole-v1/bn/seed-0"
    for name in ["config.json", "monitor.csv", "progress.csv", "evaluations.csv", "evaluations.npz", "model.zip"]:
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "failed.json").exists()
    done = json.loads((run_dir / "done.json").read_text())
    assert done["wall_time_s"] > 0 and done["timesteps"] >= 768
    assert {"python", "torch", "stable_baselines3", "gymnasium", "rlnorm"} <= set(done["versions"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"] == ppo_spec().to_dict()
    assert config["eval_seed"] == EVAL_SEED_OFFSET
    assert config["agent"]["n_envs"] == 8
    with open(run_dir / "progress.csv") as file:
        header = next(csv.reader(file))
    assert {"train/mode_mismatch", "eval/mean_reward", "train/value_loss"} <= set(header)


def test_evaluations_before_every_n_steps_and_at_the_end(finished_run):
    _, run_dir = finished_run
    data = evaluations(run_dir)
    # PPO CartPole collects 8 envs x 32 steps per rollout: evaluations at 0, 256, 512 and the final 768.
    assert data["timesteps"].tolist() == [0, 256, 512, 768]
    assert data["results"].shape == data["ep_lengths"].shape == (4, EVAL.episodes)
    with open(run_dir / "evaluations.csv") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["return"]) for row in rows] == data["results"].ravel().tolist()
    assert [int(row["timesteps"]) for row in rows] == np.repeat(data["timesteps"], EVAL.episodes).tolist()


def test_same_run_twice_gives_identical_results(finished_run, tmp_path):
    _, first_dir = finished_run
    assert run_one(ppo_spec(), tmp_path).ok
    first, second = evaluations(first_dir), evaluations(tmp_path)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert training_episodes(first_dir) == training_episodes(tmp_path)


def test_the_seed_changes_training_and_evaluation(finished_run, tmp_path):
    _, first_dir = finished_run
    assert run_one(ppo_spec(seed=1), tmp_path).ok
    assert training_episodes(first_dir) != training_episodes(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["eval_seed"] == 1 + EVAL_SEED_OFFSET


def test_evaluating_does_not_change_training(finished_run, tmp_path):
    _, first_dir = finished_run
    rarely = EvalSettings(every=10_000, episodes=5)
    assert run_one(ppo_spec(eval_settings=rarely), tmp_path).ok
    assert training_episodes(first_dir) == training_episodes(tmp_path)
    assert evaluations(tmp_path)["timesteps"].tolist() == [0, 768]


def test_an_exception_is_recorded_as_failed(tmp_path, monkeypatch):
    def broken_agent(algo, env_id):
        raise RuntimeError("agents file unreadable\nsecond line")

    monkeypatch.setattr(run, "load_agent", broken_agent)
    result = run_one(ppo_spec(), tmp_path)
    assert not result.ok and result.reason == "RuntimeError: agents file unreadable"
    failed = json.loads((tmp_path / "failed.json").read_text())
    assert failed["reason"] == result.reason
    assert "Traceback" in failed["traceback"] and failed["versions"]
    assert not (tmp_path / "done.json").exists()


def test_nan_in_the_networks_is_recorded_as_failed(tmp_path, monkeypatch):
    build_model = run.build_model

    def poisoned_model(*args, **kwargs):
        model = build_model(*args, **kwargs)
        with torch.no_grad():
            next(model.policy.parameters()).fill_(float("nan"))
        return model

    monkeypatch.setattr(run, "build_model", poisoned_model)
    result = run_one(ppo_spec(), tmp_path)
    assert not result.ok
    assert result.reason.startswith("NonFiniteError: NaN or inf in ") and "at step 0" in result.reason
    assert (tmp_path / "failed.json").exists() and not (tmp_path / "done.json").exists()


def test_off_policy_run_with_action_noise(tmp_path):
    spec = single_run("td3", "Pendulum-v1", "ln", 0, timesteps=300, eval_settings=EvalSettings(every=150, episodes=1))
    assert run_one(spec, tmp_path).ok
    assert evaluations(tmp_path)["timesteps"].tolist() == [0, 150, 300]


@pytest.mark.slow
def test_crossq_runs_as_published_with_its_batch_renorm(tmp_path):
    from sb3_contrib import CrossQ
    from sb3_contrib.common.torch_layers import BatchRenorm

    evaluation = EvalSettings(every=300, episodes=1)
    spec = single_run("crossq", "Pendulum-v1", "none", 0, timesteps=300, eval_settings=evaluation)
    assert run_one(spec, tmp_path).ok
    model = CrossQ.load(tmp_path / "model.zip")
    assert any(isinstance(module, BatchRenorm) for module in model.policy.modules())


@pytest.mark.parametrize(("algo", "env_id"), [("ppo", "CartPole-v1"), ("dqn", "CartPole-v1"), ("sac", "Pendulum-v1")])
def test_evaluating_in_eval_mode_throughout_gives_what_sb3_gives(algo, env_id):
    spec = single_run(algo, env_id, "bn", seed=0, timesteps=100)
    agent = run.load_agent(algo, env_id)
    model = run.build_model(spec, agent, run.make_env(agent, agent.n_envs))

    def episodes():
        env = run.make_env(agent, 3)
        env.seed(7)
        return evaluate_policy(model, env, n_eval_episodes=4, deterministic=True, return_episode_rewards=True)

    expected = episodes()
    model.policy.set_training_mode(True)
    with callbacks.eval_mode_throughout(model.policy):
        assert not any(module.training for module in model.policy.modules())
        assert episodes() == expected
        with pytest.raises(RuntimeError, match="train mode"):
            model.policy.set_training_mode(True)
    assert "set_training_mode" not in vars(model.policy)  # the class's method again
    model.policy.set_training_mode(True)
    assert model.policy.training


def test_done_json_names_the_code_that_made_the_run(finished_run):
    from rlnorm.study.provenance import code_revision, training_sources

    _, run_dir = finished_run
    code = json.loads((run_dir / "done.json").read_text())["code"]
    assert code["source_hash"] == code_revision()["source_hash"] and len(code["source_hash"]) == 64
    assert code["commit"] is None or (len(code["commit"]) == 40 and int(code["commit"], 16) >= 0)
    assert code["dirty"] in (None, True, False)
    # The training path only: committing run records or editing the analysis is not new code.
    names = {path.name for path in training_sources()}
    assert {"norms.py", "policies.py", "probe.py", "run.py", "ppo.yaml"} <= names
    assert not names & {"report.py", "results.py", "stats.py", "plots.py", "study.py", "cli.py"}


def test_ppo_is_probed_on_its_whole_rollout_at_its_minibatch_size(finished_run):
    _, run_dir = finished_run
    with open(run_dir / "probe.csv") as file:
        rows = list(csv.DictReader(file))
    assert rows and {row["network"] for row in rows} == {"actor", "value"}
    # The zoo's PPO CartPole: 8 envs x 32 steps, minibatches of 256, probed once the first rollout is complete.
    assert {(row["timesteps"], row["batch_size"], row["pool_size"]) for row in rows} == {("256", "256", "256")}
    # The minibatch is the whole rollout: every draw is the same batch, so no noise, but a train/eval gap.
    output = [row for row in rows if row["layer"] == "output"]
    assert all(float(row["noise"]) == 0.0 and float(row["gap"]) > 0 for row in output)


def test_off_policy_agents_are_probed_once_their_updates_have_begun(tmp_path):
    spec = single_run("dqn", "CartPole-v1", "bn", 0, timesteps=1_100, eval_settings=EvalSettings(1_100, 1))
    assert run_one(spec, tmp_path).ok
    with open(tmp_path / "probe.csv") as file:
        rows = list(csv.DictReader(file))
    # The zoo's DQN CartPole: updates from step 1,000 on, minibatches of 64 from the replay buffer (SB3 stores
    # step 1,001's transition after the callbacks of that step).
    assert {(row["timesteps"], row["batch_size"], row["pool_size"]) for row in rows} == {("1001", "64", "1000")}
    assert all(float(row["noise"]) > 0 for row in rows if row["layer"] == "output")


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")
def test_a_minibatch_size_above_the_rollout_is_probed_as_the_whole_rollout(tmp_path):
    from stable_baselines3 import PPO

    from rlnorm.core.policies import NormActorCriticPolicy
    from rlnorm.study.callbacks import MechanismRecorder
    from rlnorm.study.config import ProbeSettings

    model = PPO(NormActorCriticPolicy, "CartPole-v1", n_steps=16, batch_size=64, seed=0,
                policy_kwargs=dict(norm="bn", net_arch=[8]))
    model.learn(32, callback=MechanismRecorder(ProbeSettings(every=16, states=2, draws=2), tmp_path))
    with open(tmp_path / "probe.csv") as file:
        rows = list(csv.DictReader(file))
    assert rows and {(row["batch_size"], row["pool_size"]) for row in rows} == {("16", "16")}
