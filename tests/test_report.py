"""The report's rendering: the answer first, comparisons.csv recomputable with scipy, runs.csv, the analysis
tables, where the claims come from, and the command line's --config and --seed."""

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats as sps
from test_results import curve_to, write_bench, write_run, write_study

from rlnorm.analysis.report import analysis_tables, declared, write_report
from rlnorm.analysis.results import FAILED, RUNNING, load_results
from rlnorm.analysis.scales import RANDOM_RETURNS, TaskScale
from rlnorm.cli import main
from rlnorm.study.checks import ConfigError

TEN = np.linspace(-20, 20, 10)
SCALES = {("ppo", "CartPole-v1"): TaskScale(0.0, 500.0, "test", 0.5)}


def cache_random_returns(root, **returns):
    """The random policy's returns, as the report caches them, so that tests measure none."""
    root.mkdir(parents=True, exist_ok=True)
    (root / RANDOM_RETURNS).write_text(json.dumps({env: {"mean": value} for env, value in returns.items()}))


def test_analysis_tables_show_partial_study_and_notes(tmp_path):
    write_study(tmp_path, {"none": [100.0, 110.0, 120.0], "bn": [10.0, 20.0]})
    write_run(tmp_path, "bn", 2, [0.0, 5.0], status=FAILED)
    write_run(tmp_path, "bn", 3, [0.0], status=RUNNING)
    text = analysis_tables(load_results(tmp_path), SCALES)
    assert "| ppo/CartPole-v1/bn/seed-2   | failed  | 100/500" in text
    assert "NonFiniteError: NaN in actor" in text
    assert "| ppo/CartPole-v1/bn/seed-3   | running | 0/500 " in text
    assert "note: 1 run(s) failed" in text
    assert "| ppo/CartPole-v1 | bn      | sb3  | 2/1/1" in text
    assert "## Against the baseline" in text


def test_one_variant_study_prints_tables_and_note(tmp_path):
    write_study(tmp_path, {"bn": [1.0, 2.0]})
    text = analysis_tables(load_results(tmp_path), SCALES)
    assert "note: the study has one variant (bn): nothing to compare" in text
    assert "## Runs" in text and "Against the baseline" not in text


def test_report_files(tmp_path):
    write_study(tmp_path / "results", {"none": [100.0, 110.0, 120.0], "bn": [10.0, 20.0, 30.0]})
    cache_random_returns(tmp_path / "results", **{"CartPole-v1": 20.0})
    md_path, html_path = write_report(load_results(tmp_path / "results"), tmp_path / "report")
    markdown, page = md_path.read_text(), html_path.read_text()
    assert markdown.index("## The answer") < markdown.index("## Verdicts in detail") < markdown.index("Appendix")
    assert "![learning_curves](figures/learning_curves.png)" in markdown
    assert (tmp_path / "report" / "figures" / "learning_curves.pdf").stat().st_size > 0
    assert page.count('src="data:image/png;base64,') == markdown.count("![")
    assert 'src="figures/' not in page  # self-contained
    assert "<th>verdict</th>" in page and "cannot be significant with n = 3 vs 3" in page
    # Every run is below half of CartPole's threshold: the failure rates are all 1, and the report says so.
    assert "ppo/CartPole-v1: every finished run is below the failure threshold (return 248)" in markdown
    assert "versions: python 3.11, torch 2.13.0" in markdown and "host testhost" in markdown
    assert "wall time: 60 s (1.0 min) summed over 6 recorded runs (mean 10 s per run" in markdown
    assert "What the runs cost per task: their wall time, and the shares of it spent evaluating" in markdown


