"""Reading results directories: synthetic runs with known numbers, in every state a study leaves them.

The helpers here write run directories as :mod:`rlnorm.study.run` does; test_plots and test_report use them.
"""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlnorm.analysis.results import DONE, FAILED, RUNNING, ProbeRecord, ResultsError, learning_curve, load_results
from rlnorm.study.records import PROBE_COLUMNS, env_directory

STEPS = (0, 100, 200, 300, 400, 500)


def curve_to(final: float) -> list[float]:
    """A 6-point learning curve whose final return (mean of the last 3 points) is ``final``."""
    return [0.0, 0.5 * final, 0.8 * final, final, final, final]


def write_run(
    root: Path,
    variant: str = "none",
    seed: int = 0,
    returns: list[float] | None = None,
    *,
    algo: str = "ppo",
    env_id: str = "CartPole-v1",
    norm: str | None = None,
    norm_mode: str | None = None,
    norm_kwargs: dict | None = None,
    steps: tuple[int, ...] = STEPS,
    status: str = DONE,
    wall_time_s: float = 10.0,
    probe: list[tuple] = (),
    drift: list[tuple] = (),
    mismatch: list[tuple] = (),
) -> Path:
    """Write one run directory; each evaluation has two episodes, at its return - 1 and + 1."""
    returns = curve_to(100.0) if returns is None else returns
    run_dir = root / algo / env_directory(env_id) / variant / f"seed-{seed}"
    run_dir.mkdir(parents=True)
    spec_variant = {
        "name": variant,
        "norm": norm or variant.split("-")[0],
        "norm_kwargs": norm_kwargs or {},
        "norm_in": "both",
    }
    if norm_mode:
        spec_variant["norm_mode"] = norm_mode
    spec = {
        "algo": algo,
        "env_id": env_id,
        "variant": spec_variant,
        "seed": seed,
        "timesteps": steps[-1],
        "eval": {"every": 100, "episodes": 2, "deterministic": True},
    }
    (run_dir / "config.json").write_text(
        json.dumps({"run": spec, "eval_seed": seed + 10**6, "agent": {"n_envs": 1, "algo_kwargs": {"gamma": 0.99}}})
    )
    with open(run_dir / "evaluations.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["timesteps", "episode", "return", "length"])
        for step, value in zip(steps, returns, strict=False):
            writer.writerows([[step, 0, value - 1, 10], [step, 1, value + 1, 10]])
    # Rows of five columns are records written before the scale-free probe.
    probe_header = list(PROBE_COLUMNS) if probe and len(probe[0]) == len(PROBE_COLUMNS) else list(PROBE_COLUMNS[:3]) + [
        "noise", "gap"]
    _write_csv(run_dir / "probe.csv", probe_header, probe)
    _write_csv(run_dir / "statistics.csv", ["timesteps", "network", "drift"], drift)
    if mismatch:
        # As SB3's logger writes it: the first row (before any update) has no train/* values.
        rows = [[0, "", ""], *mismatch]
        _write_csv(
            run_dir / "progress.csv", ["time/total_timesteps", "train/mode_mismatch", "train/mode_mismatch_max"], rows
        )
    record = {
        "wall_time_s": wall_time_s,
        "evaluation_s": 1.0,
        "probe_s": 0.5,
        "host": "testhost",
        "hardware": "Test CPU, 2 cores, 24 GiB",
        "peak_memory_mib": 300.0,
        "versions": {"python": "3.11", "torch": "2.13.0"},
    }
    if status == DONE:
        (run_dir / "done.json").write_text(json.dumps(record))
    elif status == FAILED:
        (run_dir / "failed.json").write_text(json.dumps({**record, "reason": "NonFiniteError: NaN in actor"}))
    return run_dir


def _write_csv(path: Path, header: list[str], rows) -> None:
    if rows:
        with open(path, "w", newline="") as file:
            csv.writer(file).writerows([header, *rows])


def write_study(root: Path, finals: dict[str, list[float]], **kwargs) -> Path:
    """One run per final return, seeds 0.., for each variant."""
    for variant, values in finals.items():
        for seed, final in enumerate(values):
            write_run(root, variant, seed, curve_to(final), **kwargs)
    return root


def test_runs_and_groups_have_known_metrics(tmp_path):
    write_study(tmp_path, {"none": [100.0, 200.0, 300.0], "bn": [10.0, 20.0, 30.0]})
    results = load_results(tmp_path)
    assert results.tasks == [("ppo", "CartPole-v1")]
    assert results.variants == ["none", "bn"]  # none first without a study.json
    run = results.runs[0]
    assert (run.variant, run.norm, run.norm_mode, run.seed, run.status) == ("none", "none", "sb3", 0, DONE)
    assert run.metrics.final == pytest.approx(100.0)
    assert run.metrics.auc == pytest.approx(np.mean(curve_to(100.0)))
    assert run.metrics.eval_spread == pytest.approx(1.0)  # episodes at return -1 and +1
    assert run.train_time_s == pytest.approx(9.0)  # 10 s wall time, 1 s evaluating
    none = results.group(("ppo", "CartPole-v1"), "none")
    # With 3 runs the 25 % trimmed mean trims nothing: the IQM is the mean.
    assert none.final_iqm.value == pytest.approx(200.0)
    assert none.final_std.value == pytest.approx(100.0)
    assert none.final_cvar == pytest.approx(100.0)  # worst run
    assert none.final_iqr == pytest.approx(100.0)
    assert none.final_iqm.low <= 200.0 <= none.final_iqm.high
    assert results.notes == ()


def test_failed_and_running_runs_are_read_and_kept_out_of_aggregates(tmp_path):
    write_study(tmp_path, {"none": [100.0, 200.0], "bn": [10.0, 20.0]})
    write_run(tmp_path, "bn", 2, [0.0, 5.0], status=FAILED)
    write_run(tmp_path, "bn", 3, [0.0, 5.0, 6.0, 7.0], status=RUNNING)
    results = load_results(tmp_path)
    bn = results.group(("ppo", "CartPole-v1"), "bn")
    statuses = {run.seed: run.status for run in bn.runs}
    assert statuses == {0: DONE, 1: DONE, 2: FAILED, 3: RUNNING}
    failed = bn.runs[2]
    assert failed.reason == "NonFiniteError: NaN in actor"
    assert failed.steps.tolist() == [0, 100] and np.isnan(failed.metrics.final)  # too short for a final
    assert bn.runs[3].metrics.final == pytest.approx(6.0)
    assert (bn.count(DONE), bn.count(FAILED), bn.count(RUNNING)) == (2, 1, 1)
    assert bn.finals().tolist() == pytest.approx([10.0, 20.0])
    assert any("1 run(s) failed (ppo/CartPole-v1/bn/seed-2)" in note for note in results.notes)
    assert any("running or were interrupted (ppo/CartPole-v1/bn/seed-3)" in note for note in results.notes)


def test_run_without_config_and_cut_short_files(tmp_path):
    write_study(tmp_path, {"none": [1.0], "bn": [2.0]})
    bare = tmp_path / "ppo" / "CartPole-v1" / "bn" / "seed-7"
    bare.mkdir()
    (bare / "failed.json").write_text(json.dumps({"reason": "ValueError: bad"}))
    # An evaluation interrupted after one of its two episodes, and a line cut mid-write.
    with open(tmp_path / "ppo" / "CartPole-v1" / "none" / "seed-0" / "evaluations.csv", "a") as file:
        file.write("600,0,50.0,10\n700,0,")
    results = load_results(tmp_path)
    run = next(run for run in results.runs if run.seed == 7)
    assert (run.status, run.norm, run.steps.size) == (FAILED, "bn", 0)
    assert results.runs[0].steps.tolist() == list(STEPS)


def test_not_a_results_directory(tmp_path):
    with pytest.raises(ResultsError, match="is not a directory"):
        load_results(tmp_path / "missing")
    with pytest.raises(ResultsError, match="not a results directory: no <algo>/<env>/<variant>/seed-<n>"):
        load_results(tmp_path)
    run_dir = write_run(tmp_path)
    with pytest.raises(ResultsError, match="is one run's directory"):
        load_results(run_dir)


def test_one_variant_gets_a_note(tmp_path):
    write_study(tmp_path, {"bn": [1.0, 2.0]})
    results = load_results(tmp_path)
    assert results.notes == ("the study has one variant (bn): nothing to compare; the tables describe its runs",)


def test_mismatched_steps_are_noted_and_different_ends_made_incomparable(tmp_path):
    write_run(tmp_path / "same_end", "none", 0)
    write_run(tmp_path / "same_end", "bn", 0, [0.0, 1.0, 2.0, 3.0], steps=(0, 250, 400, 500))
    results = load_results(tmp_path / "same_end")
    assert "evaluated at 2 different step schedules" in results.notes[0]
    assert not results.incomparable

    write_run(tmp_path / "other_end", "none", 0)
    write_run(tmp_path / "other_end", "bn", 0, steps=(0, 200, 400, 600, 800, 1000))
    results = load_results(tmp_path / "other_end")
    assert "runs end at different steps ([500, 1000])" in results.notes[0]
    assert results.incomparable == {("ppo", "CartPole-v1")}


def test_learning_curve_aggregates_on_shared_steps(tmp_path):
    write_run(tmp_path, "none", 0, [0.0, 10.0, 20.0])
    write_run(tmp_path, "none", 1, [0.0, 20.0, 40.0])
    write_run(tmp_path, "none", 2, [0.0, 30.0, 60.0, 70.0])
    write_run(tmp_path, "none", 3, [5.0], status=RUNNING)  # not in the band
    band = learning_curve(load_results(tmp_path).groups[0], aggregate="mean")
    assert band.steps.tolist() == [0, 100, 200]
    assert band.value.tolist() == pytest.approx([0.0, 20.0, 40.0])
    assert np.all(band.low <= band.value) and np.all(band.value <= band.high)


def test_probe_rows_of_the_scale_free_probe_are_read_whole(tmp_path):
    write_run(tmp_path, "bn", 0, probe=[(256, "q", "output", 64, 5000, 0.5, 0.1, 0.25, 0.75),
                                        (256, "q", "q_net.0", 64, 5000, 2.0, 0.3, 0.125, float("nan"))])
    run = load_results(tmp_path).runs[0]
    assert run.probe[0] == ProbeRecord(256, "q", "output", 0.5, 0.1, relative_noise=0.25, noise_excess_kurtosis=0.75,
                                       batch_size=64, pool_size=5000)
    assert run.probe_median("relative_noise") == 0.25 and run.probe_median("relative_noise", layer="q_net.0") == 0.125
    assert math.isnan(run.probe[1].noise_excess_kurtosis)


def test_a_runs_probe_level_is_the_median_over_its_points_so_one_point_cannot_decide_it(tmp_path):
    # A first point before any update, with BN's running statistics at their initial values, is off-scale: a
    # mean of these four points would be 1.05, the median is 0.25.
    q_points = [(1000, 3.6), (2000, 0.2), (3000, 0.3), (4000, 0.1)]
    critic_points = [(1000, 0.5), (2000, 50.0), (3000, 0.7)]  # one point where the critic is nearly flat
    write_run(tmp_path, "bn", 0, probe=[(t, "q", "output", 64, 5000, 0.1, 0.1, v, 0.0) for t, v in q_points]
              + [(t, "critic", "output", 64, 5000, 0.1, 0.1, v, 0.0) for t, v in critic_points]
              + [(1000, "q", "q_net.0", 64, 5000, 0.1, 0.1, 9.0, 0.0)])
    run = load_results(tmp_path).runs[0]
    assert run.probe_median("relative_noise") == pytest.approx((0.25 + 0.7) / 2)  # each network's median, averaged
    assert run.probe_median("relative_noise", layer="q_net.0") == pytest.approx(9.0)


def test_the_first_probe_point_is_the_runs_earliest_step_never_a_later_one(tmp_path):
    write_run(tmp_path, "bn", 0, probe=[(3000, "actor", "output", 256, 5000, 0.1, 0.0, 0.3, 0.0),
                                        (1000, "actor", "output", 256, 5000, 0.1, 0.0, 0.7, 0.0),
                                        (1000, "critic", "output", 256, 5000, 0.1, 0.0, 0.5, 0.0),
                                        (2000, "critic", "output", 256, 5000, 0.1, 0.0, 9.0, 0.0)])
    # DQN Acrobot's first point: the pool is the batch itself, so its noise is n/a, and so is the first point's.
    write_run(tmp_path, "mobn", 0, probe=[(129, "q", "output", 128, 128, 0.0, 0.2, 0.0, float("nan")),
                                          (10000, "q", "output", 128, 9999, 0.1, 0.3, 0.27, 0.0)])
    first, whole_pool_first = load_results(tmp_path).runs
    assert first.probe_first("relative_noise") == pytest.approx((0.7 + 0.5) / 2)
    assert math.isnan(whole_pool_first.probe_first("relative_noise"))
    assert whole_pool_first.probe_first("gap") == pytest.approx(0.2)


def test_probe_drift_and_mismatch_tables(tmp_path):
    write_run(
        tmp_path,
        "bn",
        0,
        probe=[(0, "actor", "output", 0.1, 0.2), (100, "actor", "output", 0.3, 0.4), (100, "actor", "mlp.0", 1.0, 1.0)],
        drift=[(100, "actor", 0.05), (200, "actor", 0.1 / 1e-12), (300, "actor", float("nan"))],
        mismatch=[(100, 0.01, 0.02), (200, 0.03, 0.05)],
    )
    results = load_results(tmp_path)
    run = results.runs[0]
    assert run.probe_median("noise") == pytest.approx(0.2)  # outputs only: (0.1 + 0.3) / 2
    assert run.probe_median("gap", layer="mlp.0") == pytest.approx(1.0)
    assert results.groups[0].probe_noise.value == pytest.approx(0.2)
    first = results.probe_table()[0]
    assert {key: first[key] for key in ("algo", "env_id", "variant", "seed", "timesteps", "network", "layer",
                                         "noise", "gap", "batch_size", "pool_size")} == {
        "algo": "ppo",
        "env_id": "CartPole-v1",
        "variant": "bn",
        "seed": 0,
        "timesteps": 0,
        "network": "actor",
        "layer": "output",
        "noise": 0.1,
        "gap": 0.2,
        "batch_size": 0,  # not recorded then
        "pool_size": 0,
    }
    assert math.isnan(first["relative_noise"]) and math.isnan(first["noise_excess_kurtosis"])
    assert results.drift_table()[0]["drift"] == 0.05
    # relative to all-zero statistics: undefined, whether recorded as nan or (by older versions) as ‖Δ‖/1e-12
    assert all(math.isnan(row["drift"]) for row in results.drift_table()[1:])
    assert [(r["timesteps"], r["mismatch"], r["mismatch_max"]) for r in results.mismatch_table()] == [
        (100, 0.01, 0.02),
        (200, 0.03, 0.05),
    ]


def test_canonical_variants_by_norm_and_mode(tmp_path):
    write_run(tmp_path, "bn", 0)
    write_run(tmp_path, "bn-frozen", 0, norm_mode="frozen")
    write_run(tmp_path, "mobn-m0", 0, norm="mobn", norm_mode="frozen", norm_kwargs={"momentum": 0.0})
    write_run(tmp_path, "mobn-fz", 0, norm="mobn", norm_mode="frozen")
    results = load_results(tmp_path)
    task = ("ppo", "CartPole-v1")
    assert results.canonical(task, "bn").variant == "bn"
    assert results.canonical(task, "bn", "frozen").variant == "bn-frozen"
    assert results.canonical(task, "mobn", "frozen").variant == "mobn-fz"  # the momentum sweep is not it
    assert results.canonical(task, "bn", "fixed") is None


def test_study_order_and_pending_runs(tmp_path):
    write_study(tmp_path, {"none": [1.0], "bn": [2.0]})
    study = {
        "name": "s",
        "tasks": [{"algo": "ppo", "env_id": "CartPole-v1", "seeds": [0, 1]}],
        "variants": [{"name": "bn"}, {"name": "none"}],
    }
    (tmp_path / "study.json").write_text(json.dumps(study))
    results = load_results(tmp_path)
    assert results.variants == ["bn", "none"]
    assert "2 run(s) of the study config have not started" in results.notes


def test_reading_results_never_imports_torch():
    code = ("import rlnorm.analysis.report, rlnorm.analysis.plots, rlnorm.analysis.results, sys; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def write_bench(root, times: dict[str, dict[str, list[float]]], cnn: dict[str, tuple[str, dict]] | None = None,
                sweep: list[dict] | None = None):
    """A bench record (``rlnorm bench --out``) of the given training times per task, of convolutional workloads
    (name -> step, times) and of the ratio sweep's points, in ``root``."""
    record = {
        "command": "rlnorm bench --repeats 10",
        "hardware": "test machine",
        "training_time_s": {task: {"timesteps": 1000, "times": t} for task, t in times.items()},
        "cnn_time_s": {name: {"step": step, "times": t} for name, (step, t) in (cnn or {}).items()},
        "conv_sweep": sweep or [],
    }
    (root / "bench.json").write_text(json.dumps(record))


def test_injected_noise_on_a_whole_pool_minibatch_is_measured_noise(tmp_path):
    # The same batch at every draw, but a layer injected noise: the draws differ, and that is the run's noise.
    write_run(tmp_path, "bn", 0, probe=[(256, "actor", "output", 256, 256, 0.05, 0.4, 0.3, 0.0),
                                        (512, "actor", "output", 256, 256, 0.04, 0.4, 0.2, 0.0)])
    run = load_results(tmp_path).runs[0]
    assert run.probe_median("relative_noise") == pytest.approx(0.25)


def test_probe_noise_of_a_whole_pool_minibatch_is_not_applicable_but_its_gap_is_measured(tmp_path):
    # PPO's zoo CartPole: the minibatch is the whole rollout, so every draw is the same batch.
    write_run(tmp_path, "bn", 0, probe=[(256, "actor", "output", 256, 256, 0.0, 0.4, 0.0, float("nan")),
                                        (256, "actor", "mlp.0", 256, 256, 0.0, 0.2, 0.0, float("nan"))])
    run = load_results(tmp_path).runs[0]
    assert math.isnan(run.probe_median("noise")) and math.isnan(run.probe_median("relative_noise"))
    assert run.probe_median("gap") == pytest.approx(0.4)
    assert run.probe_median("gap", layer="layers") == pytest.approx(0.2)
