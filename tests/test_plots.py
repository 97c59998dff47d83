"""Figures: every file written and valid, colours consistent, figures without data left out."""

import dataclasses
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex
from test_results import curve_to, write_bench, write_run, write_study

from rlnorm.analysis import stats as st
from rlnorm.analysis.plots import (
    NORM_COLORS,
    STYLE,
    mean_over_runs,
    plot_bench_cost,
    plot_cnn_cost,
    plot_final_returns,
    plot_improvement,
    plot_learning_curves,
    plot_mechanism_curves,
    plot_series,
    plot_study,
    save,
    variant_colors,
)
from rlnorm.analysis.results import FAILED, RUNNING, Series, load_results

ALL_FIGURES = {
    "learning_curves",
    "mechanism_curves",
    "final_returns",
    "dispersion",
    "improvement",
    "compute_cost",
    "bench_cost",
    "cnn_cost",
    "probe_noise",
    "probe_gap",
    "mode_mismatch",
    "statistics_drift",
}


def write_full_study(root):
    """Two tasks, three variants, with probe, drift and mismatch logs, and a failed and a running run."""
    for algo, env in (("ppo", "CartPole-v1"), ("dqn", "Acrobot-v1")):
        for variant, level, noise in (("none", 400.0, 0.0), ("bn", 150.0, 0.2), ("bn-frozen", 100.0, 0.0)):
            for seed in range(3):
                probe = [(step, "actor", "output", noise, noise / 2) for step in (0, 250, 500)]
                write_run(
                    root,
                    variant,
                    seed,
                    curve_to(level + 10 * seed),
                    algo=algo,
                    env_id=env,
                    norm="bn" if variant != "none" else "none",
                    norm_mode="frozen" if "frozen" in variant else None,
                    probe=probe,
                    drift=[(250, "actor", 0.1), (500, "actor", 0.05)],
                    mismatch=[(250, 0.01, 0.02), (500, 0.02, 0.04)] if algo == "ppo" else (),
                )
        write_run(root, "bn", 3, [0.0, 20.0, 5.0], algo=algo, env_id=env, status=FAILED)
        write_run(root, "none", 3, [0.0, 50.0], algo=algo, env_id=env, status=RUNNING)
    write_bench(root, {"ppo/CartPole-v1": {"MlpPolicy": [1.0, 1.1], "none": [1.1, 1.2], "bn": [1.3, 1.2]}},
                cnn={"dqn/NatureCNN update x32": ("update", {"CnnPolicy": [1.0, 1.1], "none": [1.0, 1.2]})},
                sweep=[sweep_point(2, {"none": [1.0, 2.0], "bn": [1.5, 2.4]})])


def sweep_point(batch: int, times: dict[str, list[float]]) -> dict:
    """A point of the bench's activations-to-weights sweep, as ``rlnorm bench --cnn`` records it."""
    return {"batch": batch, "activations": 1000 * batch, "weights": 1000, "conv_flops": 10**6 * batch,
            "norm_flops": {norm: 0.01 for norm in times}, "times": times}


def test_every_figure_is_written_as_png_and_pdf(tmp_path):
    write_full_study(tmp_path / "results")
    paths = plot_study(load_results(tmp_path / "results"), tmp_path / "plots")
    assert {path.stem for path in paths} == ALL_FIGURES
    assert len(paths) == 2 * len(ALL_FIGURES)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG" if path.suffix == ".png" else b"%PDF"), path
        assert len(data) > 5000, path


def test_a_pdf_carries_no_creation_date_so_a_regenerated_report_diffs_clean(tmp_path):
    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    png, pdf = save(figure, tmp_path / "figure")
    assert pdf.read_bytes().startswith(b"%PDF") and b"/CreationDate" not in pdf.read_bytes()


def test_a_study_of_modes_only_draws_no_core_figures_and_does_not_fail(tmp_path):
    # configs/noise.yaml: every variant is a fixed-statistics rung, none a norm as SB3 runs it.
    for variant, dose in (("bn-fixed", 0), ("bn-fixed-n4", 4)):
        for seed in range(3):
            write_run(tmp_path / "results", variant, seed, curve_to(300 + seed), norm="bn", norm_mode="fixed",
                      norm_kwargs={"injected_noise": dose} if dose else None)
    stems = {path.stem for path in plot_study(load_results(tmp_path / "results"), tmp_path / "plots")}
    assert "mechanism_curves" in stems
    assert not stems & {"learning_curves", "dispersion", "improvement"}