def test_the_cost_of_each_task_is_its_wall_time_and_the_shares_spent_evaluating_and_probing(tmp_path):
    from rlnorm.analysis.results import TaskCost, task_costs

    for seed in range(3):  # each: 10 s of wall time, 1 s evaluating, 0.5 s probing
        write_run(tmp_path, "none", seed, curve_to(400.0))
    write_run(tmp_path, "none", 3, [0.0], status=RUNNING)  # no wall time yet: left out
    done = tmp_path / "ppo/CartPole-v1/none/seed-2/done.json"
    record = {**json.loads(done.read_text()), "wall_time_s": 40.0}
    del record["probe_s"]  # not recorded: its run is left out of the probe's share
    done.write_text(json.dumps(record))
    (cost,) = task_costs(load_results(tmp_path))
    assert cost == TaskCost(("ppo", "CartPole-v1"), runs=3, wall_time_s=60.0, evaluation_share=3 / 60,
                            probe_share=1 / 20)
    write_run(tmp_path / "untimed", "none", 0, [0.0], status=RUNNING)
    (untimed,) = task_costs(load_results(tmp_path / "untimed"))
    assert untimed.runs == 0 and math.isnan(untimed.evaluation_share) and math.isnan(untimed.probe_share)


def test_report_writes_the_per_run_summary_as_plain_numbers(tmp_path):
    write_study(tmp_path / "results", {"none": [100.0, 110.0], "bn": [10.0]})
    write_run(tmp_path / "results", "bn", 1, [5.0], status=RUNNING)
    cache_random_returns(tmp_path / "results", **{"CartPole-v1": 20.0})
    write_report(load_results(tmp_path / "results"), tmp_path / "report")
    with open(tmp_path / "report" / "runs.csv") as file:
        rows = {row["run"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"ppo/CartPole-v1/none/seed-0", "ppo/CartPole-v1/none/seed-1",
                         "ppo/CartPole-v1/bn/seed-0", "ppo/CartPole-v1/bn/seed-1"}
    done = rows["ppo/CartPole-v1/none/seed-1"]
    assert (done["norm"], done["norm_mode"], done["seed"], done["status"]) == ("none", "sb3", "1", "done")
    assert float(done["final"]) == pytest.approx(110.0) and float(done["wall_time_s"]) == 10.0
    assert float(done["eval_spread"]) == pytest.approx(1.0)
    assert done["hardware"] == "Test CPU, 2 cores, 24 GiB"
    running = rows["ppo/CartPole-v1/bn/seed-1"]
    assert running["status"] == RUNNING and running["final"] == ""  # one evaluation: no final yet
    assert done["mode_mismatch"] == "" and done["mode_mismatch_max"] == ""  # not logged


def test_runs_csv_summarizes_each_runs_mode_mismatch(tmp_path):
    mismatch = [(100, 0.01, 0.02), (200, 0.03, 0.5), (300, 0.05, 0.1)]
    write_run(tmp_path / "results", "bn", 0, [10.0, 20.0], mismatch=mismatch)
    cache_random_returns(tmp_path / "results", **{"CartPole-v1": 20.0})
    write_report(load_results(tmp_path / "results"), tmp_path / "report")
    with open(tmp_path / "report" / "runs.csv") as file:
        (row,) = csv.DictReader(file)
    assert float(row["mode_mismatch"]) == pytest.approx(0.03)  # mean of the updates' means
    assert float(row["mode_mismatch_max"]) == pytest.approx(0.5)  # the largest single |r - 1|


def test_a_report_of_an_unfinished_study_says_interim_in_its_title(tmp_path):
    write_study(tmp_path / "results", {"none": [100.0, 110.0], "bn": [10.0, 20.0]})
    write_run(tmp_path / "results", "bn", 2, [0.0, 5.0], status=RUNNING)
    cache_random_returns(tmp_path / "results", **{"CartPole-v1": 20.0})
    cache_random_returns(tmp_path / "finished", **{"CartPole-v1": 20.0})
    study = {"tasks": [{"algo": "ppo", "env_id": "CartPole-v1", "seeds": [0, 1, 2, 3]}],
             "variants": [{"name": "none"}, {"name": "bn"}]}
    (tmp_path / "results" / "study.json").write_text(json.dumps(study))
    md_path, _ = write_report(load_results(tmp_path / "results"), tmp_path / "report")
    assert md_path.read_text().splitlines()[0] == "# rlnorm report: results (interim: 4 of 8 runs finished)"
    (tmp_path / "results" / "study.json").unlink()
    md_path, _ = write_report(load_results(tmp_path / "results"), tmp_path / "report")
    assert md_path.read_text().splitlines()[0] == "# rlnorm report: results (interim: 4 of 5 runs finished)"
    write_study(tmp_path / "finished", {"none": [100.0, 110.0], "bn": [10.0, 20.0]})
    md_path, _ = write_report(load_results(tmp_path / "finished"), tmp_path / "report")
    assert md_path.read_text().splitlines()[0] == "# rlnorm report: finished"


def test_comparisons_csv_is_recomputable_with_scipy_from_runs_csv(tmp_path):
    rng = np.random.default_rng(1)
    write_study(tmp_path / "results", {"none": list(420 + 40 * rng.standard_normal(8)),
                                       "bn": list(150 + 150 * rng.standard_normal(8))})
    cache_random_returns(tmp_path / "results", **{"CartPole-v1": 20.0})
    write_report(load_results(tmp_path / "results"), tmp_path / "report")
    with open(tmp_path / "report" / "runs.csv") as file:
        finals = {}
        for row in csv.DictReader(file):
            finals.setdefault(row["variant"], []).append(float(row["final"]))
    with open(tmp_path / "report" / "comparisons.csv") as file:
        rows = {(row["quantity"], row["scope"]): row for row in csv.DictReader(file)}
    final = rows["final return", "ppo/CartPole-v1"]
    assert (final["x"], final["y"], final["n_x"], final["n_y"], final["family"]) == ("bn", "none", "8", "8", "primary")
    exact = sps.permutation_test((finals["bn"], finals["none"]), lambda a, b, axis: sps.mannwhitneyu(
        a, b, axis=axis).statistic, n_resamples=np.inf, vectorized=True)
    assert float(final["p"]) == pytest.approx(exact.pvalue, rel=1e-5)
    failure = rows["failure rate", "ppo/CartPole-v1"]
    threshold = 20.0 + 0.5 * (475.0 - 20.0)  # random + half the way to CartPole's reward threshold
    table = [[sum(f < threshold for f in finals["bn"]), sum(f < threshold for f in finals["none"])]]
    table.append([8 - table[0][0], 8 - table[0][1]])
    assert float(failure["p"]) == pytest.approx(sps.barnard_exact(table).pvalue, rel=1e-5)


def test_claims_come_from_a_config_or_the_study_and_a_bad_one_is_one_line(tmp_path):
    write_study(tmp_path, {"none": list(400 + TEN), "bn": list(100 + TEN)})
    results = load_results(tmp_path)
    assert declared(results).source == "the default claims (the config declares none)"
    config = tmp_path / "claims.yaml"
    config.write_text("claims:\n  - {name: mine, x: bn, y: none, quantity: final return, direction: less}\n"
                      "scores: {reference: {CartPole-v1: 500}}\n")
    mine = declared(results, config)
    assert [c.name for c in mine.claims] == ["mine"] and mine.scores.reference == {"CartPole-v1": 500.0}
    config.write_text("claims:\n  - {name: mine, x: bm, y: none, quantity: final return, direction: less}\n")
    with pytest.raises(ConfigError, match="claims.yaml: claims.0. .mine.: unknown variant 'bm' .did you mean 'bn'"):
        declared(results, config)


def test_report_command_takes_a_seed_and_a_config(tmp_path, capsys):
    write_study(tmp_path / "results", {"none": list(400 + TEN), "bn": list(100 + TEN)})
    cache_random_returns(tmp_path / "results", **{"CartPole-v1": 20.0})
    config = tmp_path / "claims.yaml"
    config.write_text("claims:\n  - {name: mine, x: bn, y: none, quantity: final return, direction: less}\n")
    assert main(["report", str(tmp_path / "results"), "--out", str(tmp_path / "r"), "--seed", "3",
                 "--config", str(config)]) == 0
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert f"--seed 3 --config {config}`" in markdown and "**mine** (ppo/CartPole-v1): **supported**" in markdown
    config.write_text("claims: [{name: mine, x: bn}]\n")
    assert main(["report", str(tmp_path / "results"), "--config", str(config)]) == 2
    assert "missing key 'quantity'" in capsys.readouterr().err


def test_a_crossq_reference_cell_is_in_the_report(tmp_path):
    for seed, offset in enumerate(TEN):
        write_run(tmp_path, "none", seed, curve_to(-150 + offset), algo="sac", env_id="Pendulum-v1")
        write_run(tmp_path, "crossq", seed, curve_to(-150 + offset), norm="none", algo="crossq", env_id="Pendulum-v1")
    cache_random_returns(tmp_path, **{"Pendulum-v1": -1200.0})
    md_path, _ = write_report(load_results(tmp_path), tmp_path / "report")
    markdown = md_path.read_text()
    assert "## Reference cells: batch statistics used as published (secondary family)" in markdown
    assert "| crossq/Pendulum-v1 | crossq | sac none |" in markdown


def test_a_noise_dose_claim_gets_its_dose_response_section(tmp_path):
    from test_analysis import write_probed

    for variant, k, level, noise in (("bn", 1, 400, 0.1), ("bn-g4", 4, 300, 0.2)):
        write_probed(tmp_path / "results", variant, level, noise, norm_kwargs={"ghost_batches": k} if k > 1 else None)
    cache_random_returns(tmp_path / "results", **{"CartPole-v1": 20.0})
    config = tmp_path / "claims.yaml"
    config.write_text("claims:\n  - {name: dose, variants: [bn, bn-g4], quantity: final return, direction: less}\n")
    md_path, _ = write_report(load_results(tmp_path / "results"), tmp_path / "report", config)
    markdown = md_path.read_text()
    section = markdown.split("## Noise dose-response")[1].split("## ")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ppo/")]
    assert [row[:5] for row in rows] == [["ppo/CartPole-v1", "bn", "bn", "1", "10"],
                                         ["ppo/CartPole-v1", "bn", "bn-g4", "4", "10"]]


def test_an_injected_noise_chain_on_a_whole_pool_minibatch_gets_its_dose_rows(tmp_path):
    # PPO's zoo CartPole: the first dose (none injected) has no noise to measure on its whole-pool minibatch; the
    # chain stays, that dose's noise n/a, and the noise added is measured from the first dose that has some.
    for variant, dose, level in (("bn-fixed", 0, 400), ("bn-fixed-n1", 1, 350), ("bn-fixed-n4", 4, 300)):
        for seed, offset in enumerate(TEN):
            noise = 0.1 * dose**0.5 * (1 + seed / 100)
            probe = [(0, "actor", "output", 256, 256, noise, 0.0, noise, 0.0),
                     (5000, "actor", "output", 256, 256, noise, 0.0, noise, 0.0)]
            write_run(tmp_path / "results", variant, seed, curve_to(level + offset), norm="bn", probe=probe,
                      norm_kwargs={"injected_noise": dose} if dose else None)
    cache_random_returns(tmp_path / "results", **{"CartPole-v1": 20.0})
    config = tmp_path / "claims.yaml"
    config.write_text("claims:\n  - {name: dose, variants: [bn-fixed, bn-fixed-n1, bn-fixed-n4], "
                      "quantity: final return, direction: less}\n")
    md_path, _ = write_report(load_results(tmp_path / "results"), tmp_path / "report", config)
    section = md_path.read_text().split("## Noise dose-response")[1].split("## ")[0]
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
             if line.startswith("| ")]
    assert table[0][3:6] == ["ghost batches", "injected noise", "runs"]
    assert [row[2:6] for row in table[1:]] == [["bn-fixed", "1", "0", "10"], ["bn-fixed-n1", "1", "1", "10"],
                                               ["bn-fixed-n4", "1", "4", "10"]]
    noise_added = [row[7].split(" ")[0] for row in table[1:]]
    assert noise_added[0] in ("-", "nan") and noise_added[1] == "1" and noise_added[2] == "2"
    with open(tmp_path / "report" / "runs.csv") as file:
        runs = list(csv.DictReader(file))
    assert {(row["variant"], row["injected_noise"]) for row in runs} == {("bn-fixed", "0.0"), ("bn-fixed-n1", "1.0"),
                                                                         ("bn-fixed-n4", "4.0")}


