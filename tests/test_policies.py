"""The SB3 policy classes: exactly SB3 for norm="none", modes, targets, init, mismatch, determinism."""

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.logger import configure

from rlnorm.core.norms import NormalizedLayer, available_norms
from rlnorm.core.policies import NormActorCriticPolicy, NormDQNPolicy, NormSACPolicy, NormTD3Policy
from rlnorm.core.probe import untouched
from rlnorm.study.callbacks import ModeMismatchCallback

NORMS = available_norms()
STATEFUL = ["bn", "mobn", "wn+mobn", "brn", "sn"]

# Tiny but complete settings: every algorithm gets through several gradient steps (and, off-policy,
# target updates) within a few hundred env steps.
ALGOS = {
    "ppo": (PPO, NormActorCriticPolicy, "CartPole-v1", dict(n_steps=64, batch_size=32, n_epochs=2), 128),
    "a2c": (A2C, NormActorCriticPolicy, "CartPole-v1", dict(n_steps=8), 64),
    "dqn": (DQN, NormDQNPolicy, "CartPole-v1",
            dict(learning_starts=32, batch_size=16, train_freq=4, target_update_interval=8), 96),
    "sac": (SAC, NormSACPolicy, "Pendulum-v1", dict(learning_starts=32, batch_size=16), 64),
    "td3": (TD3, NormTD3Policy, "Pendulum-v1", dict(learning_starts=32, batch_size=16, policy_delay=1), 64),
}
SMALL_NET = {"ppo": dict(net_arch=[16, 16]), "a2c": dict(net_arch=[16, 16]), "dqn": dict(net_arch=[16, 16]),
             "sac": dict(net_arch=[16, 16]), "td3": dict(net_arch=[16, 16])}


def make(algo: str, policy=None, seed: int = 0, **policy_kwargs):
    cls, norm_policy, env, kwargs, _ = ALGOS[algo]
    return cls(policy or norm_policy, env, seed=seed, policy_kwargs={**SMALL_NET[algo], **policy_kwargs},
               **kwargs)


def learn(model, algo: str, **learn_kwargs):
    return model.learn(ALGOS[algo][4], **learn_kwargs)


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# 1. norm="none" is exactly SB3 ----------------------------------------------------------------------

@pytest.mark.parametrize("algo", list(ALGOS))
def test_none_is_exactly_sb3_before_and_after_training(algo):
    ours, theirs = make(algo, norm="none"), make(algo, policy="MlpPolicy")
    # Same modules: identical module tree, apart from the policy class name in the first line.
    assert repr(ours.policy).split("\n", 1)[1] == repr(theirs.policy).split("\n", 1)[1]
    assert_same_parameters(ours.policy, theirs.policy)
    # Each model trains right after it is built: building one re-seeds torch's global generator.
    ours = learn(make(algo, norm="none"), algo)
    theirs = learn(make(algo, policy="MlpPolicy"), algo)
    assert_same_parameters(ours.policy, theirs.policy)


# 3. modes and targets -------------------------------------------------------------------------------

def running_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("norm", ["bn", "mobn"])
def test_predict_runs_in_eval_mode_and_updates_nothing(algo, norm):
    model = make(algo, norm=norm)
    learn(model, algo)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.observation_space.seed(0)
    obs = np.stack([model.observation_space.sample() for _ in range(5)])
    first, _ = model.predict(obs, deterministic=True)
    single, _ = model.predict(obs[:1], deterministic=True)
    # atol: a batch of 5 and a batch of 1 take different float32 matmul paths (~1e-7 apart); batch
    # statistics leaking into predict would move the output by orders of magnitude more.
    np.testing.assert_allclose(first[:1], single, rtol=1e-5, atol=1e-5)
    for key, value in model.policy.state_dict().items():
        assert torch.equal(value, before[key]), key


