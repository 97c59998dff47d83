import os
from pathlib import Path

import pytest
import torch

from rlnorm.study.config import load_study
from rlnorm.study.study import run_study

SMOKE = "configs/smoke.yaml"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # Bit-identical results on CPU need the same thread count (docs/method.md#sb3-and-the-norms); one is also
    # fastest here.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def sb3_logdir(tmp_path_factory):
    # SB3 makes an empty SB3-<time> directory in the system temp dir for every model that learns without a logger
    # of its own; keep them in pytest's temporary tree, which pytest cleans up.
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3"))


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Path:
    """The smoke study (configs/smoke.yaml), run once per test session (per worker) without interruption; tests
    read it, or copy it before changing it."""
    out = tmp_path_factory.mktemp("smoke")
    config = load_study(SMOKE, out=out)
    summary = run_study(config, quiet=True)
    assert (summary.done, summary.skipped, summary.failed) == (len(config.runs()), 0, {})
    return out
