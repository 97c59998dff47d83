"""Where a record comes from: the machine, the package versions, and the code that made it.

A run's numbers are bit-identical only on the same kind of processor with the same versions and code, so
every run record (``done.json``) and bench record names all three.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import sb3_contrib
import stable_baselines3
import torch

import rlnorm

#: The modules that decide what a run computes from its spec (the spec itself is in the run's config.json).
#: Study parsing, analysis, plots and reports are left out: editing them changes no run's numbers.
TRAINING_MODULES = (
    "study/agents", "study/algorithms", "study/callbacks", "core/envs", "core/extractors", "core/norms",
    "core/policies", "core/probe", "study/records", "study/run",
)
_PACKAGE_DIR = Path(rlnorm.__file__).resolve().parent
_REPOSITORY = _PACKAGE_DIR.parent


def peak_memory_mib() -> float:
    """:return: the peak resident memory of this process so far (a worker's, over the runs it did), in MiB"""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts in KiB, macOS in bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def hardware() -> str:
    """:return: the processor model, core count and memory of this machine, in one line"""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
    memory = ""
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    return f"{model}, {os.cpu_count()} cores{memory}"


def versions() -> dict[str, str]:
    """:return: the versions of Python and of the packages that decide a run's numbers"""
    return {
        "python": platform.python_version(),
        "rlnorm": rlnorm.__version__,
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
    }


def training_sources() -> list[Path]:
    """:return: the files whose content decides a run's numbers: :data:`TRAINING_MODULES` and the agents'
    hyperparameter files"""
    from rlnorm.study.agents import _REPO_AGENTS_DIR

    return [_PACKAGE_DIR / f"{name}.py" for name in TRAINING_MODULES] + sorted(_REPO_AGENTS_DIR.glob("*.yaml"))


def code_revision() -> dict[str, Any]:
    """The code a run is made with.

    :return: ``commit``, the repository's full git commit (None outside a git checkout); ``source_hash``,
        the SHA-256 of the training sources (:func:`training_sources`), which changes only when the training
        path does, not with a commit of run records or of the analysis; ``dirty``, whether tracked files of
        the training path differ from the commit (None outside a git checkout)
    """
    digest = hashlib.sha256()
    for path in training_sources():
        digest.update(path.relative_to(_REPOSITORY).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        changed = _git("status", "--porcelain", "--untracked-files=no", "--",
                       *[str(path.relative_to(_REPOSITORY)) for path in training_sources()])
        dirty = bool(changed)
    return {"commit": commit, "source_hash": digest.hexdigest(), "dirty": dirty}


@functools.cache
def loaded_code_revision() -> dict[str, Any]:
    """:return: :func:`code_revision` as it was when this process first asked, which a run does as it starts:
    the code the process loaded, not whatever the files hold by the time a long run ends"""
    return code_revision()


def _git(*arguments: str) -> str | None:
    try:
        result = subprocess.run(["git", *arguments], cwd=_REPOSITORY, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