def collect_modes(model):
    """Record the mode of the first norm layer of every network at each call, with the batch size."""
    calls = []
    for name, module in model.policy.named_modules():
        if isinstance(module, NormalizedLayer) and name.endswith(".0"):
            network = name.rsplit(".", 2)[0]
            module.register_forward_pre_hook(
                lambda m, args, network=network: calls.append((network, m.training, args[0].shape[0]))
            )
    return calls


@pytest.mark.parametrize("algo", ["ppo", "dqn", "sac", "td3"])
def test_rollouts_in_eval_mode_updates_in_train_mode_targets_always_eval(algo):
    model = make(algo, norm="bn")
    calls = collect_modes(model)
    learn(model, algo)
    batch_size = model.batch_size
    rollout_modes = {training for _, training, size in calls if size == 1}
    assert rollout_modes == {False}
    if algo == "ppo":
        # The only eval-mode pass on a minibatch is the mode-mismatch measurement, once per update.
        eval_passes = [net for net, training, size in calls if size == batch_size and not training]
        assert len(eval_passes) == 2 * model.policy.mode_mismatch_updates
        calls = [call for call in calls if call[1]]
    update_modes = {(net, training) for net, training, size in calls if size == batch_size}
    for net, training in update_modes:
        assert training == (not net.endswith("_target")), (net, training)
    targets = [m for name, m in model.policy.named_children() if name.endswith("_target")]
    assert all(not m.training for target in targets for m in target.modules())
    if algo != "ppo":
        assert any(net.endswith("_target") for net, _ in update_modes)


@pytest.mark.parametrize("algo", ["dqn", "sac", "td3"])
@pytest.mark.parametrize("norm", STATEFUL)
def test_statistics_reach_targets_and_tau_zero_keeps_target_weights(algo, norm):
    # As SB3's tests/test_train_eval_mode.py: with tau=0 the target weights never move, while every
    # state kept beside the parameters (running statistics, power-iteration vectors) is copied.
    model = make(algo, norm=norm)
    model.tau = 0.0
    pairs = {"dqn": [("q_net", "q_net_target")], "sac": [("critic", "critic_target")],
             "td3": [("actor", "actor_target"), ("critic", "critic_target")]}[algo]
    initial = {t: [p.clone() for p in getattr(model.policy, t).parameters()] for _, t in pairs}
    learn(model, algo)
    if algo == "dqn":
        # DQN syncs in _on_step, i.e. before the gradient steps of the same iteration; sync once more.
        model.target_update_interval = 1
        model._on_step()
    for online_name, target_name in pairs:
        online, target = getattr(model.policy, online_name), getattr(model.policy, target_name)
        stats_online, stats_target = running_buffers(online), running_buffers(target)
        assert stats_online, f"{norm} keeps no running_* state in {online_name}"
        for key, value in stats_online.items():
            assert torch.equal(value, stats_target[key]), key
        assert any(not torch.equal(v, torch.zeros_like(v)) for v in stats_online.values())
        for before, after in zip(initial[target_name], target.parameters(), strict=True):
            assert torch.equal(before, after)


def test_spectral_norm_targets_stay_normalized():
    # With torch's spectral norm (vectors _u/_v never synced) the same run ends with target spectral
    # norms up to 1.45; SB3 copying running_u/running_v keeps them within a few percent of 1.
    model = make("sac", norm="sn", net_arch=[32, 32])
    model.learn(1000)
    model.policy.set_training_mode(False)
    for net in (model.critic, model.critic_target):
        for module in net.modules():
            if isinstance(module, NormalizedLayer):
                sigma = torch.linalg.matrix_norm(module.layer.weight.detach(), ord=2).item()
                assert abs(sigma - 1.0) < 0.05, sigma


