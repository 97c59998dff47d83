"""Studies: resume, SIGKILL at any moment, failure isolation, the lock, and the executors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from rlnorm.cli import main
from rlnorm.study import study
from rlnorm.study.config import load_study
from rlnorm.study.executors import ExecutorError, run_local
from rlnorm.study.run import build_model, run_one
from rlnorm.study.study import StudyError, TaskProgress, run_study, study_lock, study_progress, time_left

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
N_RUNS = 8


def run_ids(out: Path) -> set[str]:
    return {str(path.parent.relative_to(out)) for path in out.glob("*/*/*/seed-*/done.json")}


def assert_same_results(out: Path, reference: Path) -> None:
    """Same runs, each with the same evaluations and the same training episodes."""
    assert run_ids(out) == run_ids(reference) and len(run_ids(out)) == N_RUNS
    for run_id in run_ids(reference):
        with np.load(out / run_id / "evaluations.npz") as got, np.load(reference / run_id / "evaluations.npz") as want:
            for key in ("timesteps", "results", "ep_lengths"):
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{run_id} {key}")
        assert training_episodes(out / run_id) == training_episodes(reference / run_id), run_id


def training_episodes(run_dir: Path) -> list[list[str]]:
    # Reward and length of each training episode (not the wall-clock column).
    lines = (run_dir / "monitor.csv").read_text().splitlines()[2:]
    return [line.split(",")[:2] for line in lines]


def snapshot(out: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file of every run."""
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in out.glob("*/*/*/seed-*/*")}


def failing_run_one(spec, run_dir):
    """run_one, but PPO bn seed 1 raises and DQN bn seed 1 turns NaN. Module-level, so that spawned
    workers can unpickle it (they import this module by name, as pytest put its folder on sys.path)."""
    if spec.variant.name == "bn" and spec.seed == 1 and spec.algo == "ppo":
        with mock.patch("rlnorm.study.run.train", side_effect=RuntimeError("injected failure")):
            return run_one(spec, run_dir)
    if spec.variant.name == "bn" and spec.seed == 1 and spec.algo == "dqn":
        with mock.patch("rlnorm.study.run.build_model", side_effect=nan_model):
            return run_one(spec, run_dir)
    return run_one(spec, run_dir)


def nan_model(*args, **kwargs):
    model = build_model(*args, **kwargs)
    with torch.no_grad():
        next(model.policy.parameters()).fill_(float("nan"))
    return model


@pytest.fixture
def reference(smoke_study) -> Path:
    """The smoke study, run without interruption (shared: tests copy it before changing it)."""
    return smoke_study


def test_rerunning_a_finished_study_skips_every_run(reference):
    before = snapshot(reference)
    summary = run_study(load_study(SMOKE, out=reference), quiet=True)
    assert (summary.total, summary.skipped, summary.done, summary.failed) == (N_RUNS, N_RUNS, 0, {})
    assert snapshot(reference) == before


