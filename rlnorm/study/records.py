"""The on-disk record of a run, shared by what writes it (the runner) and what reads it (the analysis).

Plain Python, no torch: the analysis imports it without the training stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

NORM_MODES = ("sb3", "consistent", "frozen", "fixed")
"""The norm modes in ladder order, each removing one more mechanism (see docs/method.md#mechanisms-and-norm-modes)."""

EVAL_SEED_OFFSET = 1_000_000
"""A run's evaluation environments are seeded from its seed plus this (``eval_seed`` in its config.json), so they
never replay the training environments' episodes."""

PROBE_STATES = 16
"""Probe states per network, by default (a study's ``probe.states``, ``rlnorm probe --states``)."""
PROBE_DRAWS = 8
"""Minibatches drawn per probe state, by default (a study's ``probe.draws``, ``rlnorm probe --draws``)."""

OUTPUT_LAYER = "output"
"""The ``layer`` value of probe rows measured at a network's output."""

PROBE_COLUMNS = ("timesteps", "network", "layer", "batch_size", "pool_size", "noise", "gap", "relative_noise",
                 "noise_excess_kurtosis")
"""The columns of ``probe.csv``: one row per probe, network and layer (``output`` or a normalized layer's module
name); ``batch_size`` is the B probed at, ``pool_size`` the number of states the minibatches came from (equal to
it, every draw is the same batch and the noise is 0 by construction, unless a layer injects noise). Records
written before the scale-free probe have only timesteps, network, layer, noise and gap."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON file atomically (write, then rename): a reader, or a resumed study, sees the whole
    file or none of it.

    :param path: the file
    :param data: its content; classes are written by name, other objects by their repr
    """
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=_describe) + "\n")
    os.replace(temporary, path)


def _describe(value: Any) -> str:
    """JSON form of the hyperparameters that are objects: classes by name, others (schedules) by repr."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def env_directory(env_id: str) -> str:
    """:param env_id: an env id, possibly with a namespace (``MinAtar/Breakout-v1``)
    :return: the one directory level it names in a run's path (``MinAtar-Breakout-v1``)"""
    return env_id.replace("/", "-")