# 4. weight-norm initialization ------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["wn", "wn+mobn"])
def test_weight_norm_keeps_sb3_orthogonal_init(norm):
    ours, plain = make("ppo", norm=norm), make("ppo", policy="MlpPolicy")
    for net in ("policy_net", "value_net"):
        ours_net, plain_net = getattr(ours.policy.mlp_extractor, net), getattr(plain.policy.mlp_extractor, net)
        for layer, linear in zip(ours_net[::2], plain_net[::2], strict=True):
            torch.testing.assert_close(layer.layer.weight, linear.weight)
            torch.testing.assert_close(layer.layer.parametrizations.weight.original0.squeeze(1),
                                       linear.weight.norm(dim=1))


def test_weight_norm_parameters_are_the_ones_the_optimizer_trains():
    model = make("ppo", norm="wn")
    optimized = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.policy.parameters()}
    layer = model.policy.mlp_extractor.policy_net[0].layer.parametrizations.weight
    g, v = layer.original0.clone(), layer.original1.clone()
    learn(model, "ppo")
    assert not torch.equal(g, layer.original0) and not torch.equal(v, layer.original1)


def test_data_dependent_init_on_the_first_training_batch_reaches_the_target():
    model = make("dqn", norm="wn", norm_kwargs=dict(init="data"))
    q_net, target = model.policy.q_net, model.policy.q_net_target
    assert not q_net.q_net[0].data_initialized
    obs = torch.as_tensor(np.stack([model.observation_space.sample() for _ in range(64)]))
    model.policy.set_training_mode(True)
    q_net(obs)
    pre_activation = q_net.q_net[0](obs)
    torch.testing.assert_close(pre_activation.mean(0), torch.zeros(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(pre_activation.std(0), torch.ones(16), atol=1e-4, rtol=0)
    assert_same_parameters(q_net, target)


def test_data_dependent_init_trains_and_is_kept_by_save_and_load(tmp_path):
    model = make("ppo", norm="wn+mobn", norm_kwargs=dict(init="data"))
    learn(model, "ppo")
    assert all(m.data_initialized for m in model.policy.modules() if isinstance(m, NormalizedLayer))
    model.save(tmp_path / "model")
    loaded = PPO.load(tmp_path / "model")
    assert_same_parameters(model.policy, loaded.policy)


# 5. train/eval mismatch -------------------------------------------------------------------------------

def test_mode_mismatch_is_measured_and_logged(tmp_path):
    results = {}
    for norm in ("none", "bn"):
        model = make("ppo", norm=norm)
        model.set_logger(configure(str(tmp_path / norm), ["csv"]))
        model.learn(64 * 4, callback=ModeMismatchCallback())
        results[norm] = model.policy.mode_mismatch
        assert model.policy.mode_mismatch_updates == 4
        header, *rows = (tmp_path / norm / "progress.csv").read_text().splitlines()
        column = header.split(",").index("train/mode_mismatch")
        logged = [float(row.split(",")[column]) for row in rows if row.split(",")[column]]
        assert len(logged) == 3  # the last update is never dumped, as for all of SB3's train/* values
    assert results["none"] < 1e-5
    assert results["bn"] > 1e-3


def test_mode_mismatch_for_a2c():
    model = make("a2c", norm="bn")
    learn(model, "a2c")
    assert model.policy.mode_mismatch_updates == 64 // 8
    assert model.policy.mode_mismatch > 1e-4


# 6. determinism -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", NORMS)
def test_same_seed_gives_bit_identical_parameters(norm):
    norm_kwargs = {"warmup_steps": 2} if norm == "brn" else {}
    runs = []
    for _ in range(2):
        model = make("ppo", norm=norm, norm_kwargs=norm_kwargs)
        learn(model, "ppo")
        runs.append(model.policy)
    assert_same_parameters(*runs)


# saving, loading and the usual SB3 kwargs ---------------------------------------------------------------

@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("norm", ["bn", "wn+mobn", "sn"])
def test_save_and_load_give_the_same_predictions(algo, norm, tmp_path):
    model = make(algo, norm=norm)
    learn(model, algo)
    model.save(tmp_path / "model")
    loaded = ALGOS[algo][0].load(tmp_path / "model")
    assert loaded.policy.norm == norm
    assert_same_parameters(model.policy, loaded.policy)
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0],
                                  loaded.predict(obs, deterministic=True)[0])


