"""`rlnorm study` and `rlnorm train` on bad input: exit code 2, one line on stderr, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlnorm.cli import main

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"


def smoke_with(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(changes)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def assert_refused(argv: list[str], expected: list[str], cwd: Path, capsys) -> None:
    before = files_under(cwd)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    for part in expected:
        assert part in captured.err
    assert files_under(cwd) == before, "nothing may be written"


STUDY_ERRORS = {
    "unknown key": ({"evaluation": {"every": 5}}, ["unknown key 'evaluation'", "did you mean 'eval'"]),
    "unknown algo": ({"algos": {"dqm": ["CartPole-v1"]}}, ["unknown algorithm 'dqm'", "did you mean 'dqn'"]),
    "unknown env": ({"algos": {"ppo": ["Cartpole-v1"]}}, ["unknown environment 'Cartpole-v1'", "'CartPole-v1'"]),
    "unknown norm": ({"norms": ["none", "wn+bn"]}, ["unknown norm 'wn+bn'", "wn+mobn"]),
    "action space": ({"algos": {"dqn": ["Pendulum-v1"]}}, ["dqn cannot act in Pendulum-v1", "Discrete"]),
    "timesteps": ({"budget": {"timesteps": 0}}, ["budget.timesteps: 0 is not a positive integer"]),
    "eval every": ({"eval": {"every": -1, "episodes": 2}}, ["eval.every: -1 is not a positive integer"]),
    "eval episodes": ({"eval": {"every": 5, "episodes": 0}}, ["eval.episodes: 0 is not a positive integer"]),
    "no seeds": ({"seeds": []}, ["seeds: the list is empty"]),
}


@pytest.mark.parametrize("case", list(STUDY_ERRORS))
def test_study_refuses_a_bad_config(case, tmp_path, monkeypatch, capsys):
    changes, expected = STUDY_ERRORS[case]
    config = smoke_with(tmp_path, out=str(tmp_path / "out"), **changes)
    monkeypatch.chdir(tmp_path)
    assert_refused(["study", str(config)], ["rlnorm study: error: ", str(config), *expected], tmp_path, capsys)


def test_study_refuses_malformed_yaml(tmp_path, monkeypatch, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("name: broken\nnorms: [none, bn\n")
    monkeypatch.chdir(tmp_path)
    assert_refused(["study", str(config)], ["broken.yaml: malformed YAML at line"], tmp_path, capsys)


def test_study_refuses_an_output_directory_it_cannot_write(tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "a-file" / "out"
    assert_refused(
        ["study", str(SMOKE), "--out", str(out)], [f"cannot write to {out}", "not a directory"], tmp_path, capsys
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_study_refuses_a_read_only_directory(tmp_path, monkeypatch, capsys):
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    monkeypatch.chdir(tmp_path)
    assert_refused(["study", str(SMOKE), "--out", str(read_only / "out")], ["is not writable"], tmp_path, capsys)


def test_address_needs_the_ray_executor(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["study", str(SMOKE), "--out", str(tmp_path / "out"), "--address", "auto"]
    assert_refused(argv, ["--address is for the ray executor"], tmp_path, capsys)


TRAIN = [
    "train",
    "--algo",
    "ppo",
    "--env",
    "CartPole-v1",
    "--norm",
    "ln",
    "--timesteps",
    "512",
    "--eval-every",
    "256",
    "--eval-episodes",
    "1",
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (["--norm", "lnn"], ["--norm: unknown norm 'lnn'", "did you mean 'ln'"]),
        (["--algo", "td3"], ["--env: td3 cannot act in CartPole-v1"]),
        (["--timesteps", "0"], ["--timesteps: 0"]),
        (["--eval-episodes", "-2"], ["--eval-episodes: -2"]),
        (["--seed", "-1"], ["--seed: -1"]),
        (["--norm-in", "actor", "--algo", "dqn"], ["--norm-in: variant 'ln' has norm_in 'actor', which dqn"]),
        (["--norm-mode", "fixed"], ["--norm-mode: norm_mode 'fixed'", "norm 'ln' has none"]),
    ],
)
def test_train_refuses_bad_settings(change, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_refused([*TRAIN, *change, "--out", "x"], ["rlnorm train: error: ", *expected], tmp_path, capsys)


@pytest.mark.parametrize(("flag", "value"), [("--algo", "ppp"), ("--norm-in", "value"), ("--norm-mode", "sb4")])
def test_train_offers_the_registries_choices(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*TRAIN, flag, value])
    assert exit_.value.code == 2 and f"argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err


def test_train_refuses_a_non_empty_output_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    assert_refused([*TRAIN, "--out", "x"], ["--out x is not empty"], tmp_path, capsys)


def test_train_records_one_run(tmp_path, capsys):
    assert main([*TRAIN, "--seed", "3", "--out", str(tmp_path / "x")]) == 0
    assert "ppo/CartPole-v1/ln/seed-3: done in " in capsys.readouterr().out
    done = json.loads((tmp_path / "x" / "done.json").read_text())
    assert done["run_id"] == "ppo/CartPole-v1/ln/seed-3"


def test_the_command_line_entry_point_exits_2_without_traceback(tmp_path):
    command = [sys.executable, "-m", "rlnorm.cli", "study", str(tmp_path / "missing.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr
        == f"rlnorm study: error: cannot read config {tmp_path / 'missing.yaml'}: No such file or directory\n"
    )
    assert list(tmp_path.iterdir()) == []
