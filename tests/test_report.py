"""Verdicts, the mechanism ladder, the analysis tables and the report files, on synthetic studies."""

import csv
import json
import math

import numpy as np
import pytest
from test_results import curve_to, write_bench, write_run, write_study

from rlnorm.report import (
    ALPHA,
    CONTRADICTED,
    FINAL,
    INCONCLUSIVE,
    SUPPORTED,
    analysis_tables,
    analyze,
    verdict_matrix,
    write_report,
)
from rlnorm.results import FAILED, RUNNING, ResultsError, load_results

TASK = "ppo/CartPole-v1"
TEN = np.linspace(-20, 20, 10)
"""Ten seeds' offsets from a variant's level: the same spread for every variant."""


def verdict(analysis, claim: str, scope: str = TASK):
    return next(v for v in analysis.verdicts if v.claim == claim and v.scope == scope)


def test_bn_clearly_below_none_supports_claim_1(tmp_path):
    write_study(tmp_path, {"none": list(500 + TEN), "bn": list(100 + TEN)})
    analysis = analyze(load_results(tmp_path))
    claim = verdict(analysis, "1")
    assert claim.verdict == SUPPORTED
    level, spread = claim.comparisons
    assert (level.x, level.y, level.quantity) == ("bn", "none", FINAL)
    assert level.probability.value == 0.0 and level.probability.high < 0.5
    assert level.p_adjusted < 0.05 and level.verdict == SUPPORTED
    # Levels 400 apart never overlap: the spreads are not compared (docs/method.md#verdicts).
    assert spread.blocked.startswith("final returns do not overlap")
    assert "IQM 100 vs 500, difference -400" in level.detail
    headers, rows = verdict_matrix(analysis.verdicts)
    assert headers[:2] == ["scope", "1. BN hurts RL"] and rows[0][:2] == [TASK, "**supported**"]
    assert rows[0][headers.index("3. Mean-only BN's noise is milder than BN's (probe)")] == "not measured"


def test_bn_clearly_above_none_contradicts_claim_1(tmp_path):
    write_study(tmp_path, {"none": list(100 + TEN), "bn": list(500 + TEN)})
    assert verdict(analyze(load_results(tmp_path)), "1").verdict == CONTRADICTED


def test_identical_variants_are_inconclusive(tmp_path):
    write_study(tmp_path, {"none": list(300 + TEN), "bn": list(300 + TEN)})
    claim = verdict(analyze(load_results(tmp_path)), "1")
    assert claim.verdict == INCONCLUSIVE
    level, spread = claim.comparisons
    assert level.probability.value == 0.5 and level.p_adjusted == 1.0
    assert spread.blocked is None and spread.verdict == INCONCLUSIVE


def test_three_seeds_cannot_support_a_claim(tmp_path):
    # Perfectly separated, but with 3 runs each the exact Mann-Whitney p-value is at least 0.1.
    write_study(tmp_path, {"none": [500.0, 510.0, 520.0], "bn": [10.0, 20.0, 30.0]})
    claim = verdict(analyze(load_results(tmp_path)), "1")
    assert claim.verdict == INCONCLUSIVE
    assert claim.comparisons[0].pvalue == pytest.approx(0.1)


def test_higher_spread_at_comparable_levels_supports_claim_1(tmp_path):
    write_study(tmp_path, {"none": list(300 + TEN), "bn": list(300 + 10 * TEN)})
    claim = verdict(analyze(load_results(tmp_path)), "1")
    level, spread = claim.comparisons
    assert level.verdict == INCONCLUSIVE and spread.verdict == SUPPORTED
    assert claim.verdict == SUPPORTED
    assert spread.detail == "std 135 vs 13.5"


def test_overall_verdict_pools_tasks_and_holm_corrects_one_family(tmp_path):
    for env in ("CartPole-v1", "Acrobot-v1"):
        write_study(tmp_path, {"none": list(500 + TEN), "bn": list(100 + TEN)}, env_id=env)
    analysis = analyze(load_results(tmp_path))
    overall = verdict(analysis, "1", "all tasks")
    assert overall.verdict == SUPPORTED
    assert overall.comparisons[0].detail == "over 2 tasks"
    # 3 level comparisons are made (2 tasks, overall); every spread is blocked; Holm multiplies the
    # smallest p-value by 3.
    made = [c for v in analysis.verdicts for c in v.comparisons if not c.blocked]
    assert len(made) == 3
    smallest = min(made, key=lambda c: c.pvalue)
    assert smallest.p_adjusted == pytest.approx(3 * smallest.pvalue)