def test_usual_sb3_kwargs_keep_working():
    model = make("ppo", norm="ln", net_arch=dict(pi=[8], vf=[8, 8]), activation_fn=torch.nn.ReLU,
                 ortho_init=False, share_features_extractor=False)
    assert len(model.policy.mlp_extractor.policy_net) == 2 and len(model.policy.mlp_extractor.value_net) == 4
    assert isinstance(model.policy.mlp_extractor.value_net[1], torch.nn.ReLU)
    learn(model, "ppo")
    model = make("sac", norm="bn", net_arch=dict(pi=[8], qf=[8, 8]), n_critics=3)
    assert len(model.critic.q_networks) == 3


@pytest.mark.parametrize("norm_in, actor_normalized, critic_normalized",
                         [("both", True, True), ("actor", True, False), ("critic", False, True)])
def test_norm_in_selects_the_networks(norm_in, actor_normalized, critic_normalized):
    def normalized(module):
        return any(isinstance(m, NormalizedLayer) for m in module.modules())

    ppo = make("ppo", norm="bn", norm_in=norm_in).policy.mlp_extractor
    assert (normalized(ppo.policy_net), normalized(ppo.value_net)) == (actor_normalized, critic_normalized)
    for algo in ("sac", "td3"):
        policy = make(algo, norm="bn", norm_in=norm_in).policy
        assert (normalized(policy.actor), normalized(policy.critic)) == (actor_normalized, critic_normalized)
        assert normalized(policy.critic_target) == critic_normalized


def test_pnorm_normalizes_the_input_of_the_output_layer():
    policy = make("ppo", norm="pnorm").policy
    obs = torch.randn(5, 4)
    latent = policy.mlp_extractor.policy_net(obs)
    torch.testing.assert_close(latent.norm(dim=1), torch.ones(5))


# bad input ------------------------------------------------------------------------------------------------

def test_unknown_norm_is_a_value_error_listing_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown norm 'batchnorm'; registered norms: none, bn"):
        make("ppo", norm="batchnorm")


def test_unknown_norm_kwarg_names_the_key():
    with pytest.raises(ValueError, match="no option 'momentun'"):
        make("sac", norm="bn", norm_kwargs=dict(momentun=0.1))


def test_norm_in_is_checked():
    with pytest.raises(ValueError, match="norm_in must be one of both, actor, critic; got 'value'"):
        make("ppo", norm="bn", norm_in="value")
    with pytest.raises(ValueError, match="DQN has a single Q-network: norm_in must be 'both'"):
        make("dqn", norm="bn", norm_in="critic")


def test_batch_of_one_in_train_mode_says_what_to_change():
    # n_steps * n_envs = 65 with batch_size 32: the last minibatch holds one sample (SB3 only warns).
    model = PPO(NormActorCriticPolicy, "CartPole-v1", n_steps=65, batch_size=32, seed=0,
                policy_kwargs=dict(norm="bn", net_arch=[8]))
    with pytest.raises(ValueError, match="batch of 1 sample has none.*n_steps \\* n_envs and batch_size"):
        model.learn(65)


@pytest.mark.parametrize("algo", list(ALGOS))
def test_rollouts_fold_online_layers_only_and_compute_the_unfolded_function(algo):
    model = make(algo, norm="bn")
    learn(model, algo)
    policy = model.policy
    obs = torch.as_tensor(np.stack([model.observation_space.sample() for _ in range(8)]))
    policy.set_training_mode(False)
    layers = [(name, m) for name, m in policy.named_modules() if isinstance(m, NormalizedLayer)]
    with torch.no_grad():
        folded = policy._predict(obs, deterministic=True)
        assert all(m._folding for name, m in layers if "_target" not in name)
        assert all(not m._folding for name, m in layers if "_target" in name)
        acted = [m for name, m in layers if m._folded is not None]
        assert acted and all("_target" not in name for name, m in layers if m._folded is not None)
        for _, m in layers:
            m.stop_folding()
        unfolded = policy._predict(obs, deterministic=True)
    torch.testing.assert_close(folded, unfolded, rtol=1e-4, atol=1e-5)


