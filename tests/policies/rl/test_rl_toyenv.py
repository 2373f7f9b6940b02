"""The contract toy env passes Gymnasium's checker and is deterministic per seed."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from edgemigrate.core.errors import ValidationError
from edgemigrate.policies.rl.networks import ObsDims
from edgemigrate.policies.rl.toyenv import InfoExpert, LayerOverlapEnv, RandomMaskedPolicy


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_check_env_and_contract_dims() -> None:
    env = LayerOverlapEnv(n_nodes=4, n_layers=7)
    check_env(env, skip_render_check=True)
    assert ObsDims.from_space(env.observation_space) == ObsDims(n_choices=5, n_layers=7, f_node=9, f_task=5)


def _rollout(seed: int) -> list[float]:
    env, pol = LayerOverlapEnv(), RandomMaskedPolicy()
    obs, info = env.reset(seed=seed)
    pol.reset(seed)
    out = []
    for _ in range(40):
        assert obs["action_mask"][-1] == 1  # the cloud is always feasible
        obs, r, term, trunc, info = env.step(pol.act(obs, info))
        out.append(r)
        if term or trunc:
            obs, info = env.reset()
    return out


def test_same_seed_same_rollout() -> None:
    assert _rollout(3) == _rollout(3)
    assert _rollout(3) != _rollout(4)


def test_expert_is_the_least_delay_feasible_choice() -> None:
    env = LayerOverlapEnv()
    obs, info = env.reset(seed=0)
    for _ in range(50):
        feasible = np.flatnonzero(obs["action_mask"])
        a = InfoExpert().act(obs, info)
        assert a in feasible and info["delay_s"][a] == pytest.approx(info["delay_s"][feasible].min())
        obs, r, _, _, info = env.step(a)
        assert r == pytest.approx(-info["placed_delay_s"])


def test_bad_arguments() -> None:
    with pytest.raises(ValidationError):
        LayerOverlapEnv(n_nodes=0)
    env = LayerOverlapEnv(n_nodes=2)
    env.reset(seed=0)
    with pytest.raises(ValidationError):
        env.step(3)