def test_figures_without_data_are_left_out(tmp_path):
    write_study(tmp_path / "results", {"none": [1.0, 2.0], "bn": [3.0, 4.0]})
    paths = plot_study(load_results(tmp_path / "results"), tmp_path / "plots")
    assert {path.stem for path in paths} == {
        "learning_curves",
        "final_returns",
        "dispersion",
        "improvement",
        "compute_cost",
    }


def test_bench_cost_shows_throughputs_paired_by_repeat(tmp_path):
    write_study(tmp_path, {"none": [1.0, 2.0], "wn": [3.0, 4.0]})
    # Repeat 2 ran on a slower machine phase: paired ratios are 2 and 0.5, unpaired medians would say 0.67.
    write_bench(tmp_path, {"sac/Pendulum-v1": {"MlpPolicy": [10.0, 20.0], "MlpPolicy+fused": [10.0, 20.0],
                                               "wn": [5.0, 40.0]}})
    results = load_results(tmp_path)
    figure = plot_bench_cost(results, variant_colors(results))
    bars = [patch.get_height() for patch in figure.axes[0].patches]
    assert bars == pytest.approx([1.0, 1.25])
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == ["MlpPolicy+fused", "wn"]
    plt.close(figure)


def test_cnn_cost_shows_the_paired_time_ratio_against_activations_per_weight(tmp_path):
    write_study(tmp_path, {"none": [1.0, 2.0], "wn": [3.0, 4.0]})
    # The second repeat of batch 8 ran in a slower machine phase: paired, wn costs 1.5x none in both.
    write_bench(tmp_path, {}, sweep=[sweep_point(2, {"none": [1.0, 1.0], "wn": [2.0, 2.0]}),
                                     sweep_point(8, {"none": [1.0, 4.0], "wn": [1.5, 6.0]})])
    results = load_results(tmp_path)
    figure = plot_cnn_cost(results, variant_colors(results))
    cost, theory = figure.axes[0].lines[2:4]  # wn's measured and FLOPs lines, after none's
    assert list(cost.get_xdata()) == [2, 8] and list(cost.get_ydata()) == pytest.approx([2.0, 1.5])
    assert list(theory.get_ydata()) == pytest.approx([1.01, 1.01])
    plt.close(figure)


def test_many_variants_get_a_full_width_panel_and_only_norms_get_the_improvement_matrix(tmp_path):
    write_full_study(tmp_path)
    results = load_results(tmp_path)
    colors = variant_colors(results)
    matrix = plot_improvement(results, colors)
    assert [label.get_text() for label in matrix.axes[0].get_yticklabels()] == ["none", "bn"]  # not bn-frozen
    assert plot_final_returns(results, colors).axes[0].get_subplotspec().get_gridspec().ncols == 2
    for seed in range(2):  # a momentum sweep: 9 variants on one task
        for momentum in (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001):
            write_run(tmp_path, f"bn-m{momentum}", seed, curve_to(100.0), norm="bn", norm_kwargs={"momentum": momentum})
    swept = load_results(tmp_path)
    wide = plot_final_returns(swept, variant_colors(swept))
    assert wide.axes[0].get_subplotspec().get_gridspec().ncols == 1
    for figure in (matrix, wide):
        plt.close(figure)


def test_panel_titles_name_the_algorithm_as_it_is_written(tmp_path):
    write_run(tmp_path, "none", 0, algo="sac", env_id="Pendulum-v1")
    write_run(tmp_path, "crossq", 0, norm="none", algo="crossq", env_id="Pendulum-v1")
    results = load_results(tmp_path)
    with plt.rc_context(STYLE):
        figure = plot_learning_curves(results, variant_colors(results))
    assert {ax.get_title() for ax in figure.axes if ax.get_visible()} == {"SAC Pendulum-v1", "CrossQ Pendulum-v1"}
    plt.close("all")


def test_a_study_of_variants_only_has_no_learning_curves_of_core_norms(tmp_path):
    write_run(tmp_path, "bn-g4", 0, norm="bn", norm_kwargs={"ghost_batches": 4})
    write_run(tmp_path, "bn-frozen", 0, norm="bn", norm_mode="frozen")
    results = load_results(tmp_path)
    assert plot_learning_curves(results, variant_colors(results)) is None


def test_one_variant_has_no_improvement_matrix(tmp_path):
    write_study(tmp_path / "results", {"bn": [1.0, 2.0]})
    stems = {path.stem for path in plot_study(load_results(tmp_path / "results"), tmp_path / "plots")}
    assert "improvement" not in stems and "learning_curves" in stems