def optimizers(policy):
    return [policy.optimizer] if hasattr(policy, "optimizer") else [policy.actor.optimizer, policy.critic.optimizer]


@pytest.mark.parametrize("algo", list(ALGOS))
def test_optimizers_keep_sb3_settings_and_only_change_implementation(algo):
    plain, ours = make(algo, policy="MlpPolicy"), make(algo, norm="bn")
    for theirs, mine in zip(optimizers(plain.policy), optimizers(ours.policy), strict=True):
        assert type(theirs) is type(mine)
        for key, value in theirs.param_groups[0].items():
            if key != "params":
                if key == "fused":
                    assert mine.param_groups[0][key] is (True if algo != "a2c" else None), key
                elif key == "foreach":
                    assert mine.param_groups[0][key] is (False if algo != "a2c" else True), key
                else:
                    assert mine.param_groups[0][key] == value, key


# norm_mode: the three mechanisms taken apart ---------------------------------------------------------------

def test_norm_mode_is_checked():
    with pytest.raises(ValueError, match="norm_mode must be one of sb3, consistent, frozen, fixed; got 'eval'"):
        make("ppo", norm="bn", norm_mode="eval")
    with pytest.raises(ValueError, match=r"norm_mode 'frozen' applies to norms with batch statistics "
                                         r"\(bn, mobn, wn\+mobn, brn\); norm 'ln' has none"):
        make("sac", norm="ln", norm_mode="frozen")


def test_injected_noise_needs_a_mode_without_batch_statistics():
    for mode in ("sb3", "consistent"):
        with pytest.raises(ValueError, match=f"injected_noise=4 needs norm_mode 'frozen' or 'fixed'.*{mode!r}"):
            make("dqn", norm="bn", norm_mode=mode, norm_kwargs=dict(injected_noise=4))


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_injected_noise_trains_a_fixed_network_and_a_seeded_run_repeats(algo):
    def trained(**norm_kwargs):
        model = make(algo, norm="mobn", norm_mode="fixed", norm_kwargs=norm_kwargs)
        learn(model, algo)
        return model.policy

    noisy = trained(injected_noise=1.0)
    assert_same_parameters(noisy, trained(injected_noise=1.0))
    plain = trained()
    pairs = zip(noisy.state_dict().values(), plain.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)


def test_consistent_mode_makes_the_first_ratio_one():
    model = make("ppo", norm="bn", norm_mode="consistent")
    learn(model, "ppo")
    assert model.policy.mode_mismatch_max < 1e-5
    assert model.policy.mode_mismatch_updates > 1


def test_consistent_mode_is_refused_on_a2c_which_forms_no_ratio():
    model = make("a2c", norm="bn", norm_mode="consistent")
    with pytest.raises(ValueError, match="norm_mode 'consistent'.*A2C forms no ratio.*'sb3', 'frozen' or 'fixed'"):
        learn(model, "a2c")


