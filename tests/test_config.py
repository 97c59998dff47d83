"""Study configs: the shipped ones expand to the intended grids; every bad value is named in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rlnorm.study.config import ConfigError, EvalSettings, NormVariant, load_study, parse_study, single_run

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CORE_NORMS = ["none", "bn", "mobn", "wn", "wn+mobn", "ln"]


def minimal(**changes: Any) -> dict[str, Any]:
    """A small valid config, with some keys changed (a value of None removes the key)."""
    raw = {
        "algos": {"ppo": ["CartPole-v1"]},
        "norms": ["none", "bn"],
        "seeds": 2,
        "budget": {"timesteps": 1000},
    }
    raw.update(changes)
    return {key: value for key, value in raw.items() if value is not None}


def parse(raw: Any):
    return parse_study(raw, default_name="test", source="test.yaml")


def test_smoke_config_expands_to_readable_unique_run_ids():
    config = load_study(CONFIGS / "smoke.yaml")
    runs = config.runs()
    ids = [run.run_id for run in runs]
    assert len(ids) == len(set(ids)) == 8
    assert "ppo/CartPole-v1/bn/seed-1" in ids
    # Seed-major: an interrupted study has compared every variant on its first seeds.
    assert {run.seed for run in runs[:4]} == {0}


def test_quick_config_compares_the_six_core_norms_on_one_task():
    config = load_study(CONFIGS / "quick.yaml")
    assert [variant.norm for variant in config.variants] == CORE_NORMS
    assert {(run.algo, run.env_id) for run in config.runs()} == {("ppo", "CartPole-v1")}


def test_mujoco_config_covers_both_envs_for_each_algo():
    config = load_study(CONFIGS / "mujoco.yaml")
    tasks = {(run.algo, run.env_id, run.timesteps) for run in config.runs()}
    envs = ("HalfCheetah-v5", "Hopper-v5")
    assert tasks == {(algo, env, 1_000_000) for algo in ("sac", "td3", "ppo") for env in envs}
    assert [variant.norm for variant in config.variants] == CORE_NORMS and len(config.runs()) == 6 * 6 * 5


def test_noise_config_injects_noise_only_into_fixed_statistics_ten_seeds_a_cell():
    config = load_study(CONFIGS / "noise.yaml")
    runs = config.runs()
    assert len(runs) == 60 and {run.seed for run in runs} == set(range(10))
    doses = {run.variant.name: run.variant.norm_kwargs.get("injected_noise", 0) for run in runs}
    assert sorted(set(doses.values())) == [0, 4, 16]
    assert all(run.variant.norm_mode == "fixed" for run in runs)


def test_claim_config_gives_every_cell_ten_seeds_and_doses_only_batch_statistics_rungs():
    config = load_study(CONFIGS / "claim.yaml")
    cells: dict[tuple[str, str], dict[str, set[int]]] = {}
    for run in config.runs():
        cells.setdefault((run.algo, run.env_id), {}).setdefault(run.variant.name, set()).add(run.seed)
    # Ten seeds everywhere: 5 against 5 runs cannot reach p < 0.05 after any correction.
    assert all(seeds == set(range(10)) for variants in cells.values() for seeds in variants.values())
    for task in (("ppo", "CartPole-v1"), ("dqn", "CartPole-v1"), ("dqn", "Acrobot-v1"), ("sac", "Pendulum-v1"),
                 ("td3", "Pendulum-v1")):
        assert set(CORE_NORMS) <= set(cells[task]), task
    variants = {variant.name: variant for variant in config.variants}
    dosed = [variant for variant in variants.values() if variant.norm_kwargs.get("ghost_batches", 1) > 1]
    assert {variant.norm_kwargs["ghost_batches"] for variant in dosed} == {4, 16}
    for task, task_variants in cells.items():
        for variant in (variants[name] for name in task_variants if variants[name] in dosed):
            # each dose has its k = 1 cell on the same task, named without the -g<k> suffix
            plain = variants[variant.name.rsplit("-g", 1)[0]]
            assert plain.name in task_variants and "ghost_batches" not in plain.norm_kwargs, (task, variant.name)
            assert (plain.norm, plain.norm_mode) == (variant.norm, variant.norm_mode)
    # the ladder on the three tasks that carry it, and CrossQ beside SAC
    for task in (("ppo", "CartPole-v1"), ("dqn", "CartPole-v1"), ("sac", "Pendulum-v1")):
        for norm in ("bn", "mobn", "wn+mobn"):
            assert {f"{norm}-{mode}" for mode in ("consistent", "frozen", "fixed")} <= set(cells[task])
    assert "crossq" in cells["crossq", "Pendulum-v1"]


def test_variants_seeds_and_budget_forms():
    config = parse(
        minimal(
            norms=[
                "ln",
                {"bn-critic": {"norm": "bn", "norm_in": "critic"}},
                {"mobn": {"norm_kwargs": {"momentum": 0.01}}},
            ],
            seeds=[3, 7],
            budget={"scale": 0.5},
        )
    )
    assert config.variants == [
        NormVariant("ln", "ln"),
        NormVariant("bn-critic", "bn", norm_in="critic"),
        NormVariant("mobn", "mobn", {"momentum": 0.01}),
    ]
    runs = config.runs()
    assert [run.seed for run in runs] == [3, 3, 3, 7, 7, 7]
    assert {run.timesteps for run in runs} == {50_000}  # half the zoo's 100k for PPO CartPole
    assert runs[1].run_id == "ppo/CartPole-v1/bn-critic/seed-3"
    assert config.out == Path("results/test")


def test_a_task_overrides_seeds_budget_and_eval_for_itself_only():
    config = parse(
        minimal(
            algos={
                "ppo": {"CartPole-v1": {"seeds": [5], "budget": {"timesteps": 64}, "eval": {"every": 7}}},
                "dqn": ["CartPole-v1"],
            },
            norms=["none"],
            eval={"episodes": 3},
        )
    )
    runs = {run.run_id: run for run in config.runs()}
    assert list(runs) == ["ppo/CartPole-v1/none/seed-5", "dqn/CartPole-v1/none/seed-0", "dqn/CartPole-v1/none/seed-1"]
    assert (runs["ppo/CartPole-v1/none/seed-5"].timesteps, runs["dqn/CartPole-v1/none/seed-0"].timesteps) == (64, 1000)
    assert runs["ppo/CartPole-v1/none/seed-5"].eval == EvalSettings(every=7, episodes=3)
    assert runs["dqn/CartPole-v1/none/seed-1"].eval == EvalSettings(episodes=3)


def test_out_argument_replaces_the_configs(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(minimal(out="results/elsewhere")))
    assert load_study(path, out=tmp_path / "o").out == tmp_path / "o"
    assert load_study(path).name == "study"


def test_single_run_uses_the_zoo_budget_by_default():
    spec = single_run("dqn", "CartPole-v1", "wn", seed=4)
    assert (spec.run_id, spec.timesteps) == ("dqn/CartPole-v1/wn/seed-4", 50_000)


BAD_CONFIGS = {
    "unknown key": (minimal(seed=3), ["unknown key 'seed'", "did you mean 'seeds'"]),
    "missing key": (minimal(budget=None), ["missing key 'budget'"]),
    "unknown algo": (minimal(algos={"ppo2": ["CartPole-v1"]}), ["unknown algorithm 'ppo2'", "did you mean 'ppo'"]),
    "unknown env": (minimal(algos={"ppo": ["CartPole-v9"]}), ["unknown environment 'CartPole-v9'", "CartPole-v1"]),
    "untuned env": (minimal(algos={"dqn": ["MountainCar-v0"]}), ["no hyperparameters for MountainCar-v0"]),
    "dqn on pendulum": (minimal(algos={"dqn": ["Pendulum-v1"]}), ["dqn cannot act in Pendulum-v1", "Discrete"]),
    "td3 on cartpole": (minimal(algos={"td3": ["CartPole-v1"]}), ["td3 cannot act in CartPole-v1", "Box"]),
    "unknown norm": (minimal(norms=["none", "bnn"]), ["unknown norm 'bnn'", "did you mean 'bn'", "wn+mobn"]),
    "unknown norm option": (
        minimal(norms=[{"bn2": {"norm": "bn", "norm_kwargs": {"momentun": 0.1}}}]),
        ["no option 'momentun'", "momentum"],
    ),
    "unknown variant key": (
        minimal(norms=[{"bn2": {"norm": "bn", "norm-in": "actor"}}]),
        ["unknown key 'norm-in'", "did you mean 'norm_in'"],
    ),
    "bad norm_in": (minimal(norms=[{"bn2": {"norm": "bn", "norm_in": "critics"}}]), ["norm_in 'critics'", "critic"]),
    "norm_in on dqn": (
        minimal(algos={"dqn": ["CartPole-v1"]}, norms=[{"bn-critic": {"norm": "bn", "norm_in": "critic"}}]),
        ["dqn does not allow", "both"],
    ),
    "variant name": (minimal(norms=[{"a/b": {"norm": "bn"}}]), ["variant name 'a/b'"]),
    "duplicate variant": (minimal(norms=["bn", "bn"]), ["bn appears more than once"]),
    "no norms": (minimal(norms=[]), ["norms: expected a non-empty list"]),
    "zero timesteps": (minimal(budget={"timesteps": 0}), ["budget.timesteps: 0 is not a positive integer"]),
    "negative timesteps": (minimal(budget={"timesteps": -5}), ["budget.timesteps: -5"]),
    "negative scale": (minimal(budget={"scale": -1}), ["budget.scale: -1 is not a positive number"]),
    "two budgets": (minimal(budget={"timesteps": 10, "scale": 1}), ["exactly one of timesteps"]),
    "zero eval every": (minimal(eval={"every": 0}), ["eval.every: 0 is not a positive integer"]),
    "zero eval episodes": (minimal(eval={"episodes": 0}), ["eval.episodes: 0"]),
    "eval episodes type": (minimal(eval={"episodes": "ten"}), ["eval.episodes: 'ten' is not a positive integer"]),
    "no seeds": (minimal(seeds=0), ["seeds: 0 means no runs"]),
    "empty seeds": (minimal(seeds=[]), ["seeds: the list is empty"]),
    "negative seed": (minimal(seeds=[1, -1]), ["seeds: -1"]),
    "duplicate seeds": (minimal(seeds=[1, 1]), ["seeds: 1 appears more than once"]),
    "bool seeds": (minimal(seeds=True), ["seeds: True"]),
    "task override": (minimal(algos={"ppo": {"CartPole-v1": {"seeds": 0}}}), ["algos.ppo.CartPole-v1.seeds: 0"]),
    "task key": (minimal(algos={"ppo": {"CartPole-v1": {"norm": ["bn"]}}}), ["algos.ppo.CartPole-v1: unknown key"]),
    "crossq with a norm": (minimal(algos={"crossq": ["Pendulum-v1"]}, norms=["bn"]),
                           ["crossq runs as published", "its only variant is norm none"]),
    "one name, two variants": (minimal(algos={"ppo": {"CartPole-v1": {"norms": [{"bn": {"norm": "mobn"}}]}},
                                              "a2c": ["CartPole-v1"]}, norms=["bn"]),
                               ["variant 'bn' is defined differently in two places"]),
    "unknown executor": (minimal(executor="slurm"), ["executor: 'slurm'", "local, ray"]),
    "zero workers": (minimal(workers=0), ["workers: 0 is not a positive integer"]),
    "unknown probe key": (minimal(probe={"draw": 10}), ["probe: unknown key 'draw'", "did you mean 'draws'"]),
    "one probe draw": (minimal(probe={"draws": 1}), ["probe.draws: 1 minibatch cannot show a spread"]),
    "unknown norm mode": (minimal(norms=[{"bn-x": {"norm": "bn", "norm_mode": "eval"}}]),
                          ["norm_mode must be one of sb3, consistent, frozen, fixed; got 'eval'"]),
    "mode without batch statistics": (minimal(norms=[{"ln-frozen": {"norm": "ln", "norm_mode": "frozen"}}]),
                                      ["norm 'ln' has none, so its only mode is 'sb3'"]),
    "not a mapping": ([1, 2], ["expected a mapping"]),
    "zero ghost batches": (minimal(norms=[{"bn-g": {"norm": "bn", "norm_kwargs": {"ghost_batches": 0}}}]),
                           ["ghost_batches must be an integer >= 1", "got 0"]),
    "fractional ghost batches": (minimal(norms=[{"bn-g": {"norm": "bn", "norm_kwargs": {"ghost_batches": 2.5}}}]),
                                 ["ghost_batches must be an integer >= 1", "got 2.5"]),
    "ghost batches without batch statistics": (
        minimal(norms=[{"ln-g": {"norm": "ln", "norm_kwargs": {"ghost_batches": 4}}}]),
        ["norm 'ln' has no option 'ghost_batches'", "bn, mobn, wn+mobn, brn"]),
    "injected noise with batch statistics": (
        minimal(norms=[{"bn-n4": {"norm": "bn", "norm_kwargs": {"injected_noise": 4}}}]),
        ["norms[0]: injected_noise=4 needs norm_mode 'frozen' or 'fixed'", "in norm_mode 'sb3'"]),
    "negative injected noise": (
        minimal(norms=[{"bn-n": {"norm": "bn", "norm_mode": "fixed", "norm_kwargs": {"injected_noise": -1}}}]),
        ["injected_noise must be a finite number >= 0", "got -1"]),
    "too much injected noise": (
        minimal(algos={"dqn": ["CartPole-v1"]},
                norms=[{"bn-n64": {"norm": "bn", "norm_mode": "fixed", "norm_kwargs": {"injected_noise": 64}}}]),
        ["variant 'bn-n64' sets injected_noise=64", "batches of 64/64 samples", "injected_noise <= 32"]),
    # DQN CartPole trains on batches of 64: 64 ghost batches would hold one sample each.
    "too many ghost batches": (
        minimal(algos={"dqn": ["CartPole-v1"]},
                norms=[{"bn-g64": {"norm": "bn", "norm_kwargs": {"ghost_batches": 64}}}]),
        ["variant 'bn-g64' splits batches into ghost_batches=64", "batches of 64 samples", "ghost_batches <= 32"]),
    "consistent on a2c": (minimal(algos={"a2c": ["CartPole-v1"]}, norms=[{"bn-c": {"norm": "bn",
                                                                                    "norm_mode": "consistent"}}]),
                          ["norm_mode 'consistent'", "a2c forms no ratio", "sb3, frozen or fixed"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_named_in_one_line(case):
    raw, expected = BAD_CONFIGS[case]
    with pytest.raises(ConfigError) as error:
        parse(raw)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("test.yaml: ")
    for part in expected:
        assert part in message


def test_malformed_yaml_says_where(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("algos:\n  ppo: [CartPole-v1\nnorms: [none]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line \d+"):
        load_study(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_study(tmp_path / "nope.yaml")


def test_a_task_can_run_its_own_variants():
    config = parse_study(minimal(algos={"ppo": {"CartPole-v1": {"norms": ["none", {"bn-fixed": {"norm": "bn",
                                                                 "norm_mode": "fixed"}}]}},
                                         "crossq": {"Pendulum-v1": {"norms": [{"crossq": {"norm": "none"}}]}}},
                                  norms=["none", "bn"]), "t", "t")
    by_task = {(spec.algo, spec.variant.name) for spec in config.runs()}
    assert by_task == {("ppo", "none"), ("ppo", "bn-fixed"), ("crossq", "crossq")}
    assert [variant.name for variant in config.variants] == ["none", "bn-fixed", "crossq"]