def test_an_interrupted_run_is_redone_from_scratch(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    # Interrupted after writing some files, and before writing any but its config.
    (out / "ppo/CartPole-v1/bn/seed-1/done.json").unlink()
    (out / "ppo/CartPole-v1/bn/seed-1/leftover.tmp").write_text("partial")
    for path in (out / "dqn/CartPole-v1/none/seed-0").iterdir():
        if path.name != "config.json":
            path.unlink()
    summary = run_study(load_study(SMOKE, out=out), quiet=True)
    assert (summary.done, summary.skipped) == (2, N_RUNS - 2)
    assert not (out / "ppo/CartPole-v1/bn/seed-1/leftover.tmp").exists()
    assert_same_results(out, reference)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_equals_an_uninterrupted_study(reference, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rlnorm.cli", "study", str(SMOKE), "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(run_ids(out)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {run_id: (out / run_id / "done.json").read_bytes() for run_id in run_ids(out)}
    assert 0 < len(finished) < N_RUNS
    # The workers die with the study: nothing is written after the kill.
    files = snapshot(out)
    time.sleep(1.0)
    assert snapshot(out) == files

    summary = run_study(load_study(SMOKE, out=out), quiet=True)
    assert (summary.skipped, summary.done, summary.failed) == (len(finished), N_RUNS - len(finished), {})
    assert {run_id: (out / run_id / "done.json").read_bytes() for run_id in finished} == finished
    assert_same_results(out, reference)


@pytest.mark.slow
def test_failures_are_isolated_recorded_and_retried_alone(reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(study, "run_one", failing_run_one)
        assert main(["study", str(SMOKE), "--out", str(out)]) == 1
    report, progress = capsys.readouterr()
    # One progress bar: runs done/total with an ETA, and the failures so far.
    assert re.search(r"smoke: +\d+%.*\| [1-7]/8 \[\d\d:\d\d<\d\d:\d\d", progress)
    assert "8/8" in progress and "failed=2" in progress
    assert "8 runs, 6 done (6 now, 0 before), 2 failed" in report
    assert "failed: ppo/CartPole-v1/bn/seed-1: RuntimeError: injected failure" in report
    assert "failed: dqn/CartPole-v1/bn/seed-1: NonFiniteError: NaN or inf in " in report
    assert (out / "dqn/CartPole-v1/bn/seed-1/failed.json").exists()

    # Failed runs stay failed on a plain re-run, and the exit code keeps saying so; quiet: no bar.
    assert main(["study", str(SMOKE), "--out", str(out), "--quiet"]) == 1
    report, progress = capsys.readouterr()
    assert "6 done (0 now, 6 before), 2 failed" in report and progress == ""

    assert main(["study", str(SMOKE), "--out", str(out), "--quiet", "--retry-failed"]) == 0
    assert "8 done (2 now, 6 before), 0 failed" in capsys.readouterr().out
    assert not list(out.rglob("failed.json"))
    assert_same_results(out, reference)


def test_status_counts_the_runs_and_estimates_the_time_left_from_the_finished_ones(tmp_path, capsys):
    out = tmp_path / "out"

    def record(run_id: str, name: str, content: dict) -> None:
        (out / run_id).mkdir(parents=True, exist_ok=True)
        (out / run_id / name).write_text(json.dumps(content))

    config = load_study(SMOKE, out=out)
    # Nothing finished yet: nothing to estimate the time left by.
    assert [(task.done, task.failed, task.to_do) for task in study_progress(config)] == [(0, 0, 4)] * 2
    assert all(np.isnan(task.left_s) for task in study_progress(config))
    assert main(["study", str(SMOKE), "--out", str(out), "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{out}:"
    assert lines[1] == "ppo/CartPole-v1: 0 of 4 done, 0 failed, 4 to do: time left unknown (no finished run " \
                       "with a wall time)"
    assert lines[-1] == "in all: 0 of 8 done, 0 failed, 8 to do: time left unknown (no finished run with a wall time)"
    assert not out.exists()  # read only
    for run_id, wall in [("ppo/CartPole-v1/none/seed-0", 10.0), ("ppo/CartPole-v1/bn/seed-0", 50.0)]:
        record(run_id, "done.json", {"wall_time_s": wall})
    record("ppo/CartPole-v1/none/seed-1", "done.json", {})  # no wall time: counted, not timed
    # ppo: bn seed-1 left at bn's median, 50 s; dqn: nothing timed, its 4 runs not estimated.
    assert time_left(study_progress(config), workers=2) == (50.0, 50.0, 4)
    assert main(["study", str(SMOKE), "--out", str(out), "--status"]) == 0
    assert ", plus 4 runs not estimated (from the finished runs' median" in capsys.readouterr().out
    record("dqn/CartPole-v1/bn/seed-0", "done.json", {"wall_time_s": 40.0})
    record("dqn/CartPole-v1/none/seed-0", "failed.json", {"reason": "RuntimeError: injected"})
    (out / "dqn/CartPole-v1/none/seed-1").mkdir(parents=True)  # interrupted: still to do
    ppo, dqn = study_progress(config)
    # dqn: none seed-1 at the task's median (none has no timed run) and bn seed-1 at bn's, 40 s each.
    assert ppo == TaskProgress("ppo/CartPole-v1", runs=4, done=3, failed=0, left_s=50.0, longest_s=50.0)
    assert dqn == TaskProgress("dqn/CartPole-v1", runs=4, done=1, failed=1, left_s=80.0, longest_s=40.0)
    assert (ppo.to_do, dqn.to_do) == (1, 2)
    # 130 CPU seconds: one worker takes them all; two share them; more than three runs cannot keep busy, and
    # no number of workers makes the time left shorter than its longest run.
    assert [time_left([ppo, dqn], workers) for workers in (1, 2, 8)] == [(130.0, 130.0, 0), (130.0, 65.0, 0),
                                                                        (130.0, 50.0, 0)]
    assert time_left([dqn], workers=8) == (80.0, 40.0, 0)
    assert main(["study", str(SMOKE), "--out", str(out), "--status", "--workers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("ppo/CartPole-v1: 3 of 4 done, 0 failed, 1 to do: about ")
    assert lines[2].startswith("dqn/CartPole-v1: 1 of 4 done, 1 failed, 2 to do: about ")
    assert lines[3].startswith("in all: 4 of 8 done, 1 failed, 3 to do: about ") and "with 1 worker (" in lines[3]
    assert sorted(path.name for path in out.iterdir()) == ["dqn", "ppo"]  # read only: no lock, no study.json
    with pytest.raises(SystemExit) as exited:  # one or the other
        main(["study", str(SMOKE), "--out", str(out), "--status", "--reproduce", "ppo/CartPole-v1/bn/seed-0"])
    assert exited.value.code == 2 and "not allowed with argument --status" in capsys.readouterr().err


def test_reproduce_makes_finished_runs_again_and_compares_their_records(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    probe = out / "dqn/CartPole-v1/bn/seed-1/probe.csv"
    lines = probe.read_text().splitlines()
    probe.write_text("\n".join([lines[0], lines[1] + "1", *lines[2:]]) + "\n")  # one more digit in one value
    (out / "ppo/CartPole-v1/none/seed-0/statistics.csv").unlink()  # a record a study did not keep
    before = snapshot(out)
    config = load_study(SMOKE, out=out)
    with mock.patch.object(study, "run_one", wraps=run_one) as made:
        same, changed, uncompared = study.reproduce_runs(
            config, ["ppo/CartPole-v1/bn/seed-0", "dqn/CartPole-v1/bn/seed-1", "ppo/CartPole-v1/none/seed-0",
                     "ppo/CartPole-v1/bn/seed-0"], tmp_path / "work")
    assert made.call_count == 3  # a run named twice is made once
    assert same.identical and same.compared == study.COMPARED_RECORDS and same.differing == ()
    assert not changed.identical and changed.differing == ("probe.csv",) and changed.failure is None
    assert uncompared.identical and "statistics.csv" not in uncompared.compared
    assert same.recorded_code == json.loads((out / same.run_id / "done.json").read_text())["code"]["source_hash"]
    # Evaluations compare as arrays, training episodes by reward and length (not their wall-clock times).
    evaluations = out / "ppo/CartPole-v1/bn/seed-0/evaluations.npz"
    with np.load(evaluations) as recorded:
        arrays = dict(recorded)
    arrays["results"][-1, -1] += 1e-6
    np.savez(evaluations, **arrays)
    monitor = out / "ppo/CartPole-v1/none/seed-1/monitor.csv"
    retimed_text, count = re.subn(r"^([^,]+,[^,]+,)[0-9.]+$", r"\g<1>0.5", monitor.read_text(), flags=re.M)
    assert count > 2
    monitor.write_text(retimed_text)
    with mock.patch.object(study, "run_one", side_effect=failing_run_one):
        failed, retimed = study.reproduce_runs(config, ["ppo/CartPole-v1/bn/seed-1", "ppo/CartPole-v1/none/seed-1"],
                                               tmp_path / "again")
    assert failed.failure == "RuntimeError: injected failure" and not failed.identical
    assert retimed.identical
    assert main(["study", str(SMOKE), "--out", str(out), "--reproduce", "ppo/CartPole-v1/bn/seed-0"]) == 1
    assert capsys.readouterr().out.startswith("ppo/CartPole-v1/bn/seed-0: differs in evaluations.npz (compared: "
                                              "evaluations.npz, monitor.csv, probe.csv, statistics.csv); recorded by "
                                              "training code ")
    after = snapshot(out)  # nothing of the study touched but the two records changed above
    assert after.keys() == before.keys()
    assert {Path(k).relative_to(out).as_posix() for k in after if after[k] != before[k]} == {
        "ppo/CartPole-v1/bn/seed-0/evaluations.npz", "ppo/CartPole-v1/none/seed-1/monitor.csv"}

    assert main(["study", str(SMOKE), "--out", str(out), "--reproduce", "ppo/CartPole-v1/ln/seed-0"]) == 2
    assert "'ppo/CartPole-v1/ln/seed-0' is not a run of study 'smoke' (did you mean 'ppo/CartPole-v1/bn/seed-0'?)" \
        in capsys.readouterr().err
    shutil.rmtree(out / "ppo/CartPole-v1/none/seed-1")
    assert main(["study", str(SMOKE), "--out", str(out), "--reproduce", "ppo/CartPole-v1/none/seed-1"]) == 2
    assert "ppo/CartPole-v1/none/seed-1 has not finished in " in capsys.readouterr().err


def test_a_second_study_on_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "out"
    with study_lock(out):
        command = [sys.executable, "-m", "rlnorm.cli", "study", str(SMOKE), "--out", str(out)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"another study (process {os.getpid()}) is running in {out}" in result.stderr
    assert sorted(path.name for path in out.iterdir()) == [".lock"]


def test_runs_recorded_with_other_settings_are_refused(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    config = load_study(SMOKE, out=out)
    task = dataclasses.replace(config.tasks[0], timesteps=2048)
    changed = dataclasses.replace(config, tasks=[task, *config.tasks[1:]])
    with pytest.raises(StudyError, match=r"seed-0 was run with timesteps=1024 but the config now says 2048"):
        run_study(changed, quiet=True)


def test_runs_made_by_other_training_code_are_refused_unless_allowed(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    done = out / "ppo/CartPole-v1/bn/seed-0/done.json"
    record = json.loads(done.read_text())
    record["code"] = {**record["code"], "source_hash": "f" * 64, "commit": "a" * 40}
    done.write_text(json.dumps(record))
    with pytest.raises(StudyError, match=r"seed-0 was made by training code ffffffffffff \(commit a{40}\).*"
                                         r"--allow-other-code"):
        run_study(load_study(SMOKE, out=out), quiet=True)
    summary = run_study(load_study(SMOKE, out=out), quiet=True, allow_other_code=True)
    assert (summary.skipped, summary.done) == (N_RUNS, 0)


def test_local_executor_runs_each_job_once_in_worker_processes():
    pids = list(run_local([partial(os.getpid)] * 6, workers=2))
    assert len(pids) == 6 and os.getpid() not in pids and len(set(pids)) <= 2


def test_a_worker_that_dies_stops_the_study_with_a_clear_error():
    with pytest.raises(ExecutorError, match="a worker process died"):
        list(run_local([partial(os._exit, 1)], workers=1))


@pytest.mark.slow
def test_ray_executor_makes_the_same_runs_and_files(reference, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    config = dataclasses.replace(load_study(SMOKE, out=out), executor="ray", workers=2)
    summary = run_study(config, quiet=True)
    assert (summary.done, summary.failed) == (N_RUNS, {})
    assert_same_results(out, reference)
    for run_id in run_ids(reference):
        assert sorted(path.name for path in (out / run_id).iterdir()) == sorted(
            path.name for path in (reference / run_id).iterdir()
        )
