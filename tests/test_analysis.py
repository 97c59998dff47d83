"""Verdicts on synthetic studies: exact tests, one primary family, compound, trend and non-inferiority claims,
return variance, not applicable is not zero, power shown, verdicts free of the seed."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from test_results import curve_to, write_bench, write_run, write_study

from rlnorm.analysis import stats
from rlnorm.analysis.claims import Scores, default_claims, parse_claims, parse_scores
from rlnorm.analysis.report import verdict_label
from rlnorm.analysis.results import load_results
from rlnorm.analysis.scales import TaskScale
from rlnorm.analysis.verdicts import ALL_TASKS, CONTRADICTED, INCONCLUSIVE, NOT_MEASURED, SUPPORTED, analyze
from rlnorm.study.checks import ConfigError

TASK = "ppo/CartPole-v1"
TEN = np.linspace(-20, 20, 10)
"""Ten seeds' offsets from a variant's level: the same spread for every variant."""
SCALE = TaskScale(random_return=0.0, reference_return=500.0, reference_source="test", failure_below=0.5)


def run_analysis(root, claims=None, seed=0):
    results = load_results(root)
    tasks = {"/".join(t): [g.variant for g in results.groups_of(t)] for t in results.tasks}
    claims = default_claims(tasks) if claims is None else parse_claims(claims, tasks)
    return analyze(results, claims, {task: SCALE for task in results.tasks}, seed)


def verdict(analysis, name, scope=TASK):
    return next(v for v in analysis.verdicts if v.claim.name == name and v.scope == scope)


LOWER = "BN lowers the final return"
VARIANCE = "BN raises return variance"
GENTLER = "WN + mean-only BN is gentler than BN"


def test_bn_clearly_below_none_is_supported_with_the_exact_p_value(tmp_path):
    write_study(tmp_path, {"none": list(400 + TEN), "bn": list(100 + TEN)})
    claim = verdict(run_analysis(tmp_path), LOWER)
    (part,) = claim.parts
    assert claim.verdict == SUPPORTED and part.test.side == "less"
    assert part.test.effect.value == 0.0 and part.test.test == "mann-whitney exact"
    assert part.test.pvalue == pytest.approx(2 / math.comb(20, 10), rel=1e-12)
    assert part.test.summaries[0].value == pytest.approx(100) and part.test.summaries[1].value == pytest.approx(400)


def test_bn_clearly_above_none_is_contradicted_and_identical_variants_are_inconclusive(tmp_path):
    write_study(tmp_path / "above", {"none": list(100 + TEN), "bn": list(400 + TEN)})
    assert verdict(run_analysis(tmp_path / "above"), LOWER).verdict == CONTRADICTED
    write_study(tmp_path / "same", {"none": list(300 + TEN), "bn": list(300 + TEN)})
    same = verdict(run_analysis(tmp_path / "same"), LOWER)
    assert same.verdict == INCONCLUSIVE and same.parts[0].test.pvalue == 1.0


def test_sizes_that_cannot_reach_significance_say_so(tmp_path):
    # 3 against 3, perfectly separated: the smallest two-sided exact p is 2 / C(6, 3) = 0.1.
    write_study(tmp_path, {"none": [500.0, 501.0, 502.0], "bn": [100.0, 101.0, 102.0]})
    claim = verdict(run_analysis(tmp_path), LOWER)
    assert claim.parts[0].test.pvalue == pytest.approx(0.1) and claim.powerless
    assert verdict_label(claim) == "cannot be significant with n = 3 vs 3"


def test_one_entry_per_claim_and_scope_in_the_primary_family(tmp_path):
    for env in ("CartPole-v1", "Acrobot-v1"):
        write_study(tmp_path, {"none": list(400 + TEN), "bn": list(100 + TEN)}, env_id=env)
    claims = [{"name": LOWER, "x": "bn", "y": "none", "quantity": "final return", "direction": "less"}]
    analysis = run_analysis(tmp_path, claims)
    # Two tasks and their pooling: three tests, one family of three.
    assert analysis.primary_size == 3
    pooled = verdict(analysis, LOWER, ALL_TASKS)
    assert pooled.verdict == SUPPORTED and pooled.parts[0].test.test == "stratified mann-whitney exact"
    assert pooled.p == pytest.approx(2 / math.comb(20, 10) ** 2, rel=1e-9)
    single = verdict(analysis, LOWER, "ppo/Acrobot-v1")
    # Holm: the pooled p (smallest) times 3, then the two tasks' equal p times 2.
    assert single.p_adjusted == pytest.approx(2 * single.p)


def test_failure_rate_uses_barnard_and_any_of_pays_for_its_parts(tmp_path):
    # bn: 8 of 10 runs below half the reference (250); none: none below.
    write_study(tmp_path, {"none": list(450 + TEN), "bn": [100.0] * 8 + [440.0, 460.0]})
    claim = verdict(run_analysis(tmp_path), VARIANCE)
    failure, spread = claim.parts
    assert failure.test.test == "barnard exact"
    assert failure.test.pvalue == pytest.approx(sps.barnard_exact([[8, 0], [2, 10]]).pvalue)
    assert failure.test.alternative_p == pytest.approx(sps.fisher_exact([[8, 0], [2, 10]]).pvalue)
    assert spread.test.reason.startswith("fewer than 3 successful runs")
    # One part made: the claim's p is that part's (Bonferroni over the one part made).
    assert claim.p == pytest.approx(failure.test.pvalue) and claim.verdict == SUPPORTED


def test_any_of_is_contradicted_only_when_every_part_made_is(tmp_path):
    # bn fails less often than none (significantly), while its successes spread more (undecided): "bn raises
    # return variance" is then open, not false.
    none = [50, 60, 70, 80, 90, 100, 110, 400, 410, 420]
    write_study(tmp_path, {"none": none, "bn": list(np.linspace(330, 490, 10))})
    claim = verdict(run_analysis(tmp_path), VARIANCE)
    failure, spread = claim.parts
    assert failure.verdict == CONTRADICTED and spread.test.made and spread.verdict == INCONCLUSIVE
    assert claim.verdict == INCONCLUSIVE


def test_a_part_tested_where_its_claim_is_not_measured_stays_outside_the_family(tmp_path):
    from rlnorm.analysis.report import outcome
    from rlnorm.analysis.verdicts import OUTSIDE_FAMILY

    # A whole-pool probe (PPO's zoo CartPole): the noise part is n/a, so the all_of claim is too, and its return
    # part, though tested, is neither inconclusive nor decided.
    for variant, level in (("bn", 400), ("wn+mobn", 100)):
        for seed, offset in enumerate(TEN):
            probe = [(0, "actor", "output", 256, 256, 0.0, 0.3, 0.0, float("nan"))]
            write_run(tmp_path, variant, seed, curve_to(level + offset), norm=variant, probe=probe)
    analysis = run_analysis(tmp_path)
    claim = verdict(analysis, GENTLER)
    noise, level = claim.parts
    assert level.test.made and level.verdict == OUTSIDE_FAMILY and outcome(level) == OUTSIDE_FAMILY
    assert verdict_label(claim) == "n/a" and analysis.primary_size == 0


def test_non_inferiority_knows_which_side_of_the_margin_it_can_reach(tmp_path):
    # wn+mobn below bn in every pair, 10 a side: the floor below the margin is 0.012, so five claims' Holm
    # correction puts a contradiction out of reach (at 0.06), while support would still be reachable.
    write_probed(tmp_path, "bn", 400, 0.2)
    write_probed(tmp_path, "wn+mobn", 100, 0.2)
    claims = [{"name": f"not worse {i}", "x": "wn+mobn", "y": "bn", "quantity": "final return",
               "direction": "not less"} for i in range(5)]
    claim = verdict(run_analysis(tmp_path, claims), "not worse 0")
    (part,) = claim.parts
    assert part.test.effect.value == 0.0 and part.test.smallest_p == pytest.approx(part.test.pvalue)
    assert part.p_adjusted == pytest.approx(5 * part.test.pvalue) and part.p_adjusted > 0.05
    assert verdict_label(claim) == "cannot be significant with n = 10 vs 10"


def test_spread_among_successes_is_compared_only_at_overlapping_levels(tmp_path):
    write_study(tmp_path / "wide", {"none": list(400 + TEN), "bn": list(400 + 5 * TEN)})
    claim = verdict(run_analysis(tmp_path / "wide"), VARIANCE)
    spread = claim.parts[1]
    assert spread.test.test == "brown-forsythe, mann-whitney on |deviation from median| and permutation, all three"
    assert spread.verdict == SUPPORTED
    # Neither test changes when both groups' scores are rescaled alike: returns stand for scores.
    assert spread.test.pvalue == pytest.approx(stats.spread_test([400 + 5 * TEN], [400 + TEN]).combined.pvalue)
    assert claim.verdict == SUPPORTED and claim.p == pytest.approx(2 * min(p.test.pvalue for p in claim.parts))
    write_study(tmp_path / "apart", {"none": list(300 + TEN), "bn": list(450 + TEN)})
    apart = verdict(run_analysis(tmp_path / "apart"), VARIANCE).parts[1]
    assert apart.test.reason == "successes at different levels (their ranges do not overlap): spreads not compared"
    # Every success of both at CartPole's cap: no split can differ, so the spread is n/a, not a test at p = 1.
    write_study(tmp_path / "capped", {"none": [500.0] * 10, "bn": [500.0] * 8 + [100.0, 120.0]})
    capped = verdict(run_analysis(tmp_path / "capped"), VARIANCE)
    assert capped.parts[1].test.reason == ("n/a: every successful run of bn and none ends at one score (return 500), "
                                           "so their spreads cannot differ")
    assert not capped.parts[1].test.made and capped.parts[0].test.made


def test_a_pooled_spread_comparison_names_its_drawn_permutations():
    from rlnorm.analysis.claims import Pairwise
    from rlnorm.analysis.verdicts import ALL_TASKS, _spread_test

    part = Pairwise("bn", "none", "spread among successes", "greater")
    one = _spread_test("claim", "ppo/CartPole-v1", part, [(400 + 5 * TEN, 400 + TEN)])
    pooled = _spread_test("claim", ALL_TASKS, part, [(400 + 5 * TEN, 400 + TEN)] * 2)
    assert one.test == "brown-forsythe, mann-whitney on |deviation from median| and permutation, all three"
    assert pooled.test == ("stratified brown-forsythe, mann-whitney on |deviation from median| and permutation, "
                           "all three, 100,000 permutations drawn")


def write_probed(root, variant, level, noise, seed_offsets=TEN, **kwargs):
    for seed, offset in enumerate(seed_offsets):
        probe = [(0, "actor", "output", 64, 1024, noise, 0.0, noise + offset / 1000, 0.0)]
        write_run(root, variant, seed, curve_to(level + offset), norm=variant.split("-")[0], probe=probe, **kwargs)


def test_all_of_needs_every_part_and_non_inferiority_reads_the_margin(tmp_path):
    write_probed(tmp_path / "gentle", "bn", 300, 0.2)
    write_probed(tmp_path / "gentle", "wn+mobn", 400, 0.1)
    claim = verdict(run_analysis(tmp_path / "gentle"), GENTLER)
    noise, level = claim.parts
    assert noise.verdict == SUPPORTED and level.test.margin == 0.35
    assert level.test.test == "welch t on P(X > Y) against the margin" and level.verdict == SUPPORTED
    assert claim.verdict == SUPPORTED and claim.p == max(noise.test.pvalue, level.test.pvalue)
    # Much worse: P(X > Y) significantly below the margin, so "not worse" is contradicted, and the claim with it.
    write_probed(tmp_path / "worse", "bn", 400, 0.2)
    write_probed(tmp_path / "worse", "wn+mobn", 100, 0.1)
    claim = verdict(run_analysis(tmp_path / "worse"), GENTLER)
    assert claim.parts[1].test.effect.high < 0.35 and claim.parts[1].verdict == CONTRADICTED
    assert claim.verdict == CONTRADICTED


def test_probe_noise_of_a_whole_pool_is_not_applicable_and_enters_no_test(tmp_path):
    for variant in ("bn", "mobn"):
        for seed, offset in enumerate(TEN):
            probe = [(0, "actor", "output", 256, 256, 0.0, 0.3, 0.0, float("nan"))]
            write_run(tmp_path, variant, seed, curve_to(300 + offset), norm=variant, probe=probe)
    analysis = run_analysis(tmp_path)
    claim = verdict(analysis, "Mean-only BN's noise is milder than BN's")
    assert claim.verdict == NOT_MEASURED and claim.why.startswith("n/a: the probe's minibatch is its whole pool")
    assert verdict_label(claim) == "n/a"
    assert math.isnan(claim.p) and analysis.primary_size == 0


def test_the_dose_adds_noise_to_one_network_measured_seed_by_seed_at_the_first_probe_point(tmp_path):
    # At a first probe point before any update, a seed's doses share their network (the same eval-mode output
    # spread, noise / relative noise): the ratio of their noise there is what the dose adds. Later points measure
    # networks that trained apart (here the same level).
    def write_chain(root, chain, spread_of):
        for variant, k, factor in chain:
            for seed, offset in enumerate(TEN):
                first = (1.0 + seed / 10) * (factor + seed / 100 if k > 1 else 1.0)
                spread = spread_of(k, seed)
                probe = [(t, "q", "output", 64, 1024, value * spread, 0.0, value, 0.0)
                         for t, value in ((1000, first), (2000, 0.2), (3000, 0.3))]
                write_run(root, variant, seed, curve_to(400 - 10 * k + offset), norm="bn", probe=probe,
                          norm_kwargs={"ghost_batches": k} if k > 1 else None)

    chain = (("bn", 1, 1.0), ("bn-g4", 4, 2.0), ("bn-g16", 16, 3.0))
    claims = [{"name": "dose", "variants": [v for v, _, _ in chain], "quantity": "final return", "direction": "less"}]
    write_chain(tmp_path / "one", chain, lambda k, seed: 0.05 + seed / 1000)
    dose = run_analysis(tmp_path / "one", claims).dose
    assert [d.added_noise.value for d in dose] == pytest.approx([1.0, 2.045, 3.045])
    assert [d.relative_noise.value for d in dose] == pytest.approx([0.3, 0.3, 0.3])  # medians of (first, 0.2, 0.3)
    # Updates before the first point (off-policy learning_starts below the batch size) leave the doses other
    # networks there, which their output spreads show: no seed pairs, no added noise is claimed.
    write_chain(tmp_path / "updated", chain, lambda k, seed: 0.05 * (1 + k / 100))
    dose = run_analysis(tmp_path / "updated", claims).dose
    assert len(dose) == 3 and [math.isnan(d.added_noise.value) for d in dose] == [False, True, True]
    # A chain that varies more than the dose pairs different designs: no added noise is claimed for it either.
    write_run(tmp_path / "one", "bn-g8", 0, curve_to(100), norm="bn",
              norm_kwargs={"ghost_batches": 8, "momentum": 0.01},
              probe=[(1000, "q", "output", 64, 1024, 0.45, 0.0, 9.0, 0.0)])
    dose = run_analysis(tmp_path / "one", [{**claims[0], "variants": ["bn", "bn-g4", "bn-g8"]}]).dose
    assert len(dose) == 3 and all(math.isnan(d.added_noise.value) for d in dose)


def test_a_trend_claim_gets_the_exact_jonckheere_terpstra_test(tmp_path):
    write_study(tmp_path, {"bn": list(400 + TEN), "bn-g4": list(300 + TEN), "bn-g16": list(200 + TEN)})
    claims = [{"name": "dose", "variants": ["bn", "bn-g4", "bn-g16"], "quantity": "final return",
               "direction": "less"}]
    claim = verdict(run_analysis(tmp_path, claims), "dose")
    (part,) = claim.parts
    arrangements = math.factorial(30) / math.factorial(10) ** 3
    assert part.test.pvalue == pytest.approx(2 / arrangements, rel=1e-9)
    assert part.test.smallest_p == pytest.approx(2 / arrangements, rel=1e-9)
    assert part.test.effect.value == 0.0 and claim.verdict == SUPPORTED
    assert part.test.x == "bn < bn-g4 < bn-g16" and part.test.sizes == ((10, 10, 10),)


def test_the_dose_response_gives_each_dose_its_measured_noise_return_and_failure_rate(tmp_path):
    from rlnorm.analysis.report import dose_table

    for variant, k, level, noise in (("bn", 1, 400, 0.1), ("bn-g4", 4, 300, 0.2), ("bn-g16", 16, 100, 0.4)):
        write_probed(tmp_path, variant, level, noise, norm_kwargs={"ghost_batches": k} if k > 1 else None)
    write_probed(tmp_path, "mobn", 400, 0.1)  # not in a chain: no point
    claims = [{"name": "dose", "variants": ["bn", "bn-g4", "bn-g16"], "quantity": "final return",
               "direction": "less"}]
    analysis = run_analysis(tmp_path, claims)
    assert [(d.variant, d.ghost_batches, d.runs) for d in analysis.dose] == [("bn", 1, 10), ("bn-g4", 4, 10),
                                                                            ("bn-g16", 16, 10)]
    # Each run's relative noise is noise + offset / 1000 (offsets TEN, mean 0); returns level + offset.
    assert [d.relative_noise.value for d in analysis.dose] == pytest.approx([0.1, 0.2, 0.4])
    assert [d.final.value for d in analysis.dose] == pytest.approx([400, 300, 100], abs=1)
    # Scores 0.8, 0.6 and 0.2 of the reference: only bn-g16's runs fail.
    assert [d.failure_rate.value for d in analysis.dose] == [0.0, 0.0, 1.0]
    headers, rows = dose_table(analysis)
    assert rows[2][:5] == ["ppo/CartPole-v1", "bn", "bn-g16", "16", "10"]
    # A trend claim on noise names no chain (the figure and the table plot noise against return), nor does a
    # trend along something other than ghost batches.
    noise_claim = [{**claims[0], "quantity": "relative probe noise", "direction": "greater"}]
    assert run_analysis(tmp_path, noise_claim).dose == ()
    assert run_analysis(tmp_path, [{**claims[0], "variants": ["mobn", "bn"]}]).dose == ()


def test_verdicts_do_not_depend_on_the_seed(tmp_path):
    # Levels that overlap partly: the bootstrap intervals move with the seed, the verdicts must not.
    rng = np.random.default_rng(0)
    write_study(tmp_path, {"none": list(400 + 60 * rng.standard_normal(10)),
                           "bn": list(330 + 60 * rng.standard_normal(10)),
                           "wn+mobn": list(380 + 60 * rng.standard_normal(10))})
    runs = [run_analysis(tmp_path, seed=seed) for seed in range(5)]
    labels = [[(v.claim.name, v.scope, v.verdict, v.p_adjusted) for v in a.verdicts] for a in runs]
    assert all(label == labels[0] for label in labels)
    intervals = {tuple((p.test.effect.low, p.test.effect.high) for v in a.verdicts for p in v.parts) for a in runs}
    assert len(intervals) > 1  # the intervals did change


def test_the_bench_decides_training_time_by_a_paired_test(tmp_path):
    write_study(tmp_path, {"wn": list(300 + TEN), "bn": list(300 + TEN)})
    repeats = np.linspace(0.0, 0.1, 12)
    write_bench(tmp_path, {TASK: {"wn": list(10 + repeats), "bn": list(11 + repeats)}})
    claim = verdict(run_analysis(tmp_path), "WN is cheaper to compute than BN")
    (part,) = claim.parts
    assert part.test.test == "wilcoxon signed-rank on log ratio (paired)" and part.test.sizes == ((12,),)
    assert part.test.pvalue == pytest.approx(2 / 2**12) and claim.verdict == SUPPORTED


def test_each_convolutional_update_of_the_bench_is_a_scope_of_its_own(tmp_path):
    write_study(tmp_path, {"wn": list(300 + TEN), "bn": list(300 + TEN)})
    repeats = np.linspace(0.0, 0.1, 12)
    write_bench(tmp_path, {TASK: {"wn": list(10 + repeats), "bn": list(11 + repeats)}}, cnn={
        "dqn/NatureCNN update x32": ("update", {"wn": list(2 + repeats), "bn": list(1 + repeats)}),
        "dqn/NatureCNN rollout x1": ("rollout", {"wn": list(1 + repeats), "bn": list(1 + repeats)})})
    analysis = run_analysis(tmp_path)
    verdicts = {v.scope: v for v in analysis.verdicts if v.claim.name == "WN is cheaper to compute than BN"}
    # Rollouts are eval-mode forwards, where both fold into the layer: not a training time.
    assert list(verdicts) == [TASK, "dqn/NatureCNN update x32"]
    assert verdicts[TASK].verdict == SUPPORTED and verdicts["dqn/NatureCNN update x32"].verdict == CONTRADICTED
    (part,) = verdicts["dqn/NatureCNN update x32"].parts
    logs = np.log((2 + repeats) / (1 + repeats))
    walsh = [(logs[i] + logs[j]) / 2 for i in range(12) for j in range(i, 12)]
    assert part.test.effect.value == pytest.approx(np.exp(np.median(walsh)))


def test_ladder_steps_and_reference_cells_form_the_secondary_family(tmp_path):
    for seed, offset in enumerate(TEN):
        write_run(tmp_path, "none", seed, curve_to(500 + offset))
        for mode, level in (("sb3", 100), ("frozen", 100), ("fixed", 500)):
            name = "bn" if mode == "sb3" else f"bn-{mode}"
            write_run(tmp_path, name, seed, curve_to(level + offset), norm="bn", norm_mode=mode)
    analysis = run_analysis(tmp_path)
    (ladder,) = analysis.ladders
    assert ladder.rungs == ("none", "bn", "bn-frozen", "bn-fixed") and ladder.removed == ("", "ab", "c")
    assert [step.verdict for step in ladder.steps] == ["X lower", "no significant difference", "X higher"]
    assert analysis.secondary_size == 3 and all(step.family == "secondary" for step in ladder.steps)
    assert ladder.steps[0].p_adjusted == pytest.approx(3 * ladder.steps[0].test.pvalue)


def test_crossq_is_compared_with_sac_none_and_bn(tmp_path):
    pendulum = {"algo": "sac", "env_id": "Pendulum-v1"}
    for seed, offset in enumerate(TEN):
        write_run(tmp_path, "none", seed, curve_to(-150 + offset), **pendulum)
        write_run(tmp_path, "bn", seed, curve_to(-1300 + offset), **pendulum)
        write_run(tmp_path, "crossq", seed, curve_to(-150 + offset), norm="none", algo="crossq", env_id="Pendulum-v1")
    analysis = run_analysis(tmp_path)
    assert [(d.test.x, d.test.y, d.verdict) for d in analysis.references] == [
        ("crossq", "sac none", "no significant difference"), ("crossq", "sac bn", "X higher")]


# ----------------------------------------------------------------------------------------------- declaring

TASKS = {"dqn/CartPole-v1": ["none", "bn", "bn-g4"], "sac/Pendulum-v1": ["none", "ln"]}


@pytest.mark.parametrize(("claim", "message"), [
    ({"name": "c", "x": "bnn", "y": "none", "quantity": "final return", "direction": "less"},
     "claims[0] (c): unknown variant 'bnn' (did you mean 'bn'?); variants: bn, bn-g4, ln, none"),
    ({"name": "c", "x": "bn", "y": "none", "quantity": "final retrun", "direction": "less"},
     "claims[0] (c).quantity: unknown quantity 'final retrun' (did you mean 'final return'?)"),
    ({"name": "c", "x": "bn", "y": "none", "quantity": "final return", "direction": "lower"},
     "claims[0] (c).direction: 'lower' is not one of greater, less, not less, not greater"),
    ({"name": "c", "x": "bn", "y": "none", "quantity": "final return", "direction": "less", "margin": 0.3},
     "claims[0] (c).margin: a margin is for direction 'not less' or 'not greater' (non-inferiority), not 'less'"),
    ({"name": "c", "x": "bn", "y": "none", "quantity": "final return", "direction": "not less", "margin": 0.7},
     "claims[0] (c).margin: 0.7 is outside (0.0, 0.5)"),
    ({"name": "c", "x": "bn", "y": "ln", "quantity": "final return", "direction": "less"},
     "claims[0] (c): variants bn, ln run together on no task"),
    ({"name": "c", "x": "bn", "y": "none", "quantity": "final return", "direction": "less", "tasks": ["dqn/Cart"]},
     "claims[0] (c).tasks: unknown task 'dqn/Cart' (did you mean 'dqn/CartPole-v1'?)"),
    ({"name": "c", "all_of": [{"x": "bn", "y": "none", "quantity": "final return", "direction": "less"}]},
     "claims[0] (c).all_of: expected a list of at least 2 parts"),
    ({"name": "c", "variants": ["bn", "bn-g4"], "quantity": "final return", "direction": "not less"},
     "claims[0] (c).direction: a trend is greater or less"),
])
def test_a_bad_claim_is_one_line_naming_it(claim, message):
    with pytest.raises(ConfigError) as error:
        parse_claims([claim], TASKS)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_scores_name_a_known_env_and_the_defaults_skip_claims_without_their_variants():
    assert parse_scores({"reference": {"Pendulum-v1": -150}}, TASKS) == Scores({"Pendulum-v1": -150.0}, 0.5)
    with pytest.raises(ConfigError, match="'Pendulum' is no env id or task of this study"):
        parse_scores({"reference": {"Pendulum": -150}}, TASKS)
    with pytest.raises(ConfigError, match="scores.failure_below: 1.5 is not a normalized score in"):
        parse_scores({"failure_below": 1.5}, TASKS)
    assert [c.name for c in default_claims(TASKS)] == [LOWER, VARIANCE]