def test_a_pooled_comparison_is_exact_and_can_reach_significance_in_a_family_of_a_hundred(tmp_path):
    # Two tasks where every bn run is below every none run: the exact stratified p-value is the most extreme
    # labelling of both tasks, in either direction, out of C(20, 10)^2; no random permutations.
    for env_id in ("CartPole-v1", "Acrobot-v1"):
        write_study(tmp_path, {"none": list(500 + TEN), "bn": list(100 + TEN)}, env_id=env_id)
    pooled = verdict(analyze(load_results(tmp_path)), "1", "all tasks").comparisons[0]
    assert pooled.pvalue == pytest.approx(2 / math.comb(20, 10) ** 2, rel=1e-9)
    assert 100 * pooled.pvalue < ALPHA


def test_a_pooled_comparison_that_only_one_task_qualifies_for_names_it(tmp_path):
    # Spreads are compared where levels overlap: on CartPole (same level) but not on Acrobot.
    write_study(tmp_path, {"none": list(300 + TEN), "bn": list(300 + 3 * TEN)}, env_id="CartPole-v1")
    write_study(tmp_path, {"none": list(500 + TEN), "bn": list(100 + TEN)}, env_id="Acrobot-v1")
    spread = verdict(analyze(load_results(tmp_path)), "1", "all tasks").comparisons[1]
    assert spread.task is None and spread.detail.startswith("ppo/CartPole-v1 only: std ")


def test_probe_and_cost_claims(tmp_path):
    for variant, noise, wall in (("bn", 0.2, 20.0), ("mobn", 0.1, 20.0), ("wn", 0.0, 10.0), ("wn+mobn", 0.1, 20.0)):
        for seed, offset in enumerate(TEN):
            probe = [(0, "actor", "output", noise + offset / 1000, 0.0)]
            write_run(
                tmp_path,
                variant,
                seed,
                curve_to(300 + offset),
                norm=variant,
                probe=probe,
                wall_time_s=wall + offset / 100,
            )
    analysis = analyze(load_results(tmp_path))
    assert verdict(analysis, "3").verdict == SUPPORTED
    cost = verdict(analysis, "4")
    assert cost.verdict == SUPPORTED and "rlnorm bench" in cost.note
    # Claim 2: less noise, but the same spread and level: not all parts hold.
    gentler = verdict(analysis, "2")
    assert gentler.verdict == INCONCLUSIVE
    assert "across-seed spread" in gentler.note


def test_claims_without_their_variants_are_not_measured(tmp_path):
    write_study(tmp_path, {"none": [1.0, 2.0], "bn": [1.0, 2.0]})
    analysis = analyze(load_results(tmp_path))
    assert verdict(analysis, "3").verdict == "not measured"
    assert verdict(analysis, "3").note == "no mobn variant"
    assert "rlnorm bench" in verdict(analysis, "4").note


def write_ladder(root, finals: dict[str, float], modes=("sb3", "consistent", "frozen", "fixed")):
    for seed, offset in enumerate(TEN):
        write_run(root, "none", seed, curve_to(finals["none"] + offset))
        for mode in modes:
            name = "bn" if mode == "sb3" else f"bn-{mode}"
            write_run(root, name, seed, curve_to(finals[mode] + offset), norm="bn", norm_mode=mode)


def test_ladder_blames_chasing_statistics(tmp_path):
    # The pilot's pattern: only fixed statistics recover none's return.
    write_ladder(tmp_path, {"none": 500, "sb3": 100, "consistent": 100, "frozen": 100, "fixed": 500})
    (ladder,) = analyze(load_results(tmp_path)).ladders
    assert [label for label, _ in ladder.rungs] == ["none", "bn sb3", "bn consistent", "bn frozen", "bn fixed"]
    assert ladder.removed == ["", "b", "a", "c"]
    assert [step.expected for step in ladder.steps] == [None, "greater", "greater", "greater"]
    # The gap none -> sb3 tests no mechanism: its table says which way it goes.
    assert [step.outcome for step in ladder.steps[:2]] == ["X lower (significant)", "inconclusive"]
    by_letter = {v.claim: v for v in ladder.verdicts}
    assert by_letter["c"].verdict == SUPPORTED
    assert by_letter["c"].note.startswith("removing chasing statistics raises the final return: bn-frozen -> bn-fixed")
    assert by_letter["a"].verdict == INCONCLUSIVE and by_letter["b"].verdict == INCONCLUSIVE
    assert by_letter["a"].note.startswith("no effect of minibatch noise shown")


