"""The analysis subcommands of `rlnorm`, end to end on a real (smoke) study."""

import json
import tempfile

import pytest

from rlnorm.cli import main


def test_analyze_prints_the_tables(smoke_study, capsys):
    assert main(["analyze", str(smoke_study)]) == 0
    printed = capsys.readouterr().out
    assert "ppo/CartPole-v1/bn/seed-1" in printed and "Against the baseline" in printed


@pytest.mark.slow
def test_plot_and_report_write_their_files(smoke_study, tmp_path, capsys):
    assert main(["plot", str(smoke_study), "--out", str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "learning_curves.png").stat().st_size > 0
    assert main(["report", str(smoke_study), "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert "data:image/png;base64" in html and "verdict" in html.lower()
    assert (tmp_path / "report" / "comparisons.csv").read_text().startswith("scope,claim,x,y,quantity,n_x,n_y,")
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert (
        f"To regenerate: the runs with `rlnorm study configs/smoke.yaml` (it keeps finished runs), this report "
        f"with `rlnorm report {smoke_study} --out {tmp_path / 'report'} --seed 0`." in markdown
    )


def test_probe_on_a_saved_model(smoke_study, capsys):
    assert main(["probe", str(smoke_study / "dqn/CartPole-v1/bn/seed-0"), "--steps", "200"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    output = next(row for row in rows if row[2].strip() == "output")
    assert float(output[4]) > 1e-3  # bn on DQN's minibatches of 64 from 200 states: real noise
    assert main(["probe", str(smoke_study / "dqn/CartPole-v1/none/seed-0"), "--steps", "200"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert float(rows[0][4]) == 0.0


def test_analysis_of_a_directory_that_is_not_a_study_is_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    assert main(["probe", str(tmp_path)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("rlnorm ") for line in errors)


def test_bench_prints_each_norm(capsys):
    assert main(["bench", "--repeats", "1", "--ppo-steps", "0", "--sac-steps", "0"]) == 0
    printed = capsys.readouterr().out
    for norm in ("none", "bn", "mobn", "wn", "wn+mobn", "ln"):
        assert f"| {norm} |" in printed


def test_bench_records_paired_training_times_for_the_report(tmp_path, capsys):
    out = tmp_path / "results" / "bench.json"
    assert main(["bench", "--repeats", "2", "--ppo-steps", "0", "--sac-steps", "5", "--ghost-batches", "4",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| bn/ghost4 vs bn |" in printed and "| wn+mobn/ghost4 vs wn+mobn |" in printed
    record = json.loads(out.read_text())
    assert record["command"] == f"rlnorm bench --repeats 2 --ppo-steps 0 --sac-steps 5 --ghost-batches 4 --out {out}"
    assert len(record["code"]["source_hash"]) == 64
    timed = record["training_time_s"]["sac/Pendulum-v1"]
    assert timed["timesteps"] == 5
    assert set(timed["times"]) == {"MlpPolicy", "MlpPolicy+fused", "none", "bn", "mobn", "wn", "wn+mobn", "ln",
                                   "bn/ghost4", "mobn/ghost4", "wn+mobn/ghost4"}
    assert all(len(times) == 2 and min(times) > 0 for times in timed["times"].values())
    assert main(["bench", "--ppo-steps", "0", "--sac-steps", "0", "--out", str(out)]) == 2
    assert "--sac-steps" in capsys.readouterr().err


def test_bench_speed_measures_each_task_and_names_a_bad_one(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("SB3_LOGDIR")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["bench", "--speed", "ppo:CartPole-v1", "--speed", "dqn:CartPole-v1:bn"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(row[1].strip(), row[3].strip()) for row in rows] == [("ppo", "none"), ("dqn", "bn")]
    assert all(float(row[4]) > 0 for row in rows)
    assert list(tmp_path.glob("SB3-*")) == []  # no SB3-<time> directory per timed model in the temp dir
    assert main(["bench", "--speed", "sac:CartPole-v2"]) == 2
    assert "CartPole-v2" in capsys.readouterr().err


def test_norms_lists_every_registered_norm_with_its_description(capsys):
    assert main(["norms"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines][:10] == ["none", "bn", "mobn", "wn", "wn+mobn", "ln", "brn", "rms",
                                                        "sn", "pnorm"]
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)


def test_version_and_a_description_per_command(capsys):
    from rlnorm import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"rlnorm {__version__}"
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    assert "the minibatch-noise probe on a finished run's saved model" in capsys.readouterr().out.splitlines()[2]
