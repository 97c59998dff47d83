"""The `rlnorm` command line: one subcommand per job, each a thin layer over a library function."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rlnorm.study.algorithms import ALGORITHMS, NORM_IN
from rlnorm.study.records import NORM_MODES, PROBE_DRAWS, PROBE_STATES

if TYPE_CHECKING:
    from rlnorm.study.config import StudyConfig


def _cmd_norms(args: argparse.Namespace) -> int:
    from rlnorm.core.norms import describe_norms

    for name, description in describe_norms().items():
        print(f"{name:<10} {description}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from rlnorm.study.config import ConfigError, load_study
    from rlnorm.study.executors import ExecutorError
    from rlnorm.study.study import StudyError, progress_report, run_study, study_progress

    try:
        config = load_study(args.config, out=args.out)
        config = dataclasses.replace(
            config, executor=args.executor or config.executor, workers=args.workers or config.workers
        )
        if args.status:
            # Without --workers or a config's, the local executor's default: one worker per core.
            print(progress_report(study_progress(config), config.out, config.workers or os.cpu_count() or 1))
            return 0
        if args.reproduce:
            return _reproduce(config, args.reproduce)
        if args.address and config.executor != "ray":
            raise ConfigError(f"--address is for the ray executor, and this study uses {config.executor}")
        summary = run_study(config, retry_failed=args.retry_failed, quiet=args.quiet, address=args.address,
                            allow_other_code=args.allow_other_code)
    except (ConfigError, StudyError) as error:
        return _fail(args, error)
    except ExecutorError as error:
        print(f"rlnorm study: error: {error}; finished runs are kept, the same command resumes", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rlnorm study: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(summary.report())
    return 1 if summary.failed else 0


def _reproduce(config: StudyConfig, run_ids: list[str]) -> int:
    import tempfile

    from rlnorm.study.provenance import code_revision, hardware
    from rlnorm.study.study import reproduce_runs

    with tempfile.TemporaryDirectory(prefix="rlnorm-reproduce-") as work:
        reproductions = reproduce_runs(config, run_ids, Path(work))
    here, code = hardware(), code_revision()["source_hash"]
    for run in reproductions:
        if run.failure is not None:
            outcome = f"failed when made again: {run.failure}"
        else:
            outcome = f"{'identical' if run.identical else 'differs in ' + ', '.join(run.differing)} (compared: "
            outcome += f"{', '.join(run.compared)})"
        print(f"{run.run_id}: {outcome}; recorded by training code {run.recorded_code[:12]} on "
              f"{run.recorded_hardware}, made again by {code[:12]} on {here}")
    return 0 if all(run.identical for run in reproductions) else 1


def _cmd_train(args: argparse.Namespace) -> int:
    from rlnorm.study.config import ConfigError, EvalSettings, single_run
    from rlnorm.study.run import run_one
    from rlnorm.study.study import StudyError, check_writable

    try:
        evaluation = EvalSettings(args.eval_every, args.eval_episodes)
        spec = single_run(
            args.algo, args.env, args.norm, args.seed, args.timesteps, args.norm_in, evaluation, args.tensorboard,
            args.norm_mode,
        )
        out = Path(args.out or f"runs/{spec.run_id}")
        check_writable(out)
        if out.is_dir() and any(out.iterdir()):
            raise StudyError(f"--out {out} is not empty; give a new directory")
    except (ConfigError, StudyError) as error:
        return _fail(args, error)
    result = run_one(spec, out)
    outcome = "done" if result.ok else f"failed ({result.reason})"
    print(f"{spec.run_id}: {outcome} in {result.wall_time_s:.0f} s; files in {out}")
    return 0 if result.ok else 1


def _cmd_analyze(args: argparse.Namespace) -> int:
    from rlnorm.analysis.report import analysis_tables, declared, scales_of
    from rlnorm.analysis.results import ResultsError, load_results
    from rlnorm.study.checks import ConfigError

    try:
        results = load_results(args.results)
        print(analysis_tables(results, scales_of(results, declared(results).scores)))
    except (ResultsError, ConfigError) as error:
        return _fail(args, error)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from rlnorm.analysis.plots import plot_study
    from rlnorm.analysis.results import ResultsError, load_results

    try:
        paths = plot_study(load_results(args.results), Path(args.out or Path(args.results) / "plots"))
    except ResultsError as error:
        return _fail(args, error)
    print("\n".join(str(path) for path in paths))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from rlnorm.analysis.report import write_report
    from rlnorm.analysis.results import ResultsError, load_results
    from rlnorm.study.checks import ConfigError

    try:
        markdown, html = write_report(
            load_results(args.results), Path(args.out or Path(args.results) / "report"), args.config, args.seed
        )
    except (ResultsError, ConfigError) as error:
        return _fail(args, error)
    print(f"{markdown}\n{html}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from rlnorm.core.probe import probe_run

    try:
        measured = probe_run(args.run, n_steps=args.steps, n_draws=args.draws, n_probe=args.states)
    except (ValueError, FileNotFoundError) as error:
        return _fail(args, error)
    print("| network | layer | B | minibatch noise | train/eval gap | relative noise | noise excess kurtosis |\n"
          "|---|---|---|---|---|---|---|")
    for network, m in measured.items():
        rows = {"output": (m.noise, m.gap, m.relative_noise, m.noise_excess_kurtosis)}
        rows.update({layer: (m.noise_per_layer[layer], m.gap_per_layer[layer], m.relative_noise_per_layer[layer],
                             m.noise_excess_kurtosis_per_layer[layer]) for layer in m.noise_per_layer})
        for layer, values in rows.items():
            print(f"| {network} | {layer} | {m.batch_size} | " + " | ".join(f"{value:.4g}" for value in values) + " |")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from rlnorm.study.bench import run_bench, training_speed

    if args.speed:
        print("| algo | env | norm | training steps/s (one thread, after learning_starts) |\n|---|---|---|---|")
        for task in args.speed:
            algo, env_id, norm = (task.split(":") + ["none"])[:3]
            try:
                speed = training_speed(algo, env_id, norm)
            except (KeyError, ValueError) as error:
                return _fail(args, error)
            print(f"| {algo} | {env_id} | {norm} | {speed:.0f} |", flush=True)
        return 0
    record = None
    if args.out is not None:
        if args.ppo_steps <= 0 and args.sac_steps <= 0 and not args.cnn:
            return _fail(args, ValueError("--out records training times: give --ppo-steps or --sac-steps above 0, "
                                          "or --cnn"))
        command = (
            f"rlnorm bench --repeats {args.repeats} --ppo-steps {args.ppo_steps} --sac-steps {args.sac_steps} "
            f"--ghost-batches {args.ghost_batches}{' --cnn' if args.cnn else ''} --out {args.out}"
        )
        record = (args.out, command)
    try:
        print(run_bench(repeats=args.repeats, ppo_steps=args.ppo_steps, sac_steps=args.sac_steps, record=record,
                        ghost_batches=args.ghost_batches, cnn=args.cnn))
    except ImportError as error:  # MinAtar's workloads without the minatar extra: the line names it
        return _fail(args, error)
    return 0


def _fail(args: argparse.Namespace, error: Exception) -> int:
    # Bad input: one line saying what is wrong, no traceback.
    print(f"rlnorm {args.command}: error: {error}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from rlnorm import __version__

    parser = argparse.ArgumentParser(
        prog="rlnorm",
        description="Normalization layers for Stable-Baselines3 agents, and the studies that measure what they "
        "do to RL: run a study from a YAML config, then analyze, plot and report it.",
        epilog="`rlnorm COMMAND --help` describes each command; the method is in docs/method.md.",
    )
    parser.add_argument("--version", action="version", version=f"rlnorm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    norms = _command(commands, "norms", "list the registered normalization layers")
    norms.set_defaults(func=_cmd_norms)

    study = _command(commands, "study", "run, or resume, a study: algorithms x envs x norms x seeds")
    study.add_argument("config", help="study config (YAML), e.g. configs/quick.yaml")
    study.add_argument("--out", help="output directory (default: the config's out)")
    study.add_argument("--workers", type=_positive_int, help="runs at the same time (default: the config's)")
    study.add_argument("--executor", choices=["local", "ray"], help="where runs execute (default: the config's)")
    study.add_argument("--address", help="Ray cluster address, e.g. auto (default: start a local Ray)")
    study.add_argument("--retry-failed", action="store_true", help="redo the runs that failed")
    study.add_argument("--allow-other-code", action="store_true",
                       help="resume even if finished runs were made by another version of the training code")
    study.add_argument("--quiet", action="store_true", help="no progress bar, only the summary (for CI logs)")
    instead = study.add_mutually_exclusive_group()
    instead.add_argument("--reproduce", nargs="+", metavar="RUN_ID",
                         help="run nothing of the study: make these finished runs again in a temporary directory "
                              "and say whether their records come out identical (ppo/CartPole-v1/bn/seed-0 ...)")
    instead.add_argument("--status", action="store_true",
                         help="run nothing: print how many runs are done, failed and left, and an estimate of "
                              "the time left from the finished runs' wall times (safe while the study runs)")
    study.set_defaults(func=_cmd_study)

    train = _command(commands, "train", "train and evaluate one run, recorded as a study run is")
    train.add_argument("--algo", required=True, choices=list(ALGORITHMS), help="the algorithm")
    train.add_argument("--env", required=True, help="environment id with an entry in agents/<algo>.yaml")
    train.add_argument("--norm", default="none", help="norm name (`rlnorm norms` lists them; default: none)")
    train.add_argument("--norm-in", default="both", choices=NORM_IN, help="networks with the norm (default: both)")
    train.add_argument("--norm-mode", default="sb3", choices=NORM_MODES, help="see rlnorm.core.policies (default: sb3)")
    train.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    train.add_argument("--timesteps", type=int, help="training steps (default: the agent's zoo budget)")
    train.add_argument("--eval-every", type=int, default=10_000, help="steps between evaluations (default: 10000)")
    train.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default: 10)")
    train.add_argument("--out", help="run directory, new or empty (default: runs/<algo>/<env>/<norm>/seed-<seed>)")
    train.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs")
    train.set_defaults(func=_cmd_train)

    analyze = _command(commands, "analyze", "tables of a results directory: runs, variants, comparisons")
    analyze.add_argument("results", help="a study's output directory")
    analyze.set_defaults(func=_cmd_analyze)

    plot = _command(commands, "plot", "figures of a results directory (PNG and PDF)")
    plot.add_argument("results", help="a study's output directory")
    plot.add_argument("--out", help="where the figures go (default: <results>/plots)")
    plot.set_defaults(func=_cmd_plot)

    report = _command(commands, "report", "Markdown + HTML report with figures and verdicts")
    report.add_argument("results", help="a study's output directory")
    report.add_argument("--out", help="where the report goes (default: <results>/report)")
    report.add_argument("--config", help="a study config whose claims and scores to test (default: the study's own, "
                        "from its study.json, else the default claims)")
    report.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals; the verdicts do not "
                        "depend on it (default: 0)")
    report.set_defaults(func=_cmd_report)

    probe = _command(commands, "probe", "the minibatch-noise probe on a finished run's saved model")
    probe.add_argument("run", help="a run directory (with config.json and model.zip)")
    probe.add_argument("--steps", type=_positive_int, default=2_000, help="states gathered with the policy")
    probe.add_argument("--draws", type=_positive_int, default=PROBE_DRAWS,
                       help=f"minibatches per probe state (default: {PROBE_DRAWS})")
    probe.add_argument("--states", type=_positive_int, default=PROBE_STATES,
                       help=f"probe states (default: {PROBE_STATES})")
    probe.set_defaults(func=_cmd_probe)

    bench = _command(commands, "bench", "compute cost of each norm, and overhead against plain SB3")
    bench.add_argument("--repeats", type=_positive_int, default=5, help="paired repeats (default: 5)")
    bench.add_argument("--ppo-steps", type=int, default=20_000, help="steps per timed PPO run (0: skip)")
    bench.add_argument("--sac-steps", type=int, default=1_000, help="steps per timed SAC run (0: skip)")
    bench.add_argument("--ghost-batches", type=_positive_int, default=1,
                       help="above 1: also time bn, mobn, wn+mobn with that many ghost batches (default: 1)")
    bench.add_argument("--cnn", action="store_true",
                       help="also time PPO's and DQN's updates and rollouts on NatureCNN (84x84x4) and MinAtar's "
                       "network against SB3's CnnPolicy, and sweep the activations-to-weights ratio")
    bench.add_argument(
        "--out",
        type=Path,
        help="also write the training times to this JSON file; as <study results>/bench.json, "
        "`rlnorm report` answers \"WN is cheaper to compute than BN\" from it",
    )
    bench.add_argument(
        "--speed", action="append", metavar="ALGO:ENV[:NORM]",
        help="only measure training steps/s of this task (repeatable), e.g. sac:HalfCheetah-v5:bn",
    )
    bench.set_defaults(func=_cmd_bench)
    return parser


def _command(commands: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    # The summary is both the line in `rlnorm --help` and the description of `rlnorm NAME --help`.
    return commands.add_parser(name, help=summary, description=summary)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
