"""The on-disk record of a run, shared by what writes it (the runner) and what reads it (the analysis).

Plain Python, no torch: the analysis imports it without the training stack.
"""

from __future__ import annotations

NORM_MODES = ("sb3", "consistent", "frozen", "fixed")
"""The norm modes in ladder order, each removing one more mechanism (see docs/method.md#mechanisms-and-norm-modes)."""

OUTPUT_LAYER = "output"
"""The ``layer`` value of probe rows measured at a network's output."""

PROBE_COLUMNS = ("timesteps", "network", "layer", "batch_size", "pool_size", "noise", "gap", "relative_noise",
                 "noise_excess_kurtosis")
"""The columns of ``probe.csv``: one row per probe, network and layer (``output`` or a normalized layer's module
name); ``batch_size`` is the B probed at, ``pool_size`` the number of states the minibatches came from (equal to
it, every draw is the same batch and the noise is 0 by construction). Records written before the scale-free probe
have only timesteps, network, layer, noise and gap."""
