from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import edgemigrate.envs  # noqa: F401  (registers the env)
from edgemigrate.envs import PPCMEnv
from edgemigrate.policies import make_policy
from edgemigrate.policies.rl.evaluate import evaluate

SMALL = ["sim.n_steps=8", "users.count=20"]


def rollout(env: gym.Env, seed: int, policy_seed: int = 0) -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(policy_seed)
    obs, _ = env.reset(seed=seed)
    actions, rewards = [], []
    done = False
    while not done:
        a = int(rng.choice(np.flatnonzero(obs["action_mask"])))
        obs, r, term, trunc, _ = env.step(a)
        actions.append(a)
        rewards.append(r)
        done = term or trunc
    return actions, rewards


def test_check_env() -> None:
    env = PPCMEnv("ppcm-paper", SMALL)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(env, skip_render_check=True)


def test_registered_and_same_seed_is_deterministic() -> None:
    a = gym.make("edgemigrate/PPCM-v0", overrides=SMALL)
    b = gym.make("edgemigrate/PPCM-v0", overrides=SMALL)
    ra, rb = rollout(a, 11), rollout(b, 11)
    assert ra == rb and len(ra[0]) > 10
    assert rollout(a, 12) != ra


def test_mask_matches_feasibility_and_cloud_always_allowed() -> None:
    env = PPCMEnv("ppcm-paper", ["sim.n_steps=10", "users.count=60", "nodes.max_containers=2"])
    obs, info = env.reset(seed=3)
    seen_infeasible = False
    done = False
    while not done:
        mask = obs["action_mask"].astype(bool)
        assert mask[-1]  # cloud
        task = info["task"]
        view = info["view"]
        n1 = env.n_nodes + 1
        np.testing.assert_array_equal(mask, view.feasible(np.full(n1, task), np.arange(n1)))
        seen_infeasible |= not mask.all()
        a = int(np.flatnonzero(mask)[0])
        obs, _, term, trunc, info = env.step(a)
        # a masked-feasible action is never turned into a fallback
        d = env.sim.recorder.decisions
        assert not d["fallback"][-1]
        done = term or trunc
    assert seen_infeasible  # the tiny container cap makes some nodes infeasible


def test_reward_is_minus_task_delay_and_observation_shapes() -> None:
    env = PPCMEnv("ppcm-paper", SMALL)
    obs, info = env.reset(seed=0)
    L = env.n_layers
    assert obs["nodes"].shape == (10, 12) and obs["node_layers"].shape == (10, L)
    assert obs["task_layers"].shape == (L,) and obs["task"].shape == (9,)
    assert obs["task_layers"].sum() >= 1
    _, r, _, _, info = env.step(9)
    d = env.sim.recorder.decisions
    assert r == pytest.approx(-d["total_s"][-1]) and info["costs"]["total_s"] == pytest.approx(-r)
    c = info["costs"]
    assert c["total_s"] == pytest.approx(c["migration_s"] + c["computation_s"] + c["deployment_s"] + c["backhaul_s"])


def test_heuristic_policy_acts_inside_the_env_and_expert_action() -> None:
    env = PPCMEnv("ppcm-paper", SMALL, expert=make_policy("nearest"))
    obs, info = env.reset(seed=2)
    pol = make_policy("nearest")
    assert pol.act(obs, info) == info["expert_action"]


def test_vector_env_rollout() -> None:
    envs = gym.vector.SyncVectorEnv([lambda: PPCMEnv("ppcm-paper", SMALL) for _ in range(2)])
    obs, _ = envs.reset(seed=[1, 2])
    assert obs["action_mask"].shape == (2, 10)
    for _ in range(20):
        acts = np.array([int(np.flatnonzero(m)[-1]) for m in obs["action_mask"]])
        obs, r, term, trunc, _ = envs.step(acts)
        assert r.shape == (2,) and np.all(r < 0)
    envs.close()


def test_an_episode_without_any_task_is_empty_but_valid() -> None:
    # a rate this small makes an arrival in 3 ticks of 2 users practically impossible (p ~ 6e-8)
    env = PPCMEnv("ppcm-paper", ["sim.n_steps=3", "users.count=2", "workload.arrival_rate_per_user_s=1e-9"])
    for seed in range(3):
        obs, info = env.reset(seed=seed)  # used to raise IndexError on the empty queue
        assert env.observation_space.contains(obs)
        assert info["task"] is None and info["empty_episode"]
        assert obs["action_mask"].tolist() == [0] * env.n_nodes + [1]  # only the cloud
        assert make_policy("nearest").act(obs, info) == env.n_nodes
        obs, reward, terminated, truncated, info = env.step(0)  # the action is ignored
        assert terminated and not truncated and reward == 0.0 and info["empty_episode"]
        assert env.observation_space.contains(obs) and len(env.sim.recorder.decisions["task"]) == 0
        with pytest.raises(RuntimeError, match="finished episode"):
            env.step(0)
    # the env checker's reset/step contract holds for empty episodes too
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(env, skip_render_check=True)
    # the shared evaluation loop gets one zero-reward decision per empty episode
    result = evaluate(make_policy("nearest"), lambda: env, 2, seeds=[5, 6])
    assert result.lengths.tolist() == [1, 1] and result.returns.tolist() == [0.0, 0.0]