def test_a_bench_record_is_named_in_the_setup(tmp_path):
    write_study(tmp_path, {"wn": list(300 + TEN), "bn": list(300 + TEN)})
    write_bench(tmp_path, {"ppo/CartPole-v1": {"wn": [1.0] * 12, "bn": [1.1] * 12}})
    cache_random_returns(tmp_path, **{"CartPole-v1": 20.0})
    md_path, _ = write_report(load_results(tmp_path), tmp_path / "report")
    assert "compute cost: `rlnorm bench --repeats 10` (bench.json), on test machine" in md_path.read_text()
    # Written elsewhere (another machine's path), the record is named where it lies now.
    record = json.loads((tmp_path / "bench.json").read_text())
    (tmp_path / "bench.json").write_text(json.dumps({**record, "command": "rlnorm bench --out /elsewhere/b.json"}))
    md_path, _ = write_report(load_results(tmp_path), tmp_path / "report")
    assert f"compute cost: `rlnorm bench --out {tmp_path / 'bench.json'}` (bench.json)" in md_path.read_text()


def test_the_verdict_matrix_has_a_row_per_claim_and_a_column_per_scope(tmp_path):
    from rlnorm.analysis.report import verdict_matrix
    from rlnorm.analysis.verdicts import analyze

    for env_id in ("CartPole-v1", "Acrobot-v1"):
        write_study(tmp_path, {"none": list(400 + TEN), "bn": list(100 + TEN)}, env_id=env_id)
    results = load_results(tmp_path)
    scale = SCALES["ppo", "CartPole-v1"]
    headers, rows = verdict_matrix(analyze(results, declared(results).claims, {t: scale for t in results.tasks}))
    assert headers[0] == "claim" and headers[-1] == "all tasks"
    assert set(headers[1:-1]) == {"ppo/CartPole-v1", "ppo/Acrobot-v1"}
    assert [row[0] for row in rows] == ["BN lowers the final return", "BN raises return variance"]
    assert rows[0][1:] == ["**supported**"] * 3