def test_ladder_with_noise_that_helps_and_a_missing_rung(tmp_path):
    write_ladder(tmp_path, {"none": 300, "sb3": 300, "frozen": 100, "fixed": 100}, modes=("sb3", "frozen", "fixed"))
    (ladder,) = analyze(load_results(tmp_path)).ladders
    assert ladder.removed == ["", "ab", "c"]
    by_letter = {v.claim: v for v in ladder.verdicts}
    # sb3 -> frozen removes (a) and (b) together: they are not separated.
    assert by_letter["a"].verdict == "not measured" and "(a) and (b) together" in by_letter["a"].note
    assert by_letter["c"].verdict == INCONCLUSIVE


def test_crossq_is_compared_with_sac_none_and_bn_on_the_same_environment(tmp_path):
    pendulum = {"algo": "sac", "env_id": "Pendulum-v1"}
    for seed, offset in enumerate(TEN):
        write_run(tmp_path, "none", seed, curve_to(-150 + offset), **pendulum)
        write_run(tmp_path, "bn", seed, curve_to(-1300 + offset), **pendulum)
        write_run(tmp_path, "crossq", seed, curve_to(-150 + offset), norm="none", algo="crossq", env_id="Pendulum-v1")
    analysis = analyze(load_results(tmp_path))
    assert [(c.scope, c.x, c.y, c.outcome) for c in analysis.references] == [
        ("crossq/Pendulum-v1", "crossq", "sac none", "no significant difference"),
        ("crossq/Pendulum-v1", "crossq", "sac bn", "X higher (significant)"),
    ]
    assert {v.scope for v in analysis.verdicts} == {"sac/Pendulum-v1"}  # the claims are about norms
    # In the report's Holm family: each p-value is multiplied by up to the family's size.
    assert len(analysis.family) > 2 and analysis.references[1].p_adjusted > analysis.references[1].pvalue
    md_path, _ = write_report(load_results(tmp_path), tmp_path / "report")
    markdown = md_path.read_text()
    assert "## Reference cells: batch statistics used as published" in markdown
    assert "- crossq against sac bn: IQM -150 vs -1.3e+03" in markdown


def test_a_reference_cell_with_another_budget_is_not_compared(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "none", seed, curve_to(-150), algo="sac", env_id="Pendulum-v1")
        write_run(tmp_path, "crossq", seed, curve_to(-150)[:5], norm="none", algo="crossq", env_id="Pendulum-v1",
                  steps=(0, 100, 200, 300, 400))
    (comparison,) = analyze(load_results(tmp_path)).references
    assert comparison.blocked == "runs end at different steps ([400, 500]): different budgets"
    assert math.isnan(comparison.p_adjusted)


def test_analysis_tables_show_partial_study_and_notes(tmp_path):
    write_study(tmp_path, {"none": [100.0, 110.0, 120.0], "bn": [10.0, 20.0]})
    write_run(tmp_path, "bn", 2, [0.0, 5.0], status=FAILED)
    write_run(tmp_path, "bn", 3, [0.0], status=RUNNING)
    text = analysis_tables(load_results(tmp_path))
    assert "| ppo/CartPole-v1/bn/seed-2   | failed  | 100/500" in text
    assert "NonFiniteError: NaN in actor" in text
    assert "| ppo/CartPole-v1/bn/seed-3   | running | 0/500 " in text
    assert "note: 1 run(s) failed" in text
    assert "| ppo/CartPole-v1 | bn      | sb3  | 2/1/1" in text
    assert "## Against the baseline" in text


def test_one_variant_study_prints_tables_and_note(tmp_path):
    write_study(tmp_path, {"bn": [1.0, 2.0]})
    text = analysis_tables(load_results(tmp_path))
    assert "note: the study has one variant (bn): nothing to compare" in text
    assert "## Runs" in text and "Against the baseline" not in text


def test_incomparable_task_gets_no_verdict(tmp_path):
    write_study(tmp_path, {"none": list(500 + TEN)})
    write_study(tmp_path, {"bn": list(100 + TEN)}, steps=(0, 200, 400, 600, 800, 1000))
    claim = verdict(analyze(load_results(tmp_path)), "1")
    assert claim.verdict == INCONCLUSIVE
    assert claim.comparisons[0].blocked == "the finished runs of this task end at different steps"


