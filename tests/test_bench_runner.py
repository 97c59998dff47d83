"""The runner benchmark runs end to end on a tiny budget and measures what it says it does (its figures are
machine-dependent: the test checks how they relate, never a time threshold or a printed rounding)."""

from pathlib import Path

import numpy as np
import pytest

from rlnorm.study import bench_runner

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"


@pytest.mark.slow
def test_bench_runner_times_each_part_of_the_same_runs():
    specs = bench_runner.bench_specs(SMOKE, runs=2)
    bench = bench_runner.measure(specs, repeats=1)
    paired = bench.paired
    assert paired.bare.shape == paired.runner.shape == paired.evaluation.shape == (2,)
    # Evaluation is part of the runner's time, and each run evaluates at least before and after training.
    assert np.all(paired.evaluation > 0) and np.all(paired.runner > paired.evaluation) and np.all(paired.bare > 0)
    # The 1-worker runner does the same runs inside a process it starts: its time covers theirs.
    assert bench.one_worker_s > bench.inside_runs_one_s > 0 and bench.two_workers_s > 0
    assert bench.machine_speedup > 0 and bench.peak_memory_mib > 0
    lines = bench_runner.render(bench, specs, repeats=1).splitlines()
    assert lines[0] == "2 runs of ppo CartPole-v1, 1024 steps each, evaluation every 512 steps x 2 episodes"
    assert len(lines) == 14


def test_bench_runner_refuses_a_missing_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        bench_runner.main(["--config", str(tmp_path / "absent.yaml")])
    assert exited.value.code == 2
    assert "absent.yaml: no such file" in capsys.readouterr().err