def test_consistent_mode_changes_only_the_log_probs_not_the_values():
    consistent, plain = make("ppo", norm="bn", norm_mode="consistent"), make("ppo", norm="bn")
    learn(plain, "ppo")
    consistent.policy.load_state_dict(plain.policy.state_dict())
    observations = torch.randn(32, 4)
    actions = torch.randint(0, 2, (32,))
    gradients = {}
    for name, model in (("consistent", consistent), ("plain", plain)):
        policy = model.policy
        policy.set_training_mode(False)
        policy.set_training_mode(True)  # as PPO's update starts: keeps the pre-update parameters
        policy.optimizer.zero_grad()
        values, log_prob, _ = policy.evaluate_actions(observations, actions)
        (values.pow(2).mean() + log_prob.mean()).backward()
        gradients[name] = ([p.grad.clone() for p in policy.parameters()], values.detach(), log_prob.detach())
    (consistent_grads, consistent_values, consistent_log_prob), (plain_grads, plain_values, plain_log_prob) = (
        gradients["consistent"], gradients["plain"])
    torch.testing.assert_close(consistent_values, plain_values, rtol=0, atol=0)
    for consistent_grad, plain_grad in zip(consistent_grads, plain_grads, strict=True):
        torch.testing.assert_close(consistent_grad, plain_grad, rtol=1e-5, atol=1e-7)
    # The log-probs move by a constant (eval - train before the update), so their gradient is the same.
    assert not torch.allclose(consistent_log_prob, plain_log_prob)


def test_consistent_mode_keeps_parameters_and_generator_of_the_plain_build():
    consistent, plain = make("ppo", norm="bn", norm_mode="consistent"), make("ppo", norm="bn")
    assert_same_parameters(consistent.policy, plain.policy)
    assert list(consistent.policy.state_dict()) == list(plain.policy.state_dict())


@pytest.mark.parametrize("algo", ["dqn", "sac", "td3"])
def test_consistent_targets_score_with_their_own_batch_statistics(algo):
    model = make(algo, norm="bn", norm_mode="consistent")
    learn(model, algo)
    target = model.policy.q_net_target if algo == "dqn" else model.policy.critic_target
    layers = [m for m in target.modules() if isinstance(m, NormalizedLayer)]
    assert all(layer.norm.training and layer.norm.statistics == "batch_only" for layer in layers)
    stats = running_buffers(target)
    network = target.q_net if algo == "dqn" else target.q_networks[0]
    inputs = torch.randn(16, network[0].layer.in_features)
    sample = inputs[:1]
    with torch.no_grad():
        alone = network(torch.cat([sample, inputs[1:]]))[0]
        other = network(torch.cat([sample, inputs[1:] * 3]))[0]
    assert not torch.allclose(alone, other)
    for key, value in running_buffers(target).items():
        assert torch.equal(value, stats[key]), key


@pytest.mark.parametrize("algo", ["ppo", "dqn", "sac"])
@pytest.mark.parametrize("norm_mode", ["frozen", "fixed"])
def test_frozen_and_fixed_train_mode_output_ignores_the_batch(algo, norm_mode):
    model = make(algo, norm="bn", norm_mode=norm_mode)
    learn(model, algo)
    net = {"ppo": lambda p: p.mlp_extractor.policy_net, "dqn": lambda p: p.q_net.q_net,
           "sac": lambda p: p.critic.qf0}[algo](model.policy)
    net.train()
    inputs = torch.randn(16, net[0].layer.in_features)
    # Each call from the same state: a "frozen" call updates the statistics the next call would use.
    with torch.no_grad(), untouched(net):
        alone = net(torch.cat([inputs[:1], inputs[1:]]))[0]
    with torch.no_grad(), untouched(net):
        other = net(torch.cat([inputs[:1], inputs[1:] * 5 + 1]))[0]
    torch.testing.assert_close(alone, other)


@pytest.mark.parametrize("algo", ["ppo", "dqn", "td3"])
def test_fixed_statistics_do_not_change_with_training_and_survive_save_load(algo, tmp_path):
    model = make(algo, norm="mobn", norm_mode="fixed")
    learn(model, algo)
    fixed = running_buffers(model.policy)
    online = {k: v for k, v in fixed.items() if not _target_key(k)}
    assert online and all(not torch.equal(v, torch.zeros_like(v)) for v in online.values())
    model.learn(ALGOS[algo][4], reset_num_timesteps=False)
    for key, value in running_buffers(model.policy).items():
        if not _target_key(key):
            assert torch.equal(value, fixed[key]), key
    model.save(tmp_path / "model")
    loaded = ALGOS[algo][0].load(tmp_path / "model", env=model.get_env())
    loaded.learn(ALGOS[algo][4], reset_num_timesteps=False)
    for key, value in running_buffers(loaded.policy).items():
        if not _target_key(key):
            assert torch.equal(value, fixed[key]), key