def test_report_files(tmp_path):
    write_study(tmp_path / "results", {"none": [100.0, 110.0, 120.0], "bn": [10.0, 20.0, 30.0]})
    md_path, html_path = write_report(load_results(tmp_path / "results"), tmp_path / "report")
    markdown, page = md_path.read_text(), html_path.read_text()
    assert "## Verdicts" in markdown
    assert "![learning_curves](figures/learning_curves.png)" in markdown
    assert (tmp_path / "report" / "figures" / "learning_curves.pdf").stat().st_size > 0
    assert page.count('src="data:image/png;base64,') == markdown.count("![")
    assert 'src="figures/' not in page  # self-contained
    assert "<th>verdict</th>" in page and "<b>inconclusive</b>" in page
    assert "versions: python 3.11, torch 2.13.0" in markdown and "host testhost" in markdown
    assert "wall time: 60 s (1.0 min) summed over 6 recorded runs (mean 10 s per run" in markdown


def test_report_writes_the_per_run_summary_as_plain_numbers(tmp_path):
    write_study(tmp_path / "results", {"none": [100.0, 110.0], "bn": [10.0]})
    write_run(tmp_path / "results", "bn", 1, [5.0], status=RUNNING)
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


def test_a_report_of_an_unfinished_study_says_interim_in_its_title(tmp_path):
    write_study(tmp_path / "results", {"none": [100.0, 110.0], "bn": [10.0, 20.0]})
    write_run(tmp_path / "results", "bn", 2, [0.0, 5.0], status=RUNNING)
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


def test_a_bench_record_decides_the_cost_claim_instead_of_the_study_runs(tmp_path):
    # The study runs say wn is slower (a busy machine); the bench's paired repeats say it is faster.
    for variant, wall in (("bn", 10.0), ("wn", 20.0)):
        for seed, offset in enumerate(TEN):
            write_run(tmp_path, variant, seed, curve_to(300 + offset), norm=variant, wall_time_s=wall + offset / 100)
    repeats = np.linspace(0.0, 0.1, 10)
    write_bench(tmp_path, {"ppo/CartPole-v1": {"wn": list(10 + repeats), "bn": list(11 + repeats)},
                           "sac/Pendulum-v1": {"wn": list(20 + repeats), "bn": list(20.005 + repeats)}})
    analysis = analyze(load_results(tmp_path))
    assert verdict(analysis, "4", "ppo/CartPole-v1").verdict == SUPPORTED
    assert "paired repeats of `rlnorm bench`" in verdict(analysis, "4", "ppo/CartPole-v1").note
    assert verdict(analysis, "4", "sac/Pendulum-v1").verdict == INCONCLUSIVE  # overlapping times
    overall = verdict(analysis, "4", "all tasks")
    assert overall.comparisons[0].task is None and not math.isnan(overall.comparisons[0].p_adjusted)
    md_path, _ = write_report(load_results(tmp_path), tmp_path / "report")
    assert "compute cost (claim 4): `rlnorm bench --repeats 10` (bench.json), on test machine" in md_path.read_text()
    write_run(tmp_path, "none", 0, algo="dqn")  # a task the bench does not time
    headers, rows = verdict_matrix(analyze(load_results(tmp_path)).verdicts)
    dqn = dict(zip(headers, next(row for row in rows if row[0] == "dqn/CartPole-v1"), strict=True))
    assert dqn["4. WN is cheaper to compute than BN"] == "not measured"

    write_bench(tmp_path, {"ppo/CartPole-v1": {"none": [1.0, 2.0]}})
    missing = verdict(analyze(load_results(tmp_path)), "4", "all tasks")
    assert missing.verdict == "not measured" and "no training times of wn and bn" in missing.note
    (tmp_path / "bench.json").write_text(json.dumps({"training_time_s": {"ppo/CartPole-v1": [1.0, 2.0]}}))
    with pytest.raises(ResultsError, match="bench.json is not a bench record: expected training_time_s"):
        load_results(tmp_path)


def test_a_comparison_its_sample_sizes_cannot_make_significant_says_so(tmp_path):
    # 3 against 3 runs: the smallest two-sided exact p-value is 2 / C(6, 3) = 0.1, above 0.05 before any
    # correction, however far apart the runs are.
    write_study(tmp_path, {"none": [500.0, 501.0, 502.0], "bn": [100.0, 101.0, 102.0]})
    final = verdict(analyze(load_results(tmp_path)), "1", "ppo/CartPole-v1").comparisons[0]
    assert final.smallest_p == pytest.approx(0.1) and final.powerless
    assert final.outcome == "cannot be significant with n = 3 vs 3 (smallest p 0.1)"
    # 10 against 10 can: the same separation is significant.
    write_study(tmp_path / "ten", {"none": list(500 + TEN), "bn": list(100 + TEN)})
    final = verdict(analyze(load_results(tmp_path / "ten")), "1", "ppo/CartPole-v1").comparisons[0]
    assert not final.powerless and final.verdict == SUPPORTED
