from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import edgemigrate.envs  # noqa: F401  (registers the env)
from edgemigrate.core.errors import ConfigError, EdgeMigrateError, ValidationError
from edgemigrate.envs import MobileKubeConfig, MobileKubeEnv


def rollout(env: gym.Env, seed: int, steps: int = 30) -> tuple[list[list[int]], list[float], list[list[int]]]:
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=seed)
    actions, rewards, stations = [], [], [info["user_station"].tolist()]
    for _ in range(steps):
        a = rng.integers(0, env.action_space.nvec)
        obs, r, term, trunc, info = env.step(a)
        actions.append(a.tolist())
        rewards.append(r)
        stations.append(info["user_station"].tolist())
        if term or trunc:
            break
    return actions, rewards, stations


def test_check_env() -> None:
    check_env(MobileKubeEnv(episode_steps=20), skip_render_check=True)


def test_registered_and_same_seed_is_deterministic() -> None:
    a = gym.make("edgemigrate/MobileKube-v0", config={"n_users": 32})
    b = gym.make("edgemigrate/MobileKube-v0", config=MobileKubeConfig(n_users=32))
    ra, rb = rollout(a, 5), rollout(b, 5)
    assert ra == rb and len(ra[0]) == 30
    assert rollout(a, 6)[2] != ra[2]  # another seed moves the users differently


def test_sizes_follow_the_paper() -> None:
    env = MobileKubeEnv(n_users=48)
    obs, info = env.reset(seed=0)
    assert obs.shape == ((48 + 16) * 8,)
    assert env.action_space.nvec.tolist() == [8] * 16
    # one-hot: one station per user, one node per container, decoding gives info's arrays back
    rows = obs.reshape(48 + 16, 8)
    assert (rows.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(rows[:48].argmax(1), info["user_station"])
    np.testing.assert_array_equal(rows[48:].argmax(1), info["placement"])
    # every service is used by three users
    assert np.bincount(info["problem"].user_service).tolist() == [3] * 16
    # users attach to the NEAREST station
    net = env.network
    xy = env._taxi.positions  # the positions behind the observation
    d = np.hypot(*(xy[:, None, :] - net.node_xy_m[None, :, :]).transpose(2, 0, 1))
    np.testing.assert_array_equal(d.argmin(axis=1), info["user_station"])


def test_metrics_of_a_step() -> None:
    env = MobileKubeEnv()
    env.reset(seed=1)
    _, r, _, _, info = env.step(np.zeros(16, dtype=np.int64))
    assert info["empty_servers"] == 7 and not info["illegal"]
    p = info["problem"]
    # eq. 7 for the one active node at 2 of 4 CPU; eq. 13 on the normalised terms
    assert info["power_w"] == pytest.approx(93.7 + (135.0 - 93.7) * 0.5)
    assert r == pytest.approx(p.w1 * info["reward_energy"] + p.w2 * info["reward_latency"])
    assert info["migrations"] > 0


def test_illegal_action_penalised_in_training_skipped_in_evaluation() -> None:
    small = {"node_cpu": 1.0, "episode_steps": 5}  # 8 containers of 0.125 CPU fill a node
    for training in (True, False):
        env = MobileKubeEnv(small, training=training)
        _, info = env.reset(seed=2)
        before = info["placement"]
        _, r, term, trunc, info = env.step(np.zeros(16, dtype=np.int64))  # 16 containers on node 0
        assert info["illegal"] and not term and not trunc
        np.testing.assert_array_equal(info["placement"], before)  # kept, not applied
        if training:
            assert r == env.config.illegal_penalty
        else:
            assert r == pytest.approx(info["problem"].w1 * info["reward_energy"]
                                      + info["problem"].w2 * info["reward_latency"])


def test_truncates_after_episode_steps() -> None:
    env = MobileKubeEnv(episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert flags == [False, False, True]


@pytest.mark.parametrize("bad", [np.zeros(15, dtype=np.int64), np.full(16, 8), np.full(16, 0.5)])
def test_bad_action_is_a_one_line_error(bad: np.ndarray) -> None:
    env = MobileKubeEnv()
    env.reset(seed=0)
    with pytest.raises(ValidationError, match="action must be 16 integer node ids"):
        env.step(bad)


def test_bad_config_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="unknown mobilekube config key 'n_user'.*n_users"):
        MobileKubeEnv({"n_user": 16})
    with pytest.raises(ConfigError, match="n_users .* must be >= n_services"):
        MobileKubeConfig(n_users=8)
    with pytest.raises(ConfigError, match="do not fit"):
        MobileKubeConfig(node_cpu=0.1)
    with pytest.raises(EdgeMigrateError):
        MobileKubeEnv(trace="/nonexistent/traces")


def test_trace_replay_starts_where_asked_and_ends_with_the_trace(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgemigrate.experiments.mobilekube.data import write_synthetic_traces

    folder = write_synthetic_traces(tmp_path, MobileKubeConfig(), n_cabs=16, n_steps=12, seed=1)
    env = MobileKubeEnv(trace=str(folder), training=False, episode_steps=50)
    rows = env.trajectories.n_steps
    _, info = env.reset(seed=0, options={"start_step": rows - 4})
    steps = 0
    done = False
    while not done:
        _, _, _, done, info = env.step(info["placement"])
        steps += 1
    assert steps == 3  # the trace ends before episode_steps
    # a replay does not depend on the seed: same start row -> same stations
    a = env.reset(seed=1, options={"start_step": 2})[1]["user_station"]
    b = env.reset(seed=2, options={"start_step": 2})[1]["user_station"]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValidationError, match="start_step must be an integer"):
        env.reset(seed=0, options={"start_step": rows})


def test_utilisation_feature_follows_the_placement() -> None:
    plain = MobileKubeEnv(n_users=16, node_cpu=1.5)
    env = MobileKubeEnv(n_users=16, node_cpu=1.5, obs_utilisation=True)
    assert env.observation_space.shape == (plain.observation_space.shape[0] + 8,)
    check_env(MobileKubeEnv(n_users=16, node_cpu=1.5, obs_utilisation=True, episode_steps=10), skip_render_check=True)
    obs, info = env.reset(seed=3)
    obs_plain, _ = plain.reset(seed=3)
    np.testing.assert_array_equal(obs[:-8], obs_plain)  # the one-hots are unchanged, the loads come last
    a = np.array([0] * 12 + [5] * 4, dtype=np.int64)  # 12 x 0.125 = 1.5 CPU fills node 0 exactly
    obs, _, _, _, info = env.step(a)
    assert not info["illegal"]
    np.testing.assert_allclose(obs[-8:], [1.0, 0, 0, 0, 0, 4 * 0.125 / 1.5, 0, 0], rtol=1e-6)