def _target_key(key: str) -> bool:
    return key.split(".")[0].endswith("_target")


def test_frozen_statistics_follow_the_data():
    model = make("dqn", norm="bn", norm_mode="frozen")
    learn(model, "dqn")
    stats = running_buffers(model.policy.q_net)
    model.learn(96, reset_num_timesteps=False)
    assert any(not torch.equal(v, stats[k]) for k, v in running_buffers(model.policy.q_net).items())


# Every parameter learns ----------------------------------------------------------------------------------

def training_losses(model, algo: str) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """(network, a loss through all its outputs) for each network the algorithm trains, in train mode."""
    policy = model.policy
    policy.set_training_mode(True)
    generator = torch.Generator().manual_seed(0)
    observations = torch.randn(16, *model.observation_space.shape, generator=generator)
    if algo in ("ppo", "a2c"):
        values, log_prob, entropy = policy.evaluate_actions(observations, torch.randint(0, 2, (16,)))
        return [(policy, values.sum() + log_prob.sum() + entropy.sum())]
    if algo == "dqn":
        return [(policy.q_net, policy.q_net(observations).sum())]
    actions = torch.rand(16, *model.action_space.shape, generator=generator) * 2 - 1
    critic_loss = sum(q.sum() for q in policy.critic(observations, actions))
    if algo == "sac":
        mean_actions, log_prob = policy.actor.action_log_prob(observations)
        return [(policy.actor, mean_actions.sum() + log_prob.sum()), (policy.critic, critic_loss)]
    return [(policy.actor, policy.actor(observations).sum()), (policy.critic, critic_loss)]


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("norm", NORMS)
def test_every_parameter_of_a_normalized_policy_gets_a_gradient(algo, norm):
    model = make(algo, norm=norm)
    for network, loss in training_losses(model, algo):
        network.zero_grad()
        loss.backward()
        norms = {name: p.grad.norm().item() if p.grad is not None else 0.0 for name, p in network.named_parameters()}
        # A bias that a batch mean cancels gets a gradient of float rounding only, 1e-8 of the others'.
        starved = [name for name, value in norms.items() if value <= 1e-4 * max(norms.values())]
        assert not starved, starved


def test_batch_renorm_targets_leave_warm_up_with_their_online_network():
    model = make("sac", norm="brn", norm_mode="consistent", norm_kwargs=dict(warmup_steps=5))
    learn(model, "sac")
    online = [m.norm for m in model.policy.critic.modules() if isinstance(m, NormalizedLayer)]
    target = [m.norm for m in model.policy.critic_target.modules() if isinstance(m, NormalizedLayer)]
    assert online[0].running_batches.item() > 5
    for layer, twin in zip(online, target, strict=True):
        assert twin.running_batches.item() == layer.running_batches.item()


def test_the_paths_before_the_package_layout_still_import_and_unpickle():
    import pickle

    import rlnorm.core.norms
    import rlnorm.core.policies
    import rlnorm.core.probe
    import rlnorm.norms
    import rlnorm.policies
    import rlnorm.probe

    assert rlnorm.policies is rlnorm.core.policies and rlnorm.norms is rlnorm.core.norms
    assert rlnorm.probe is rlnorm.core.probe
    # What a model saved before the layout holds: a reference to the class under its old module path.
    assert pickle.loads(b"crlnorm.policies\nNormDQNPolicy\n.") is rlnorm.core.policies.NormDQNPolicy