def test_colours_follow_the_norm(tmp_path):
    write_full_study(tmp_path)
    colors = variant_colors(load_results(tmp_path))
    assert colors["none"] == NORM_COLORS["none"]
    assert colors["bn"] == NORM_COLORS["bn"]
    # Another mode of bn: a shade of red, distinct from bn's.
    frozen = tuple(int(colors["bn-frozen"][i : i + 2], 16) for i in (1, 3, 5))
    assert colors["bn-frozen"] != colors["bn"] and frozen[0] > frozen[1] and frozen[0] > frozen[2]


def test_mean_over_runs_averages_each_step_over_the_runs_that_have_it():
    mean = mean_over_runs([Series(np.array([0, 10]), np.array([1.0, 3.0])), Series(np.array([0]), np.array([3.0]))])
    assert mean.steps.tolist() == [0, 10]
    assert mean.values.tolist() == pytest.approx([2.0, 3.0])
    # An undefined value (nan) is left out; a step with none defined is a gap.
    undefined = mean_over_runs([Series(np.array([0, 10]), np.array([np.nan, np.nan])),
                                Series(np.array([0, 10]), np.array([4.0, np.nan]))])
    assert undefined.values[0] == 4.0 and np.isnan(undefined.values[1])


def test_mechanism_variants_get_their_own_curves_beside_none(tmp_path):
    write_full_study(tmp_path / "results")
    results = load_results(tmp_path / "results")
    colors = variant_colors(results)
    with plt.rc_context(STYLE):
        core, mechanisms = plot_learning_curves(results, colors), plot_mechanism_curves(results, colors)
    legend = [text.get_text() for text in core.legends[0].get_texts()]
    assert "none" in legend and "bn" in legend and "bn-frozen" not in legend
    titles = [ax.get_title() for ax in mechanisms.axes if ax.get_visible()]
    assert titles == [f"{algo.upper()} {env}: bn" for algo, env in results.tasks]
    legend = [text.get_text() for text in mechanisms.legends[0].get_texts()]
    assert legend[:3] == ["none", "bn", "bn-frozen"]
    # The ladder's rungs differ by line style, not only by shade.
    styles = [handle.get_linestyle() for handle in mechanisms.legends[0].legend_handles[:3]]
    assert styles == ["-", "-", ":"]
    plt.close("all")
    write_study(tmp_path / "core", {"none": [1.0, 2.0], "bn": [3.0, 4.0]})
    assert plot_mechanism_curves(load_results(tmp_path / "core"), colors) is None


def test_an_option_sweep_gets_its_own_panel_beside_its_mode_with_default_options(tmp_path):
    write_full_study(tmp_path)
    for seed in range(2):
        write_run(tmp_path, "bn-frozen-m0", seed, curve_to(400.0), norm="bn", norm_mode="frozen",
                  norm_kwargs={"momentum": 0.0})
    results = load_results(tmp_path)
    colors = variant_colors(results)
    with plt.rc_context(STYLE):
        figure = plot_mechanism_curves(results, colors)
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_visible()}
    titles = list(panels)
    assert titles[titles.index("PPO CartPole-v1: bn") + 1] == "PPO CartPole-v1: bn, momentum"

    def variants_drawn(title: str) -> set[str]:
        drawn = {to_hex(line.get_color()) for line in panels[title].get_lines()}
        return {variant for variant, color in colors.items() if color in drawn}

    assert variants_drawn("PPO CartPole-v1: bn") == {"none", "bn", "bn-frozen"}
    assert variants_drawn("PPO CartPole-v1: bn, momentum") == {"none", "bn-frozen", "bn-frozen-m0"}
    plt.close(figure)


def test_many_variants_of_one_norm_get_distinct_colours(tmp_path):
    modes = ["sb3", "consistent", "frozen", "fixed"]
    variants = {f"mobn-{mode}": {"norm_mode": mode} for mode in modes}
    variants |= {f"mobn-frozen-m{m}": {"norm_mode": "frozen", "norm_kwargs": {"momentum": m}} for m in (0.01, 0.0)}
    variants |= {"mobn-x": {"norm_kwargs": {"momentum": 0.5}}, "mobn-y": {"norm_kwargs": {"momentum": 0.2}}}
    for variant, options in variants.items():
        write_run(tmp_path, variant, 0, curve_to(1.0), norm="mobn", **options)
    colors = variant_colors(load_results(tmp_path))
    assert len(colors) == 8 and len(set(colors.values())) == 8
    assert colors["mobn-sb3"] == NORM_COLORS["mobn"]


