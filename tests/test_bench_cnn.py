"""The convolutional bench: sizes and FLOPs computed from the layers themselves, each workload timing the model it
names, and its record read by the report (the CNN rows of "WN is cheaper to compute than BN")."""

import json

import numpy as np
import pytest
import torch
from test_analysis import run_analysis
from test_results import write_study
from torch import nn

from rlnorm.analysis.results import CNN_BENCH_REFERENCE
from rlnorm.cli import main
from rlnorm.core.norms import NormalizedLayer
from rlnorm.study import bench_cnn
from rlnorm.study.bench_cnn import (
    ATARI_SHAPE,
    Workload,
    build_model,
    conv_size,
    nature_convolutions,
    norm_flops,
    ratio_sweep,
    time_workload,
)

MINATAR_UPDATE = Workload("dqn", "MinAtarCNN", "update", 8)


def test_conv_size_counts_what_the_convolutions_compute():
    convolutions = nature_convolutions("none")
    outputs = []
    for conv in convolutions:
        if isinstance(conv, nn.Conv2d):
            conv.register_forward_hook(lambda module, args, out: outputs.append(out.numel()))
    convolutions(torch.zeros(3, *ATARI_SHAPE))
    size = conv_size([m for m in convolutions if isinstance(m, nn.Conv2d)], 3, ATARI_SHAPE)
    assert size.activations == sum(outputs)
    assert size.weights == sum(m.weight.numel() for m in convolutions if isinstance(m, nn.Conv2d))
    # A multiply-add per weight of a kernel, for each output: in_channels x 8 x 8 for the first layer.
    assert size.conv_flops > 2 * outputs[0] * ATARI_SHAPE[0] * 8 * 8


def test_weight_normalizations_flops_vanish_with_the_batch_and_batchnorms_do_not():
    convolutions = [m for m in nature_convolutions("none") if isinstance(m, nn.Conv2d)]
    small, large = (conv_size(convolutions, batch, ATARI_SHAPE) for batch in (2, 256))
    assert norm_flops("wn", large) == pytest.approx(norm_flops("wn", small) / 128)
    assert norm_flops("bn", large) == pytest.approx(norm_flops("bn", small))
    assert norm_flops("none", large) == 0 and norm_flops("wn", large) < norm_flops("bn", large)


def test_each_variant_is_the_policy_it_names_with_the_update_buffer_filled():
    sb3, bn = (build_model(MINATAR_UPDATE, variant) for variant in (CNN_BENCH_REFERENCE, "bn"))
    layers = [type(m).__name__ for m in bn.policy.q_net.features_extractor.modules() if isinstance(m, NormalizedLayer)]
    assert layers == ["NormalizedLayer", "NormalizedLayer"]
    assert not any(isinstance(m, NormalizedLayer) for m in sb3.policy.modules())
    for model in (sb3, bn):
        assert model.replay_buffer.size() >= MINATAR_UPDATE.batch and model._n_updates == 0


@pytest.fixture
def short_measurements(monkeypatch):
    """Measurements of about 10 ms: these tests check what is timed and recorded, not how precisely."""
    monkeypatch.setattr(bench_cnn, "TARGET_MEASUREMENT_S", 0.01)


def test_workloads_and_sweep_are_timed_in_paired_repeats(short_measurements):
    times = time_workload(MINATAR_UPDATE, [CNN_BENCH_REFERENCE, "wn"], repeats=3)
    assert list(times) == [CNN_BENCH_REFERENCE, "wn"] and all(len(t) == 3 and min(t) > 0 for t in times.values())
    points = ratio_sweep(["none", "bn"], batches=(2, 4), repeats=2)
    assert [p.batch for p in points] == [2, 4] and points[1].size.activations == 2 * points[0].size.activations
    assert points[1].ratio == pytest.approx(2 * points[0].ratio)
    assert all(len(t) == 2 and min(t) > 0 for p in points for t in p.times.values())


def test_bench_cnn_records_what_the_report_decides_claim_4_on(tmp_path, monkeypatch, capsys, short_measurements):
    monkeypatch.setattr(bench_cnn, "WORKLOADS", (MINATAR_UPDATE, Workload("dqn", "MinAtarCNN", "rollout", 2)))
    monkeypatch.setattr(bench_cnn, "SWEEP_BATCHES", (2, 4))
    out = tmp_path / "bench.json"
    assert main(["bench", "--repeats", "2", "--ppo-steps", "0", "--sac-steps", "0", "--cnn", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| dqn/MinAtarCNN MinAtar Breakout update x8 | wn |" in printed
    record = json.loads(out.read_text())
    assert record["command"].endswith("--cnn --out " + str(out))
    assert list(record["cnn_time_s"]) == [MINATAR_UPDATE.name, "dqn/MinAtarCNN MinAtar Breakout rollout x2"]
    assert [p["batch"] for p in record["conv_sweep"]] == [2, 4]
    assert set(record["conv_sweep"][0]["norm_flops"]) == set(record["conv_sweep"][0]["times"])
    assert np.all(np.asarray(record["cnn_time_s"][MINATAR_UPDATE.name]["times"]["bn"]) > 0)
    write_study(tmp_path, {"wn": [1.0, 2.0], "bn": [1.0, 2.0]})
    claim_4 = [v for v in run_analysis(tmp_path).verdicts if v.claim.name == "WN is cheaper to compute than BN"]
    # The update is timed in training; the rollout, an eval-mode forward where both norms fold away, is not.
    assert [v.scope for v in claim_4] == [MINATAR_UPDATE.name]
    assert claim_4[0].parts[0].test.sizes == ((2,),)
