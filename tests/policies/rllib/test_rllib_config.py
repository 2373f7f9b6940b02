"""Table II of Ghafouri et al. 2022 as the agents' defaults, and bad hyperparameter input."""

from __future__ import annotations

import pytest

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.policies.rllib.config import Algo, NetworkConfig, algo_config, as_dict, parse_algo


def test_defaults_are_table_ii() -> None:
    pg, ppo, impala = (algo_config(a) for a in (Algo.PG, Algo.PPO, Algo.IMPALA))
    for cfg in (pg, ppo, impala):
        assert cfg.train_batch_size == 1000
        assert cfg.lr == pytest.approx(3e-4)
        assert cfg.gamma == pytest.approx(0.99)
        assert cfg.network.hidden == (64, 64)
    assert ppo.minibatch_size == 128


def test_overrides_replace_only_named_fields() -> None:
    cfg = algo_config(Algo.IMPALA, {"lr": 1e-3})
    assert cfg.lr == pytest.approx(1e-3) and cfg.train_batch_size == 1000
    assert as_dict(cfg)["network"] == {"hidden": [64, 64], "activation": "tanh", "placement_prior": False,
                                       "near_prior": True, "near_init": 0.5, "near_powered_only": False}


def test_network_override_from_a_dict_keeps_table_ii_layers() -> None:
    cfg = algo_config(Algo.PPO, {"network": {"placement_prior": True}, "gamma": 0.9})
    assert cfg.network == NetworkConfig(hidden=(64, 64), activation="tanh", placement_prior=True)
    with pytest.raises(EdgeMigrateError, match="ppo.network") as e:
        algo_config(Algo.PPO, {"network": {"placement_priors": True}})
    assert "\n" not in str(e.value)


def test_placement_prior_needs_ppo_or_impala_and_a_layout() -> None:
    from edgemigrate.policies.rllib.toyenv import make_toy_env
    from edgemigrate.policies.rllib.trainer import TrainSpec

    prior = {"network": {"placement_prior": True}}
    for algo, layout in ((Algo.PG, {"users": 1, "containers": 1, "nodes": 2, "slot": 0.5}), (Algo.PPO, None)):
        with pytest.raises(EdgeMigrateError, match="placement_prior needs PPO or IMPALA"):
            TrainSpec(algo=algo, hyper=algo_config(algo, prior), env_name="toy", env_creator=make_toy_env,
                      env_config={}, seed=0, timesteps=10, module_layout=layout)


@pytest.mark.parametrize("bad", [{"sgd_minibatch_size": 64}, {"learning_rate": 1e-3}])
def test_unknown_hyperparameter_is_one_line_error(bad: dict[str, float]) -> None:
    with pytest.raises(EdgeMigrateError) as e:
        algo_config(Algo.IMPALA, bad)  # RLlib's old name and a near miss: neither is a field
    msg = str(e.value)
    assert "\n" not in msg and next(iter(bad)) in msg and "impala" in msg


def test_bad_algorithm_and_network() -> None:
    with pytest.raises(EdgeMigrateError, match="expected one of pg, ppo, impala, got 'dqn'"):
        parse_algo("dqn")
    assert parse_algo("IMPALA") is Algo.IMPALA
    with pytest.raises(EdgeMigrateError, match="network.hidden"):
        NetworkConfig(hidden=(64, 0))
    with pytest.raises(EdgeMigrateError, match="network.activation"):
        NetworkConfig(activation="sigmoidish")


@pytest.mark.parametrize("bad", [-0.5, 51, float("nan"), "4"])
def test_a_bad_near_init_from_the_cli_is_a_one_line_error(bad: object) -> None:
    with pytest.raises(EdgeMigrateError, match="network.near_init: expected a number in"):
        algo_config(Algo.PPO, {"network": {"placement_prior": True, "near_init": bad}})


def test_the_near_options_reach_the_network() -> None:
    cfg = algo_config(Algo.PPO, {"network": {"placement_prior": True, "near_init": 6, "near_powered_only": True}})
    assert cfg.network.near_init == 6 and cfg.network.near_powered_only