def test_probe_noise_spanning_orders_of_magnitude_gets_a_symlog_scale_and_only_the_norms(tmp_path):
    for variant, noise in (("none", 0.0), ("bn", 0.001), ("mobn", 10.0), ("bn-frozen", 5.0)):
        for seed in range(2):
            probe = [(step, "critic", "output", noise, 0.0) for step in (0, 250, 500)]
            write_run(tmp_path, variant, seed, curve_to(100.0), norm=variant.split("-")[0], probe=probe,
                      norm_mode="frozen" if "frozen" in variant else None)
    results = load_results(tmp_path)

    def noise(run):
        steps, values = zip(*((record.timesteps, record.noise) for record in run.probe), strict=True)
        return {"critic": Series(np.array(steps), np.array(values))}

    with plt.rc_context(STYLE):
        figure = plot_series(results, variant_colors(results), noise, "noise", core_only=True)
    assert figure.axes[0].get_yscale() == "symlog"
    assert [text.get_text() for text in figure.legends[0].get_texts()][:3] == ["none", "bn", "mobn"]
    plt.close(figure)


def test_the_analysis_figures_show_normalized_scores_and_the_noise_dose(tmp_path):
    from test_analysis import SCALE, write_probed

    from rlnorm.analysis.claims import parse_claims
    from rlnorm.analysis.plots import plot_aggregate, plot_dose_response, plot_performance_profile
    from rlnorm.analysis.verdicts import analyze

    for variant, k, level, noise in (("bn", 1, 400, 0.1), ("bn-g4", 4, 300, 0.2), ("bn-g16", 16, 200, 0.4)):
        write_probed(tmp_path, variant, level, noise, norm_kwargs={"ghost_batches": k} if k > 1 else None)
    results = load_results(tmp_path)
    claims = parse_claims([{"name": "dose", "variants": ["bn", "bn-g4", "bn-g16"], "quantity": "final return",
                            "direction": "less"}], {"ppo/CartPole-v1": ["bn", "bn-g4", "bn-g16"]})
    analysis = analyze(results, claims, {task: SCALE for task in results.tasks})
    colors = variant_colors(results)
    with plt.rc_context(STYLE):
        added, ax = plot_dose_response(analysis, colors).axes
        # Left, the noise each dose adds to one network: here no seed's doses shared their first probe point's
        # network (other output spreads), so nothing is paired and the panel says so.
        assert not added.lines and "not measured" in added.texts[0].get_text()
        # Where they are paired, each dose sits at its ratio to the first dose's (1 for the first itself).
        added_noise = (st.Estimate(1.0, 1.0, 1.0), st.Estimate(2.0, 1.8, 2.2), st.Estimate(3.5, 3.0, 4.0))
        paired = SimpleNamespace(dose=tuple(dataclasses.replace(d, added_noise=a)
                                            for d, a in zip(analysis.dose, added_noise, strict=True)))
        added, _ = plot_dose_response(paired, colors).axes
        assert list(added.lines[-1].get_xdata()) == [1.0, 2.0, 3.5]
        assert list(added.lines[-1].get_ydata()) == pytest.approx([400, 300, 200])
        # One point per dose at (mean relative noise, IQM of the final return), joined in dose order.
        chain = ax.lines[-1]
        assert list(chain.get_xdata()) == pytest.approx([0.1, 0.2, 0.4])
        assert list(chain.get_ydata()) == pytest.approx([400, 300, 200])
        # The chain is named once, in the legend; each point by its dose, on a log noise axis.
        assert [text.get_text() for text in ax.get_legend().get_texts()] == ["bn"]
        assert [text.get_text() for text in ax.texts] == ["", "g4", "g16"]
        assert ax.get_xscale() == "log"
        (ax,) = plot_aggregate(analysis, colors).axes
        assert {label.get_text() for label in ax.get_yticklabels()} == {"bn (1)", "bn-g4 (1)", "bn-g16 (1)"}
        (ax,) = plot_performance_profile(analysis, colors).axes
        # bn's runs score 0.76-0.84 (levels 400 +- 20 over the reference 500): all above 0.5, none above 0.9.
        bn = ax.lines[0]
        taus, fractions = bn.get_xdata(), bn.get_ydata()
        assert fractions[np.searchsorted(taus, 0.5)] == 1.0 and fractions[np.searchsorted(taus, 0.9)] == 0.0
    plt.close("all")