def test_a_mechanism_step_too_small_to_decide_says_so_rather_than_no_effect(tmp_path):
    from test_analysis import run_analysis

    from rlnorm.analysis.report import _mechanism_sentences

    for root, seeds in ((tmp_path / "ten", TEN), (tmp_path / "two", TEN[:2])):
        for seed, offset in enumerate(seeds):
            for name, mode, level in (("bn", "sb3", 100), ("bn-consistent", "consistent", 100),
                                      ("bn-frozen", "frozen", 500)):
                write_run(root, name, seed, curve_to(level + offset), norm="bn", norm_mode=mode)
    ten = _mechanism_sentences(run_analysis(tmp_path / "ten"))
    assert ten[0].startswith("ppo/CartPole-v1 bn: bn -> bn-consistent: no effect of (b) the mode switch shown (")
    assert ten[1].startswith("ppo/CartPole-v1 bn: bn-consistent -> bn-frozen: removing (a) minibatch noise raises")
    two = _mechanism_sentences(run_analysis(tmp_path / "two"))
    # 2 against 2 runs: the smallest two-sided p is 1/3, whatever the returns.
    assert all("cannot be significant with n = 2 vs 2 (smallest p " in sentence for sentence in two)
    assert len(two) == 2 and not any("no effect" in sentence or "raises" in sentence for sentence in two)


def test_the_setup_counts_the_runs_each_processor_made_when_there_are_several(tmp_path):
    from rlnorm.analysis.report import setup_blocks

    for seed in range(3):
        write_run(tmp_path, "none", seed, curve_to(400.0))

    def hardware_fact():
        facts = next(block for block in setup_blocks(load_results(tmp_path)) if block[0] == "list")
        return next(fact for fact in facts[1:] if fact.startswith("hardware:"))

    assert hardware_fact().startswith("hardware: host testhost (Test CPU, 2 cores, 24 GiB); peak memory")
    done = tmp_path / "ppo/CartPole-v1/none/seed-2/done.json"
    done.write_text(json.dumps({**json.loads(done.read_text()), "hardware": "Other CPU, 4 cores"}))
    assert hardware_fact().startswith("hardware: host testhost (Other CPU, 4 cores), 1 run, "
                                      "testhost (Test CPU, 2 cores, 24 GiB), 2 runs; peak memory")
