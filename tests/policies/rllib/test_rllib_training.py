"""Real RLlib training, tiny: every algorithm trains on the toy env, checkpoints, and loads as a deterministic
agent; the Mobile-Kube experiment writes its results folder; a checkpoint of another size is refused.

One in-process Ray (2 CPUs) serves the whole module: ``train`` joins it instead of starting its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.experiments.mobilekube.training import TrainingRequest, load_agent, run_training
from edgemigrate.experiments.results import read_table
from edgemigrate.policies.rllib.agent import load_agent as load_rllib_agent
from edgemigrate.policies.rllib.config import Algo, algo_config
from edgemigrate.policies.rllib.toyenv import ToyPlacementEnv, make_toy_env
from edgemigrate.policies.rllib.trainer import TrainSpec, train

ray = pytest.importorskip("ray")

TINY = {Algo.PG: {"train_batch_size": 100}, Algo.PPO: {"train_batch_size": 100, "minibatch_size": 50, "num_epochs": 2},
        Algo.IMPALA: {"train_batch_size": 100, "rollout_fragment_length": 20, "minibatch_size": 20}}


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(Algo))
def test_train_checkpoint_and_act(algo: Algo, local_ray: None, tmp_path: Path) -> None:
    spec = TrainSpec(algo=algo, hyper=algo_config(algo, TINY[algo]), env_name="toy", env_creator=make_toy_env,
                     env_config={"episode_steps": 10}, seed=3, timesteps=300)
    seen: list[dict[str, float]] = []
    out = train(spec, tmp_path / "ckpt", on_iteration=seen.append)
    assert out.rows == seen and len(out.rows) >= 1
    last = out.rows[-1]
    assert last["env_steps_sampled"] >= 300
    # the env's info keys arrive as per-episode means; the toy env has 4 nodes and 3 services
    assert 0.0 <= last["empty_servers"] <= 3.0 and last["latency_s"] >= 0.0
    assert np.isfinite(last["episode_reward_mean"])
    assert last["env_steps_dropped"] == 0  # the learner consumed every sampled batch
    if algo is Algo.PG:  # one gradient step per batch: each sampled step trained once
        assert last["env_steps_trained"] == pytest.approx(last["env_steps_sampled"], rel=0.25)
    else:  # RLlib counts every minibatch pass (num_epochs x minibatches per batch)
        assert last["env_steps_trained"] >= last["env_steps_sampled"]
    env = ToyPlacementEnv(episode_steps=10)
    agent = load_rllib_agent(out.checkpoint, env.observation_space, env.action_space)
    obs, info = env.reset(seed=0)
    for _ in range(5):
        a = agent.act(obs, info)
        assert a.shape == (3,) and a.dtype == np.int64 and env.action_space.contains(a)
        assert np.array_equal(a, agent.act(obs, info))  # deterministic
        obs, _, _, _, info = env.step(a)
    if algo is Algo.PG:
        _refuses_other_sizes(out.checkpoint, tmp_path)


def _refuses_other_sizes(ckpt: Path, tmp_path: Path) -> None:
    bigger = ToyPlacementEnv(n_nodes=5)
    with pytest.raises(EdgeMigrateError) as e:
        load_rllib_agent(ckpt, bigger.observation_space, bigger.action_space)
    msg = str(e.value)
    assert "\n" not in msg and "observation size 24 values" in msg and "env's 30 values" in msg
    more = ToyPlacementEnv(n_services=4, n_nodes=3)  # same observation size (24), another action space
    with pytest.raises(EdgeMigrateError, match="action size 3 x 4 choices does not match the env's 4 x 3"):
        load_rllib_agent(ckpt, more.observation_space, more.action_space)
    with pytest.raises(EdgeMigrateError, match="not an RLlib algorithm checkpoint"):
        load_rllib_agent(tmp_path, bigger.observation_space, bigger.action_space)


@pytest.mark.slow
def test_mobilekube_training_results_folder(local_ray: None, tmp_path: Path) -> None:
    req = TrainingRequest(algos=(Algo.IMPALA,), users=4, timesteps=200, seed=1,
                          env_overrides={"n_nodes": 3, "episode_steps": 20},
                          hyper_overrides={"impala": {"train_batch_size": 100, "rollout_fragment_length": 20,
                                                      "minibatch_size": 20}})
    run = run_training(req, tmp_path, command=["test"])
    for name in ("manifest.json", "config.json", "training.md", "impala/train.csv",
                 "plots/fig4_empty_servers.png", "plots/fig5_latency.png", "plots/fig6_reward.png"):
        assert (run / name).is_file(), name
    t = read_table(run / "impala" / "train.csv")
    assert {"env_steps_sampled", "env_steps_trained", "empty_servers", "latency_s", "illegal"} <= set(t)
    assert t["env_steps_sampled"][-1] >= 200
    env_cfg = {"n_users": 4, "n_services": 4, "n_nodes": 3, "seed": 1, "training": False}
    agent = load_agent(run / "impala" / "checkpoint", env_cfg)
    from edgemigrate.envs.mobilekube import MobileKubeEnv

    env = MobileKubeEnv(env_cfg)
    obs, info = env.reset(seed=0)
    assert env.action_space.contains(agent.act(obs, info))
    with pytest.raises(EdgeMigrateError, match=r"observation size 24 values does not match the env's 36 values"):
        load_agent(run / "impala" / "checkpoint", {**env_cfg, "n_users": 8})
    # the utilisation feature makes the observation 3 values longer: a one-hot-only checkpoint is refused
    with pytest.raises(EdgeMigrateError, match=r"observation size 24 values does not match the env's 27 values"):
        load_agent(run / "impala" / "checkpoint", {**env_cfg, "obs_utilisation": True})


@pytest.mark.slow
def test_placement_prior_trains_and_never_picks_a_full_node(local_ray: None, tmp_path: Path) -> None:
    env_cfg = {"n_users": 4, "n_services": 4, "n_nodes": 3, "node_cpu": 0.25, "obs_utilisation": True}
    req = TrainingRequest(algos=(Algo.PPO,), users=4, timesteps=200, seed=1,
                          env_overrides={**env_cfg, "episode_steps": 20},
                          hyper_overrides={"ppo": {**TINY[Algo.PPO], "network": {"placement_prior": True}}})
    run = run_training(req, tmp_path, command=["test"])
    agent = load_agent(run / "ppo" / "checkpoint", {**env_cfg, "seed": 1, "training": False})
    from edgemigrate.envs.mobilekube import MobileKubeEnv

    env = MobileKubeEnv({**env_cfg, "seed": 1, "training": False, "episode_steps": 20})
    obs, info = env.reset(seed=0)
    for _ in range(20):  # node_cpu 0.25 = two containers: a node holding two is full for every other container
        placement = info["placement"]
        a = agent.act(obs, info)
        full = {k for k in range(3) if (placement == k).sum() == 2}
        assert all(a[j] == placement[j] or a[j] not in full for j in range(4)), (placement, a)
        obs, _, _, trunc, info = env.step(a)
        if trunc:
            break
    with pytest.raises(EdgeMigrateError, match="placement_prior reads the node utilisation"):
        run_training(TrainingRequest(algos=(Algo.PPO,), users=4, timesteps=100, env_overrides={"n_nodes": 3},
                                     hyper_overrides={"ppo": {"network": {"placement_prior": True}}}), tmp_path)


@pytest.mark.slow
def test_warm_start_copies_what_fits_and_adds_the_near_term(local_ray: None, tmp_path: Path) -> None:
    env_cfg = {"n_services": 4, "n_nodes": 3, "node_cpu": 0.25, "obs_utilisation": True, "episode_steps": 20}
    ppo = {**TINY[Algo.PPO], "network": {"placement_prior": True, "near_prior": False}}
    old = run_training(TrainingRequest(algos=(Algo.PPO,), users=4, timesteps=100, seed=1, env_overrides=env_cfg,
                                       hyper_overrides={"ppo": ppo}), tmp_path / "old", command=["test"])
    ckpt = old / "ppo" / "checkpoint"
    assert not (old / "ppo" / "warm_start.json").exists()
    near = {**TINY[Algo.PPO], "network": {"placement_prior": True}}
    # same size, now with the near term: every old parameter is copied, the new weight and env buffers are not
    same = run_training(TrainingRequest(algos=(Algo.PPO,), users=4, timesteps=100, seed=1, env_overrides=env_cfg,
                                        hyper_overrides={"ppo": near}, init_from=ckpt), tmp_path / "same")
    import json

    warm = json.loads((same / "ppo" / "warm_start.json").read_text())
    assert {"stay_raw", "join_raw", "encoder.actor_encoder.net.mlp.0.weight"} <= set(warm["loaded"])
    assert set(warm["kept"]) == {"near_raw", "delay_norm", "user_mix"}
    assert json.loads((same / "config.json").read_text())["init_from"] == str(ckpt)
    # 8 users: the first layers see a longer observation and keep their initialisation; the scalars carry over
    other = run_training(TrainingRequest(algos=(Algo.PPO,), users=8, timesteps=100, seed=1, env_overrides=env_cfg,
                                         hyper_overrides={"ppo": near}, init_from=ckpt), tmp_path / "other")
    warm8 = json.loads((other / "ppo" / "warm_start.json").read_text())
    assert {"stay_raw", "join_raw", "pi.net.mlp.0.weight"} <= set(warm8["loaded"])
    assert {"encoder.actor_encoder.net.mlp.0.weight", "encoder.critic_encoder.net.mlp.0.weight"} <= set(warm8["kept"])
    with pytest.raises(EdgeMigrateError, match="not an RLlib algorithm checkpoint") as e:
        run_training(TrainingRequest(algos=(Algo.PPO,), users=4, timesteps=100, seed=1, env_overrides=env_cfg,
                                     hyper_overrides={"ppo": near}, init_from=tmp_path), tmp_path / "bad")
    assert "\n" not in str(e.value)
