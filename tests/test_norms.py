"""Layer math of the norms (docs/method.md#norms) and the registry."""

import pytest
import torch
from torch import nn

from rlnorm.core import norms
from rlnorm.core.norms import (
    BatchNorm,
    BatchRenorm,
    MeanOnlyBatchNorm,
    NormalizedLayer,
    available_norms,
    get_norm,
    normalize_mlp,
    register_norm,
    validate_norm,
)
from rlnorm.core.probe import untouched

BATCH_DEPENDENT = ["bn", "mobn", "wn+mobn", "brn"]
BATCH_INDEPENDENT = ["wn", "ln", "rms", "sn"]


def hidden_layer(norm: str, in_features: int = 6, out_features: int = 5, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return get_norm(norm).factory(nn.Linear(in_features, out_features), **kwargs)


def test_registry_lists_every_required_norm():
    assert available_norms()[:10] == ["none", "bn", "mobn", "wn", "wn+mobn", "ln", "brn", "rms", "sn", "pnorm"]


def test_mean_only_batch_norm_train_mode_centres_on_bias_and_keeps_variance():
    torch.manual_seed(0)
    layer = MeanOnlyBatchNorm(4, momentum=0.1)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
    x = torch.randn(64, 4) * 3 + 7
    y = layer(x)
    torch.testing.assert_close(y.mean(dim=0), layer.bias.detach())
    torch.testing.assert_close(y.var(dim=0), x.var(dim=0))
    # running mean moved by momentum * batch mean, in place
    torch.testing.assert_close(layer.running_mean, 0.1 * x.mean(dim=0))


def test_mean_only_batch_norm_eval_mode_uses_running_mean_and_does_not_update_it():
    layer = MeanOnlyBatchNorm(3)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
        layer.bias.fill_(0.5)
    layer.eval()
    x = torch.randn(10, 3)
    torch.testing.assert_close(layer(x), x - torch.tensor([1.0, 2.0, 3.0]) + 0.5)
    torch.testing.assert_close(layer.running_mean, torch.tensor([1.0, 2.0, 3.0]))


def test_weight_norm_effective_weight_is_g_v_over_norm_v_per_output_unit():
    layer = hidden_layer("wn")
    linear = layer.layer
    with torch.no_grad():
        linear.parametrizations.weight.original0.copy_(torch.arange(1.0, 6.0).view(5, 1))
    g = linear.parametrizations.weight.original0
    v = linear.parametrizations.weight.original1
    torch.testing.assert_close(linear.weight, g * v / v.norm(dim=1, keepdim=True))
    torch.testing.assert_close(linear.weight.norm(dim=1), torch.arange(1.0, 6.0))


def test_weight_norm_default_init_keeps_the_plain_weight():
    torch.manual_seed(3)
    plain = nn.Linear(6, 5)
    expected = plain.weight.detach().clone()
    layer = get_norm("wn").factory(plain)
    torch.testing.assert_close(layer.layer.weight, expected)


@pytest.mark.parametrize("norm", BATCH_DEPENDENT + BATCH_INDEPENDENT)
def test_batch_dependence_in_train_mode(norm):
    layer = hidden_layer(norm)
    layer.train()
    torch.manual_seed(1)
    sample = torch.randn(1, 6)
    batch_a = torch.cat([sample, torch.randn(15, 6)])
    batch_b = torch.cat([sample, torch.randn(15, 6) * 4 + 2])
    with torch.no_grad():
        out_a, out_b = layer(batch_a)[0], layer(batch_b)[0]
    if norm in BATCH_DEPENDENT:
        assert not torch.allclose(out_a, out_b, atol=1e-4)
    else:
        torch.testing.assert_close(out_a, out_b)


@pytest.mark.parametrize("norm", BATCH_DEPENDENT)
def test_eval_mode_is_batch_independent_and_leaves_statistics_alone(norm):
    layer = hidden_layer(norm)
    layer.train()
    layer(torch.randn(32, 6))
    layer.eval()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    sample = torch.randn(1, 6)
    with torch.no_grad():
        alone = layer(sample)
        in_batch = layer(torch.cat([sample, torch.randn(9, 6) * 5]))[:1]
    torch.testing.assert_close(alone, in_batch)
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_layer_norm_normalizes_each_sample():
    layer = hidden_layer("ln")
    y = layer(torch.randn(8, 6))
    torch.testing.assert_close(y.mean(dim=1), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=1, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)


def test_batch_norm_train_mode_standardizes_the_batch():
    layer = hidden_layer("bn")
    y = layer(torch.randn(128, 6) * 3 + 1)
    torch.testing.assert_close(y.mean(dim=0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=0, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)


def test_batch_renorm_is_batch_norm_during_warm_up_then_uses_running_statistics():
    torch.manual_seed(0)
    layer = BatchRenorm(3, warmup_steps=1, r_max=1e6, d_max=1e6)
    x = torch.randn(64, 3) * 2 + 5
    expected = (x - x.mean(0)) / (x.var(0) + layer.eps).sqrt()
    torch.testing.assert_close(layer(x), expected)
    layer(x)
    # Unclipped after warm-up, r and d turn the batch statistics into the running ones (in value).
    running_mean, running_var = layer.running_mean.clone(), layer.running_var.clone()
    y = layer(x)
    torch.testing.assert_close(y, (x - running_mean) / (running_var + layer.eps).sqrt(), atol=1e-3, rtol=1e-3)
    assert layer.running_batches.item() == 3


def test_batch_renorm_with_unit_clips_stays_batch_norm():
    torch.manual_seed(0)
    layer = BatchRenorm(3, warmup_steps=0, r_max=1.0, d_max=0.0)
    x = torch.randn(64, 3) * 2 + 5
    layer(x)
    y = layer(x)
    torch.testing.assert_close(y, (x - x.mean(0)) / (x.var(0) + layer.eps).sqrt())


def test_spectral_norm_keeps_power_iteration_vectors_as_running_buffers():
    layer = hidden_layer("sn", 8, 8)
    names = [name for name, _ in layer.named_buffers()]
    assert any(name.endswith("running_u") for name in names)
    assert any(name.endswith("running_v") for name in names)
    layer.train()
    for _ in range(30):
        layer(torch.randn(4, 8))
    sigma = torch.linalg.matrix_norm(layer.layer.weight.detach(), ord=2)
    assert abs(sigma.item() - 1.0) < 1e-3


def test_spectral_norm_updates_vectors_in_place():
    layer = hidden_layer("sn", 8, 8)
    u = layer.layer.parametrizations.weight[0].running_u
    before = u.clone()
    with torch.no_grad():
        layer.layer.parametrizations.weight.original.mul_(torch.randn(8, 8))
    layer(torch.randn(4, 8))
    assert layer.layer.parametrizations.weight[0].running_u is u
    assert not torch.equal(u, before)


def test_data_dependent_init_standardizes_the_first_batch():
    layer = hidden_layer("wn", init="data")
    assert not layer.data_initialized
    x = torch.randn(256, 6) * 4 + 3
    y = layer(x)
    assert layer.data_initialized
    torch.testing.assert_close(y.mean(dim=0), torch.zeros(5), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(dim=0), torch.ones(5), atol=1e-4, rtol=0)
    # only once
    g = layer.layer.parametrizations.weight.original0.clone()
    layer(x * 10)
    torch.testing.assert_close(layer.layer.parametrizations.weight.original0, g)


def test_data_dependent_init_with_mean_only_batch_norm_sets_only_the_scale():
    layer = hidden_layer("wn+mobn", init="data")
    x = torch.randn(256, 6) * 4 + 3
    pre = layer.layer
    layer(x)
    t = pre(x)
    torch.testing.assert_close(t.std(dim=0), torch.ones(5), atol=1e-4, rtol=0)
    assert pre.bias is None  # the mean-only BN's bias is the only shift


def test_data_dependent_init_is_not_done_in_eval_mode():
    layer = hidden_layer("wn", init="data").eval()
    layer(torch.randn(16, 6))
    assert not layer.data_initialized


@pytest.mark.parametrize("norm", ["bn", "mobn", "wn+mobn", "brn"])
def test_batch_of_one_in_train_mode_is_a_clear_error(norm):
    layer = hidden_layer(norm)
    with pytest.raises(ValueError, match="batch of 1 sample"):
        layer(torch.randn(1, 6))


def test_unknown_norm_names_it_and_lists_registered():
    with pytest.raises(ValueError, match=r"unknown norm 'batchnorm'.*none, bn, mobn, wn, wn\+mobn, ln"):
        validate_norm("batchnorm")


def test_unknown_norm_option_names_the_key():
    with pytest.raises(ValueError, match="norm 'bn' has no option 'momentun'; its options: momentum, eps"):
        validate_norm("bn", {"momentun": 0.1})


def test_wn_mobn_options_reach_their_layers():
    layer = hidden_layer("wn+mobn", momentum=0.3, init="data")
    assert layer.norm.momentum == 0.3
    assert layer.data_init


def test_bad_option_values_are_named():
    with pytest.raises(ValueError, match="init must be 'default' or 'data', got 'orthogonal'"):
        hidden_layer("wn", init="orthogonal")
    with pytest.raises(ValueError, match="momentum must be in"):
        hidden_layer("mobn", momentum=2.0)


def test_normalize_mlp_skips_the_output_layer_and_places_pnorm_before_it():
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    normalize_mlp(net, "ln", has_output_layer=True)
    assert [type(m).__name__ for m in net] == ["NormalizedLayer", "ReLU", "NormalizedLayer", "ReLU", "Linear"]

    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    normalize_mlp(net, "pnorm", has_output_layer=True)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear", "ReLU", "PenultimateNorm", "Linear"]
    features = net[:5](torch.randn(7, 3))
    torch.testing.assert_close(features.norm(dim=1), torch.ones(7))


def test_register_norm_makes_a_user_norm_available(monkeypatch):
    monkeypatch.setattr(norms, "_REGISTRY", dict(norms._REGISTRY))

    def dropout_after(linear: nn.Linear, p: float = 0.1) -> nn.Module:
        return NormalizedLayer(linear, nn.Dropout(p))

    register_norm("dropout", dropout_after, "dropout after each hidden layer")
    assert "dropout" in available_norms()
    assert validate_norm("dropout", {"p": 0.2}).options == ("p",)
    net = normalize_mlp(nn.Sequential(nn.Linear(2, 4), nn.ReLU()), "dropout", {"p": 0.5})
    assert isinstance(net[0].norm, nn.Dropout) and net[0].norm.p == 0.5


FOLDABLE = ["bn", "mobn", "wn", "wn+mobn", "brn", "sn"]


def trained_layer(norm: str) -> nn.Module:
    layer = hidden_layer(norm)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(5):
        layer(torch.randn(32, 6) * 2 + 1).pow(2).mean().backward()
        optimizer.step()
    return layer.eval()


def assert_folding_keeps_the_function(layer: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        unfolded = layer(x)
        layer.start_folding()
        folded = layer(x)
    assert layer._folded is not None
    torch.testing.assert_close(folded, unfolded, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", FOLDABLE)
def test_folded_eval_layer_computes_the_same_function(norm):
    assert_folding_keeps_the_function(trained_layer(norm), torch.randn(16, 6))


@pytest.mark.parametrize("norm", ["bn", "wn+mobn"])
def test_fold_cache_is_dropped_when_parameters_can_change(norm):
    layer = trained_layer(norm)
    layer.start_folding()
    x = torch.randn(16, 6)
    with torch.no_grad():
        layer(x)
    # a train-mode step changes the statistics and (after the optimizer) the weights
    layer.train()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(torch.randn(32, 6) * 3).pow(2).mean().backward()
    optimizer.step()
    layer.eval()
    with torch.no_grad():
        folded = layer(x)
        layer.stop_folding()
        unfolded = layer(x)
    torch.testing.assert_close(folded, unfolded, atol=1e-5, rtol=1e-5)
    # loading a state dict drops the cache too
    other = trained_layer(norm)
    layer.start_folding()
    with torch.no_grad():
        layer(x)
        layer.load_state_dict(other.state_dict())
        torch.testing.assert_close(layer(x), other(x), atol=1e-5, rtol=1e-5)


def test_layer_norm_never_folds():
    layer = trained_layer("ln")
    layer.start_folding()
    with torch.no_grad():
        layer(torch.randn(4, 6))
    assert layer._folded is None


@pytest.mark.parametrize("norm", ["bn", "mobn", "brn"])
@pytest.mark.parametrize("source", ["running", "fixed"])
def test_running_and_fixed_statistics_make_train_mode_batch_independent(norm, source):
    layer = hidden_layer(norm)
    layer.norm.set_statistics(source)
    layer.train()
    layer(torch.randn(32, 6) * 2 + 1)  # the first batch (fixes the statistics for "fixed")
    sample = torch.randn(1, 6)
    # Each call from the same state: a "running" call updates the statistics the next call would use.
    with torch.no_grad(), untouched(layer):
        out_a = layer(torch.cat([sample, torch.randn(15, 6)]))[0]
    stats = {k: v.clone() for k, v in layer.state_dict().items() if "running_" in k}
    with torch.no_grad():
        out_b = layer(torch.cat([sample, torch.randn(15, 6) * 4 + 2]))[0]
    torch.testing.assert_close(out_a, out_b)
    changed = [not torch.equal(v, stats[k]) for k, v in layer.state_dict().items() if "running_" in k]
    assert any(changed) == (source == "running")


def test_running_statistics_are_updated_but_not_used_for_the_batch():
    layer = MeanOnlyBatchNorm(3, momentum=0.5)
    layer.set_statistics("running")
    with torch.no_grad():
        layer.running_mean.fill_(1.0)
    x = torch.full((4, 3), 5.0)
    torch.testing.assert_close(layer(x), x - 1.0)  # normalized with the statistics before the update
    torch.testing.assert_close(layer.running_mean, torch.full((3,), 3.0))  # 1 + 0.5 * (5 - 1)


def test_fixed_statistics_come_from_the_first_batch_only():
    layer = BatchNorm(2)
    layer.set_statistics("fixed")
    first = torch.tensor([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0]])
    layer(first)
    torch.testing.assert_close(layer.running_mean, torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(layer.running_var, torch.tensor([4.0, 4.0]))  # unbiased
    layer(torch.randn(8, 2) * 10)
    torch.testing.assert_close(layer.running_mean, torch.tensor([2.0, 3.0]))
    restored = BatchNorm(2)
    restored.set_statistics("fixed")
    restored.load_state_dict(layer.state_dict())
    restored(torch.randn(8, 2))
    torch.testing.assert_close(restored.running_mean, torch.tensor([2.0, 3.0]))


@pytest.mark.parametrize("norm", ["bn", "mobn"])
def test_batch_only_statistics_normalize_with_the_batch_and_update_nothing(norm):
    layer = hidden_layer(norm)
    layer.norm.set_statistics("batch_only")
    layer.train()
    reference = hidden_layer(norm).train()
    x = torch.randn(32, 6) * 3
    torch.testing.assert_close(layer(x), reference(x))
    assert torch.equal(layer.norm.running_mean, torch.zeros(5))


def test_unknown_statistics_source_is_named():
    with pytest.raises(ValueError, match="statistics source must be one of batch, batch_only, running, fixed"):
        BatchNorm(2).set_statistics("moving")


class _CountsTrainCalls(nn.Identity):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def train(self, mode: bool = True) -> nn.Module:
        self.calls += 1
        return super().train(mode)


@pytest.mark.parametrize("norm", ["wn+mobn", "sn", "ln"])
def test_switching_a_normalized_layers_mode_sets_every_submodule_as_torch_does(norm):
    layer = get_norm(norm).factory(nn.Linear(4, 3))
    layer.norm.extra = _CountsTrainCalls()  # a submodule with its own train() keeps it
    layer._layer_modules.append(layer.norm.extra)
    for mode in (False, True, False):
        layer.train(mode)
        assert all(module.training is mode for module in layer.modules())
    assert layer.norm.extra.calls == 3
    with pytest.raises(ValueError, match="boolean"):
        layer.train("eval")


# Ghost batches: a noise dose -----------------------------------------------------------------------------

def ghost_reference(norm: str, x: torch.Tensor, k: int) -> torch.Tensor:
    """Each of torch.tensor_split's parts through a fresh plain layer in train mode, one at a time."""
    layer = hidden_layer(norm, 6, 5)
    return torch.cat([layer(part) for part in torch.tensor_split(x, k)])


@pytest.mark.parametrize("norm", BATCH_DEPENDENT)
@pytest.mark.parametrize("batch", [64, 70])  # 70 = 4 x 17 + 2: parts of 18, 18, 17, 17
def test_ghost_batches_normalize_each_part_with_its_own_statistics(norm, batch):
    x = torch.randn(batch, 6, generator=torch.Generator().manual_seed(1)) * 2 + 1
    layer = hidden_layer(norm, 6, 5, ghost_batches=4)
    torch.testing.assert_close(layer(x), ghost_reference(norm, x, 4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", BATCH_DEPENDENT)
def test_ghost_batches_update_the_running_statistics_once_from_the_whole_batch(norm):
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(2)) * 2 + 1
    dosed, plain = hidden_layer(norm, ghost_batches=16), hidden_layer(norm)
    dosed(x)
    plain(x)
    for (name, value), (_, expected) in zip(dosed.named_buffers(), plain.named_buffers(), strict=True):
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6, msg=name)
    # and eval mode is unchanged
    with torch.no_grad():
        torch.testing.assert_close(dosed.eval()(x), plain.eval()(x))


def test_one_ghost_batch_is_the_plain_layer():
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(hidden_layer("bn", ghost_batches=1)(x), hidden_layer("bn")(x), rtol=0, atol=0)


def test_ghost_batches_below_two_samples_name_the_batch_and_k():
    layer = hidden_layer("mobn", ghost_batches=16)
    with pytest.raises(ValueError, match="ghost_batches=16 splits a batch of 31 samples into ghost batches of 1.*"
                                         "at least 32 samples"):
        layer(torch.randn(31, 6))


@pytest.mark.parametrize("value", [0, -2, 2.5, True, "4"])
def test_bad_ghost_batches_are_named(value):
    with pytest.raises(ValueError, match=f"ghost_batches must be an integer >= 1.*got {value!r}"):
        validate_norm("bn", {"ghost_batches": value})


def test_ghost_batches_on_a_norm_without_batch_statistics_says_where_they_apply():
    where = r"norm 'ln' has no option 'ghost_batches'.*statistics: bn, mobn, wn\+mobn, brn\)"
    with pytest.raises(ValueError, match=where):
        validate_norm("ln", {"ghost_batches": 4})


# No bias before a batch-statistics norm ------------------------------------------------------------------

@pytest.mark.parametrize("norm", BATCH_DEPENDENT)
def test_no_linear_bias_before_a_batch_statistics_norm(norm):
    layer = hidden_layer(norm)
    assert layer.layer.bias is None
    assert all(parameter.requires_grad for parameter in layer.parameters())


@pytest.mark.parametrize("norm", BATCH_INDEPENDENT)
def test_batch_independent_norms_keep_the_linear_bias(norm):
    assert hidden_layer(norm).layer.bias is not None


# The fold follows every change of the layer's parameters -------------------------------------------------

@pytest.mark.parametrize("norm", ["bn", "wn+mobn", "sn"])
def test_the_fold_follows_parameters_replaced_or_edited_outside_training(norm):
    layer = hidden_layer(norm)
    layer.train()(torch.randn(64, 6))
    layer.eval()
    layer.start_folding()
    x = torch.randn(8, 6)

    def unfolded() -> torch.Tensor:
        layer.stop_folding()
        with torch.no_grad():
            out = layer(x)
        layer.start_folding()
        return out

    with torch.no_grad():
        layer(x)  # folds
        vector = torch.nn.utils.parameters_to_vector(layer.parameters())
        # As SB3's policy.load_from_vector does: new tensors behind the same parameters.
        torch.nn.utils.vector_to_parameters(vector * 1.5, layer.parameters())
        torch.testing.assert_close(layer(x), unfolded(), rtol=1e-5, atol=1e-5)
        next(layer.parameters()).add_(0.25)  # an in-place edit
        torch.testing.assert_close(layer(x), unfolded(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------- convolutions

CONV_NORMS = ["none", "bn", "mobn", "wn", "wn+mobn", "ln", "brn", "rms"]


def conv_layer(norm: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return get_norm(norm).factory(nn.Conv2d(3, 4, 3, stride=2, padding=1), **kwargs)


def images(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 9, 9, generator=torch.Generator().manual_seed(seed)) * 2 + 1


def test_the_registry_says_which_norms_handle_convolutions():
    assert [name for name in available_norms() if get_norm(name).conv][:8] == CONV_NORMS
    assert not get_norm("sn").conv and not get_norm("pnorm").conv


def test_batch_norm_after_a_convolution_is_batch_norm_2d_per_channel():
    layer, reference = conv_layer("bn"), nn.BatchNorm2d(4)
    conv = layer.layer
    x = images()
    torch.testing.assert_close(layer(x), reference(conv(x)))
    running_mean = layer.norm.running_mean
    layer(x)
    reference(conv(x))
    assert layer.norm.running_mean is running_mean  # updated in place: SB3 syncs targets by reference
    torch.testing.assert_close(layer.norm.running_var, reference.running_var)
    layer.eval(), reference.eval()
    torch.testing.assert_close(layer(x), reference(conv(x)))


def test_mean_only_batch_norm_after_a_convolution_centres_each_channel_over_samples_and_pixels():
    layer = conv_layer("mobn")
    x = images()
    pre = layer.layer(x)
    assert layer.layer.bias is None
    torch.testing.assert_close(layer(x), pre - pre.mean((0, 2, 3), keepdim=True))
    torch.testing.assert_close(layer.norm.running_mean, 0.1 * pre.mean((0, 2, 3)))


@pytest.mark.parametrize("norm", ["bn", "mobn", "wn+mobn", "brn"])
def test_ghost_batches_of_images_are_groups_of_samples(norm):
    layer, plain = conv_layer(norm, ghost_batches=2), conv_layer(norm)
    x = images()
    halves = torch.cat([plain(x[:4]), plain(x[4:])])
    torch.testing.assert_close(layer(x), halves, atol=1e-5, rtol=1e-5)


def test_weight_norm_of_a_convolution_is_per_output_channel_and_keeps_the_initial_weight():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    initial = conv.weight.detach().clone()
    layer = get_norm("wn").factory(conv)
    torch.testing.assert_close(layer.effective_weight(), initial)
    g = layer.layer.parametrizations.weight.original0
    torch.testing.assert_close(g.flatten(), initial.flatten(1).norm(dim=1))


@pytest.mark.parametrize(("norm", "centred"), [("wn", True), ("wn+mobn", False)])
def test_data_dependent_init_of_a_convolution_standardizes_each_channel(norm, centred):
    layer = conv_layer(norm, init="data")
    x = images(32)
    layer(x)
    t = layer.layer(x)  # the weight-normalized convolution, with the bias it set (none before mobn)
    torch.testing.assert_close(t.std((0, 2, 3)), torch.ones(4), atol=1e-4, rtol=1e-4)
    if centred:
        torch.testing.assert_close(t.mean((0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=1e-4)


def test_layer_and_rms_norms_of_images_normalize_each_sample_over_channels_and_pixels():
    x = images()
    ln = conv_layer("ln")
    assert isinstance(ln.norm, nn.GroupNorm) and ln.norm.num_groups == 1
    pre = ln.layer(x)
    expected = (pre - pre.mean((1, 2, 3), keepdim=True)) / torch.sqrt(pre.var((1, 2, 3), unbiased=False,
                                                                            keepdim=True) + 1e-5)
    torch.testing.assert_close(ln(x), expected, atol=1e-5, rtol=1e-5)
    rms = conv_layer("rms")
    pre = rms.layer(x)
    torch.testing.assert_close(rms(x), pre / torch.sqrt(pre.square().mean((1, 2, 3), keepdim=True) + 1e-6))


@pytest.mark.parametrize("norm", ["bn", "mobn", "wn", "wn+mobn", "brn"])
def test_a_folded_convolution_computes_the_same_function(norm):
    layer = conv_layer(norm)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    for seed in range(3):
        layer(images(16, seed)).pow(2).mean().backward()
        optimizer.step()
    assert_folding_keeps_the_function(layer.eval(), images(5, 9))


def test_a_batch_of_one_image_in_train_mode_is_the_same_clear_error():
    with pytest.raises(ValueError, match="a batch of 1 sample has none"):
        conv_layer("bn")(images(1))


def test_a_network_with_layers_the_norm_cannot_handle_names_the_layer_and_the_norm():
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(196, 8), nn.ReLU())
    with pytest.raises(ValueError, match=r"norm 'sn' cannot normalize layer 0 of the network, Conv2d\(3, 4"):
        normalize_mlp(cnn, "sn")
    with pytest.raises(ValueError, match=r"layer 0 of the network, Conv1d.*the norms that handle Conv2d are none, bn"):
        normalize_mlp(nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU()), "bn")
    normalize_mlp(cnn, "wn+mobn")
    assert [type(m).__name__ for m in cnn] == ["NormalizedLayer", "ReLU", "Flatten", "NormalizedLayer", "ReLU"]
    assert cnn(images(4)[:, :, :9, :9]).shape == (4, 8)


def statistics_scatter(layer: nn.Module, n: int, calls: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Over ``calls`` train-mode calls on fresh N(1, 2²) batches of ``n``: each call's shift of the layer's output
    from the batch centred at the true mean (mean-only BN: (x - shift) directly), and its scale.

    :return: (shifts, scales), calls x features
    """
    torch.manual_seed(1)
    shifts, scales = [], []
    for _ in range(calls):
        x = torch.randn(n, 16) * 2 + 1
        with torch.no_grad():
            y = layer(x)
        # y = (x - m) * s + b per feature: two samples give s, then m.
        scale = (y[1] - y[0]) / (x[1] - x[0])
        shifts.append(x[0] - (y[0] - layer.bias.detach()) / scale)
        scales.append(scale)
    return torch.stack(shifts), torch.stack(scales)


@pytest.mark.parametrize("layer_type", [MeanOnlyBatchNorm, BatchNorm])
def test_injected_noise_scatters_fixed_statistics_as_much_as_batch_statistics_scatter(layer_type):
    n = 64
    batch = layer_type(16)  # statistics of each batch
    batch_shift, batch_scale = statistics_scatter(batch, n)
    for dose in (1, 4):
        fixed = layer_type(16, injected_noise=dose)
        fixed.set_statistics("fixed")
        with torch.no_grad():
            fixed(torch.randn(4096, 16) * 2 + 1)  # fixes the statistics at about the true ones
        shift, scale = statistics_scatter(fixed, n)
        # The shift's spread is the batch mean's (2 / √64 = 0.25), √dose times over.
        ratio = shift.std(dim=0).mean() / batch_shift.std(dim=0).mean()
        assert ratio == pytest.approx(dose**0.5, rel=0.08)
        if layer_type is BatchNorm:
            # The scale's relative spread is the batch std's, about √(dose / (2 n)).
            def relative_spread(scales: torch.Tensor) -> torch.Tensor:
                return (scales.std(dim=0) / scales.mean(dim=0)).mean()

            assert relative_spread(scale) / relative_spread(batch_scale) == pytest.approx(dose**0.5, rel=0.12)


def test_injected_noise_changes_train_mode_only():
    layer = hidden_layer("bn", injected_noise=1.0)
    layer.norm.set_statistics("fixed")
    layer.train()
    x = torch.randn(32, 6)
    with torch.no_grad():
        first, second = layer(x), layer(x)
    assert not torch.allclose(first, second)  # the same batch, another draw of noise
    layer.eval()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("value", [-1, float("inf"), "1", True])
def test_bad_injected_noise_is_named(value):
    with pytest.raises(ValueError, match=f"injected_noise must be a finite number >= 0.*got {value!r}"):
        validate_norm("bn", {"injected_noise": value})
