"""Where the runs of a study execute: a local process pool, or Ray tasks on a cluster.

An executor takes jobs, zero-argument callables that pickle (such as a ``functools.partial`` of a
module-level function), runs each once, and yields their results as they finish, in any order.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

Result = TypeVar("Result")
Job = Callable[[], Result]

EXECUTORS = ("local", "ray")
# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


class ExecutorError(RuntimeError):
    """The executor cannot go on: a worker process died (killed, or out of memory), or the Ray cluster
    cannot be reached."""


def check_executor(executor: str) -> None:
    """:param executor: ``local`` or ``ray``
    :raises ValueError: if the executor's package is not installed
    """
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("the ray executor needs the ray package: pip install 'rlnorm[ray]'") from None


def run_jobs(
    executor: str, jobs: Sequence[Job], workers: int | None = None, address: str | None = None
) -> Iterator[Result]:
    """Run jobs on an executor.

    :param executor: ``local`` or ``ray``
    :param jobs: the jobs
    :param workers: jobs run at the same time (default: local, the number of cores; ray, as many as the
        cluster's CPUs allow)
    :param address: the Ray cluster to connect to (default: start a local Ray instance)
    :return: the jobs' results, as they finish
    """
    if executor == "ray":
        return run_ray(jobs, workers, address)
    return run_local(jobs, workers)


def run_local(jobs: Sequence[Job], workers: int | None = None) -> Iterator[Result]:
    """Run jobs in a pool of ``workers`` processes, started with ``spawn``: a fresh interpreter per worker,
    with no torch or thread state inherited from this one.

    :param jobs: the jobs
    :param workers: number of processes (default: the number of cores)
    :return: the jobs' results, as they finish
    :raises ExecutorError: if a worker process died
    """
    if not jobs:
        return
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool:
            raise ExecutorError("a worker process died (killed, or out of memory?)") from None
        finally:
            # On an error or an interrupt, do not start the jobs still waiting.
            pool.shutdown(wait=True, cancel_futures=True)


def _die_with(parent_pid: int) -> None:
    """Pool initializer: make the worker die with the study process. Otherwise a worker of a killed study
    keeps writing into a run directory that the resumed study is redoing from scratch."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The study may have died before prctl took effect.
    if os.getppid() != parent_pid:
        os._exit(1)


def run_ray(jobs: Sequence[Job], workers: int | None = None, address: str | None = None) -> Iterator[Result]:
    """Run jobs as Ray tasks of one CPU each. On a cluster, every node must see the study's output
    directory (a shared file system) and have rlnorm installed.

    :param jobs: the jobs
    :param workers: jobs in flight at once (default: local, the number of cores; on a cluster, all)
    :param address: the cluster to connect to, e.g. ``auto`` (default: start a local Ray instance)
    :return: the jobs' results, as they finish
    :raises ExecutorError: if the cluster cannot be reached, or a task's worker died
    """
    import ray

    if not jobs:
        return
    try:
        ray.init(
            address=address,
            num_cpus=None if address else workers or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            logging_level="error",
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        message = f"cannot start or reach Ray (address {address or 'local'}): {error}"
        raise ExecutorError(message.splitlines()[0]) from None
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_call)
        waiting, running = list(jobs), []
        in_flight = workers or len(jobs)
        while waiting or running:
            while waiting and len(running) < in_flight:
                running.append(task.remote(waiting.pop(0)))
            finished, running = ray.wait(running, num_returns=1)
            try:
                yield ray.get(finished[0])
            except ray.exceptions.RayError as error:
                raise ExecutorError(f"a Ray task failed: {error}".splitlines()[0]) from None
    finally:
        ray.shutdown()


def _call(job: Job) -> Result:
    return job()
