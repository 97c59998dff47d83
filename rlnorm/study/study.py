"""A study: every run of a config, run (or resumed) on an executor, with one progress bar.

The output directory holds::

    <algo>/<env>/<variant>/seed-<seed>/   one directory per run (:mod:`rlnorm.study.run` lists its files)
    study.json                            the study config last run in it
    .lock                                 locked while a study process works in it

Resuming is the normal way to run: a run with ``done.json`` is finished and skipped; one with
``failed.json`` failed and stays so unless ``retry_failed``; any other run directory was interrupted and
is removed and redone from scratch. Runs are deterministic, so a study killed at any moment and run again
gives the same results as one never interrupted, each run done exactly once.

A study is made by one version of the training code: resuming with code whose training path differs
from the one that made the finished runs (``code.source_hash`` in their ``done.json``,
:func:`rlnorm.study.provenance.code_revision`) is refused, since the study would mix two codes silently. Resume
with the code that made them (``git worktree add <dir> <their commit>``), or allow it explicitly.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import shutil
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rlnorm.study.checks import did_you_mean
from rlnorm.study.config import RunSpec, StudyConfig
from rlnorm.study.executors import check_executor, run_jobs
from rlnorm.study.provenance import code_revision
from rlnorm.study.records import write_json
from rlnorm.study.run import run_one


class StudyError(Exception):
    """The study cannot start; the message is one line saying why and what to do."""


@dataclass
class StudySummary:
    """How a study invocation ended.

    :param name: the study's name
    :param out: its output directory
    :param total: runs in the study
    :param skipped: runs already finished before this invocation
    :param done: runs finished by this invocation
    :param failed: run id -> reason, for every failed run of the study (also earlier ones not retried)
    :param wall_time_s: duration of this invocation
    """

    name: str
    out: Path
    total: int
    skipped: int = 0
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0

    def report(self) -> str:
        """:return: a few lines: the counts, then one line per failed run"""
        lines = [
            f"{self.name}: {self.total} runs, {self.skipped + self.done} done "
            f"({self.done} now, {self.skipped} before), {len(self.failed)} failed, in {self.wall_time_s:.0f} s; "
            f"results in {self.out}"
        ]
        lines += [f"  failed: {run_id}: {reason}" for run_id, reason in sorted(self.failed.items())]
        if self.failed:
            lines.append("  (details in each run's failed.json; --retry-failed runs them again)")
        return "\n".join(lines)


def run_study(
    config: StudyConfig,
    retry_failed: bool = False,
    quiet: bool = False,
    address: str | None = None,
    allow_other_code: bool = False,
) -> StudySummary:
    """Run the study's runs that are not finished yet.

    :param config: the study
    :param retry_failed: also redo the runs that failed
    :param quiet: no progress bar (for CI logs)
    :param address: the Ray cluster to use with the ray executor (default: a local Ray instance)
    :param allow_other_code: resume even if finished runs were made by another version of the training code
    :return: the summary
    :raises StudyError: if the study cannot start (output directory not writable or in use by another
        study, runs recorded there with other settings or by other code, executor not installed); nothing
        is run then
    """
    start = time.perf_counter()
    # Absolute: Ray workers do not share this process's working directory.
    out = config.out.resolve()
    check_writable(out)
    try:
        check_executor(config.executor)
    except ValueError as error:
        raise StudyError(str(error)) from None
    specs = config.runs()
    summary = StudySummary(config.name, out, total=len(specs))
    with study_lock(out):
        todo = _plan(specs, out, retry_failed, summary, None if allow_other_code else code_revision()["source_hash"])
        write_json(out / "study.json", {**dataclasses.asdict(config), "out": str(out)})
        progress = tqdm(
            total=summary.total, initial=summary.total - len(todo), desc=config.name, unit="run", disable=quiet
        )
        progress.set_postfix(failed=len(summary.failed))
        jobs = [partial(run_one, spec, out / spec.run_id) for spec in todo]
        with progress:
            for result in run_jobs(config.executor, jobs, config.workers, address):
                if result.ok:
                    summary.done += 1
                else:
                    summary.failed[result.run_id] = result.reason or "unknown"
                progress.set_postfix(failed=len(summary.failed), refresh=False)
                progress.update()
    summary.wall_time_s = time.perf_counter() - start
    return summary


@dataclass(frozen=True)
class TaskProgress:
    """How far a study's runs of one task are.

    :param task: ``<algo>/<env>``
    :param runs: runs of the task in the study
    :param done: finished runs
    :param failed: failed runs (redone only with ``retry_failed``)
    :param left_s: estimated seconds one worker needs for the runs still to do: each at its variant's finished
        runs' median wall time (the task's median for a variant with none); 0 with nothing to do, nan when no
        finished run of the task has a wall time to estimate by
    :param longest_s: the longest of those estimates (0 with nothing to do, nan as ``left_s``)
    """

    task: str
    runs: int
    done: int
    failed: int
    left_s: float
    longest_s: float

    @property
    def to_do(self) -> int:
        """:return: runs neither finished nor failed (unstarted, running or interrupted)"""
        return self.runs - self.done - self.failed


def study_progress(config: StudyConfig) -> list[TaskProgress]:
    """Read what is finished in a study's output directory, without taking its lock or changing anything, so it
    can be asked while the study runs.

    :param config: the study
    :return: one entry per task, in the config's order
    """
    out = config.out.resolve()
    wall: dict[tuple[str, str], list[float]] = defaultdict(list)
    runs: Counter[str] = Counter()
    done: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    left: dict[str, list[str]] = defaultdict(list)  # task -> the variant of each run to do
    for spec in config.runs():
        task, run_dir = f"{spec.algo}/{spec.env_id}", out / spec.run_id
        runs[task] += 1
        if (run_dir / "done.json").exists():
            done[task] += 1
            seconds = json.loads((run_dir / "done.json").read_text()).get("wall_time_s")
            if seconds is not None:  # a record without one is counted, not timed
                wall[task, spec.variant.name].append(seconds)
        elif (run_dir / "failed.json").exists():
            failed[task] += 1
        else:
            left[task].append(spec.variant.name)
    progress = []
    for task in runs:
        times = [t for (of, _), values in wall.items() if of == task for t in values]
        task_median = statistics.median(times) if times else math.nan
        estimates = [statistics.median(wall[task, variant]) if wall[task, variant] else task_median
                     for variant in left[task]]
        progress.append(TaskProgress(task, runs[task], done[task], failed[task], sum(estimates, 0.0),
                                     max(estimates, default=0.0)))
    return progress


def progress_report(progress: list[TaskProgress], out: Path, workers: int) -> str:
    """:param progress: the study's tasks (:func:`study_progress`)
    :param out: the directory they were read from
    :param workers: runs at the same time
    :return: the directory, one line per task, then the total with the time left at that many workers: the
        CPU time shared among them, and never less than the longest run left"""
    lines = [f"{out}:"]
    for task in progress:
        left = "nothing left" if task.to_do == 0 else (
            "time left unknown (no finished run with a wall time)" if math.isnan(task.left_s)
            else f"about {task.left_s / 3600:.2f} CPU-hours left")
        lines.append(f"{task.task}: {task.done} of {task.runs} done, {task.failed} failed, {task.to_do} to do: {left}")
    cpu, wall, unestimated = time_left(progress, workers)
    to_do = sum(task.to_do for task in progress)
    total = (f"in all: {sum(task.done for task in progress)} of {sum(task.runs for task in progress)} done, "
             f"{sum(task.failed for task in progress)} failed, {to_do} to do")
    if unestimated == to_do > 0:
        total += ": time left unknown (no finished run with a wall time)"
    elif to_do:
        total += (f": about {cpu / 3600:.2f} CPU-hours, {wall / 3600:.2f} h with {workers} "
                  f"worker{'s' if workers > 1 else ''}")
        total += f", plus {unestimated} run{'s' if unestimated > 1 else ''} not estimated" if unestimated else ""
        total += " (from the finished runs' median wall time per variant, on the machines that made them)"
    lines.append(total)
    return "\n".join(lines)


def time_left(progress: list[TaskProgress], workers: int) -> tuple[float, float, int]:
    """:param progress: the study's tasks (:func:`study_progress`)
    :param workers: runs at the same time
    :return: the estimated CPU seconds of the runs to do, the wall seconds that many workers need for them (the
        CPU time shared among the workers the runs can keep busy, and never less than the longest run), and the
        number of runs left out for want of an estimate"""
    measured = [task for task in progress if task.to_do and not math.isnan(task.left_s)]
    cpu = sum(task.left_s for task in measured)
    busy = min(workers, sum(task.to_do for task in measured))
    wall = max([cpu / busy, *(task.longest_s for task in measured)]) if measured else 0.0
    return cpu, wall, sum(task.to_do for task in progress if task.to_do and math.isnan(task.left_s))


COMPARED_RECORDS = ("evaluations.npz", "monitor.csv", "probe.csv", "statistics.csv")
"""What a run made again must reproduce: its evaluations, training episodes (reward and length), probe and
statistics drift. Times, and the logs that carry them, differ from one making to the next."""


@dataclass(frozen=True)
class Reproduction:
    """A finished run made again, against its record.

    :param run_id: the run
    :param compared: the records of :data:`COMPARED_RECORDS` compared (the ones the recorded run has)
    :param differing: those that came out different
    :param failure: why the run failed when made again (None if it finished)
    :param recorded_code: ``source_hash`` of the training code that made the record
    :param recorded_hardware: the processor that made it
    """

    run_id: str
    compared: tuple[str, ...]
    differing: tuple[str, ...]
    failure: str | None
    recorded_code: str
    recorded_hardware: str

    @property
    def identical(self) -> bool:
        """:return: whether it finished again with every compared record the same"""
        return self.failure is None and not self.differing


def reproduce_runs(config: StudyConfig, run_ids: list[str], work: Path) -> list[Reproduction]:
    """Make finished runs of a study again, in ``work`` and with the training code imported now, and compare their
    records with the recorded ones. Runs repeat bit for bit only with the same training code on the same kind
    of processor: this is how a machine checks that it can extend a study made elsewhere.

    :param config: the study
    :param run_ids: the runs to make again (``<algo>/<env>/<variant>/seed-<seed>``), each finished in ``config.out``
    :param work: where to make them (the study's own directory is not touched)
    :return: one entry per run, in the order given (a run named twice is made once)
    :raises StudyError: for a run id the config does not have, a run not finished, or one recorded with other
        settings than the config's
    """
    specs = {spec.run_id: spec for spec in config.runs()}
    out = config.out.resolve()
    run_ids = list(dict.fromkeys(run_ids))
    for run_id in run_ids:
        if run_id not in specs:
            raise StudyError(f"{run_id!r} is not a run of study {config.name!r}{did_you_mean(run_id, list(specs))}; "
                             f"runs are named <algo>/<env>/<variant>/seed-<seed>, an env id's '/' written '-'")
        if not (out / run_id / "done.json").exists():
            raise StudyError(f"{run_id} has not finished in {out}: only finished runs can be made again")
        _check_same_settings(specs[run_id], out / run_id)
    reproductions = []
    for run_id in run_ids:
        recorded, made = out / run_id, work / run_id
        record = json.loads((recorded / "done.json").read_text())
        result = run_one(specs[run_id], made)
        compared = tuple(name for name in COMPARED_RECORDS if (recorded / name).exists())
        differing = tuple(name for name in compared if result.ok and not _same_record(made / name, recorded / name))
        reproductions.append(Reproduction(
            run_id, compared, differing, None if result.ok else result.reason or "unknown",
            record.get("code", {}).get("source_hash", "unknown"), record.get("hardware", "unknown hardware"),
        ))
    return reproductions


def _same_record(made: Path, recorded: Path) -> bool:
    if not made.exists():
        return False
    if made.name.endswith(".npz"):
        with np.load(made) as new, np.load(recorded) as old:
            return new.files == old.files and all(np.array_equal(new[key], old[key]) for key in old.files)
    # A monitor file's first line carries the start time, and each episode's third column its wall-clock time.
    if made.name == "monitor.csv":
        return _episodes(made) == _episodes(recorded)
    return made.read_text() == recorded.read_text()


def _episodes(monitor: Path) -> list[list[str]]:
    return [line.split(",")[:2] for line in monitor.read_text().splitlines()[1:]]


def _plan(
    specs: list[RunSpec], out: Path, retry_failed: bool, summary: StudySummary, source_hash: str | None
) -> list[RunSpec]:
    """Sort the runs into finished, failed and to do, and clear the directories of the runs to redo.

    :param source_hash: the training code's; finished runs made by other code are refused (None: allowed)
    :return: the runs to do
    """
    todo = []
    for spec in specs:
        run_dir = out / spec.run_id
        done, failed = run_dir / "done.json", run_dir / "failed.json"
        if done.exists() or (failed.exists() and not retry_failed):
            _check_same_settings(spec, run_dir)
        if done.exists() and source_hash is not None:
            _check_same_code(done, source_hash)
        if done.exists():
            summary.skipped += 1
        elif failed.exists() and not retry_failed:
            summary.failed[spec.run_id] = json.loads(failed.read_text())["reason"]
        else:
            todo.append(spec)
    # Only now, once no recorded run contradicts the config, remove anything.
    for spec in todo:
        shutil.rmtree(out / spec.run_id, ignore_errors=True)
    return todo


def _check_same_settings(spec: RunSpec, run_dir: Path) -> None:
    """A recorded run must have been made with the settings the config gives it now: results made with
    another budget, say, would be mixed into the study silently."""
    config_file = run_dir / "config.json"
    if not config_file.exists():  # a run that failed before writing it
        return
    differences = _differences(json.loads(config_file.read_text())["run"], spec.to_dict())
    if differences:
        key, (was, now) = next(iter(differences.items()))
        raise StudyError(
            f"{run_dir} was run with {key}={was!r} but the config now says {now!r}; "
            "use another --out, or remove that run's directory"
        )


def _check_same_code(done: Path, source_hash: str) -> None:
    code = json.loads(done.read_text()).get("code") or {}
    if code.get("source_hash") != source_hash:
        made_by = (f"training code {code['source_hash'][:12]} (commit {code.get('commit') or 'unknown'})"
                   if code.get("source_hash") else "code that recorded no revision")
        raise StudyError(
            f"{done.parent} was made by {made_by}, and this code's training path is {source_hash[:12]}: resume "
            "with the code that made the study's runs (git worktree add <dir> <commit>), use another --out, "
            "or pass --allow-other-code to mix them"
        )


def _differences(recorded: dict[str, Any], current: dict[str, Any], prefix: str = "") -> dict[str, tuple]:
    # Only the recorded keys count, so that a setting added to RunSpec later (with a default) does not
    # invalidate the runs made before it existed.
    differences = {}
    for key, was in recorded.items():
        now = current.get(key)
        if isinstance(was, dict) and isinstance(now, dict) and was and now:
            differences.update(_differences(was, now, f"{prefix}{key}."))
        elif was != now:
            differences[f"{prefix}{key}"] = (was, now)
    return differences


def check_writable(path: Path) -> None:
    """Check, without writing anything, that a directory can be created or written at ``path``.

    :param path: the directory
    :raises StudyError: if it cannot
    """
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise StudyError(f"cannot write to {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StudyError(f"cannot write to {path}: {existing} is not writable")


@contextmanager
def study_lock(out: Path) -> Iterator[None]:
    """Hold the output directory for this process: two studies writing the same runs would corrupt them.
    The lock is the operating system's, so it is released when the process ends, even by SIGKILL.

    :param out: the output directory, created if needed
    :raises StudyError: if another process holds it
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock_file = open(out / ".lock", "a+")  # noqa: SIM115 (closed by the with statement below)
    except OSError as error:  # what check_writable cannot see: a read-only file system, /proc, ...
        raise StudyError(f"cannot write to {out}: {error.strerror}") from None
    with lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "?"
            raise StudyError(
                f"another study (process {holder}) is running in {out}; wait for it to end, or use another --out"
            ) from None
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        yield
