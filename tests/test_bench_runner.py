"""The runner benchmark runs end to end on a tiny budget (its figures are measured, not tested)."""

import re
from pathlib import Path

from rlnorm import bench_runner

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
PARTS = ["per run, paired", "bare model.learn", "runner (run_one)", "evaluation", "the rest", "worker start",
         "runner overhead in all", "runner, 1 worker", "runner, 2 workers", "workers busy",
         "a run beside another", "this machine's 2 processes", "peak memory of a worker"]


def test_bench_runner_times_each_part_of_the_same_runs(capsys):
    bench_runner.main(["--runs", "2", "--repeats", "1", "--config", str(SMOKE)])
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.startswith("2 runs of ppo CartPole-v1, 1024 steps each, evaluation every 512 steps x 2 episodes")
    assert all(line.lstrip().startswith(part) for part, line in zip(PARTS, lines, strict=True)), lines
    bare, runner, evaluation = (float(re.search(r"\s(-?[\d.]+) s\s", line + " ").group(1)) for line in lines[1:4])
    memory = float(re.search(r"([\d.]+) MiB", lines[-1]).group(1))
    assert bare > 0 and runner > evaluation > 0 and memory > 0
