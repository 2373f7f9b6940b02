"""The placement prior's terms on hand-made observations (``policies/rllib/packing.py``), no training.

The module is built directly (no Ray cluster): its ``_prior`` on zero MLP logits is exactly the prior terms, so
each can be checked against a value worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.core.errors import EdgeMigrateError

torch = pytest.importorskip("torch")
pytest.importorskip("ray")

from gymnasium import spaces  # noqa: E402

from edgemigrate.policies.rllib.packing import (  # noqa: E402
    MASKED,
    NEAR_INIT,
    STAY_INIT,
    PlacementPriorPPOModule,
    layout,
    near_feature,
    user_mix,
)

# 3 stations = 3 nodes on a line 0 - 1 - 2: access 5 ms, +2 ms per hop
DELAY_S = np.array([[0.005, 0.007, 0.009], [0.007, 0.005, 0.007], [0.009, 0.007, 0.005]])
USERS, CONTAINERS, NODES = 4, 2, 3


def _module(with_delays: bool = True, slot: float = 0.5, **near: object) -> PlacementPriorPPOModule:
    lay = layout(USERS, CONTAINERS, NODES, slot, delay_sn_s=DELAY_S if with_delays else None,
                 user_service=[0, 1, 0, 1] if with_delays else None, **near)  # type: ignore[arg-type]
    return _built(lay)


def _built(lay: dict) -> PlacementPriorPPOModule:
    size = (USERS + CONTAINERS) * NODES + NODES
    return PlacementPriorPPOModule(
        observation_space=spaces.Box(0.0, 1.0, (size,), np.float32),
        action_space=spaces.MultiDiscrete([NODES] * CONTAINERS),
        model_config={"fcnet_hiddens": [8], "fcnet_activation": "tanh", "head_fcnet_hiddens": [],
                      "vf_share_layers": False, "placement_layout": lay})


def _obs(user_station: list[int], placement: list[int], slot: float = 0.5) -> torch.Tensor:
    users = np.eye(NODES)[user_station]
    on = np.eye(NODES)[placement]
    util = np.bincount(placement, minlength=NODES) * slot
    return torch.as_tensor(np.concatenate([users.ravel(), on.ravel(), util]), dtype=torch.float32).reshape(1, -1)


def test_near_feature_is_minus_the_mean_normalised_delay_of_the_containers_users() -> None:
    # users 0, 2 use container 0 and stand at stations 0 and 2; users 1, 3 use container 1, both at station 2
    users = torch.as_tensor(np.eye(NODES)[[0, 2, 2, 2]], dtype=torch.float32).reshape(1, USERS, NODES)
    mix = torch.as_tensor(user_mix([0, 1, 0, 1], CONTAINERS))
    norm = torch.as_tensor((DELAY_S - 0.005) / 0.004, dtype=torch.float32)  # 0, 0.5, 1 for 0, 1, 2 hops
    got = near_feature(users, mix, norm).numpy()[0]
    # container 0: node 0 -> (0 + 1) / 2, node 1 -> (0.5 + 0.5) / 2, node 2 -> (1 + 0) / 2: every node the same
    np.testing.assert_allclose(got[0], [-0.5, -0.5, -0.5])
    # container 1: both users at station 2 -> node 2 nearest (0), node 0 farthest (-1)
    np.testing.assert_allclose(got[1], [-1.0, -0.5, 0.0])


def test_prior_adds_stay_join_and_near_and_masks_full_nodes() -> None:
    module = _module()
    obs = _obs(user_station=[0, 2, 2, 2], placement=[0, 0])  # node 0 holds both containers: util 1.0 = full
    prior = module._prior(obs, torch.zeros(1, CONTAINERS * NODES)).detach().numpy().reshape(CONTAINERS, NODES)
    # the untrained weights: stay STAY_INIT, join 0, near NEAR_INIT (module-built normalisation: span 4 ms)
    # container 0's users sit at both ends: every node is half-way (-0.5); it stays on node 0
    np.testing.assert_allclose(prior[0], [STAY_INIT - 0.5 * NEAR_INIT, -0.5 * NEAR_INIT, -0.5 * NEAR_INIT], rtol=1e-5)
    np.testing.assert_allclose(prior[1], [STAY_INIT - NEAR_INIT, -0.5 * NEAR_INIT, 0.0], rtol=1e-5, atol=1e-6)
    # a full node is masked for a container not on it; node 0 is full but holds both, so nothing is masked here
    obs_full = _obs(user_station=[0, 2, 2, 2], placement=[1, 1])
    masked = module._prior(obs_full, torch.zeros(1, CONTAINERS * NODES)).detach().numpy().reshape(CONTAINERS, NODES)
    assert (masked == MASKED).sum() == 0
    # with node_cpu fitting one container (slot 1.0) node 1 holding container 0 is full for container 1
    one = _module(slot=1.0)
    m1 = one._prior(_obs([0, 2, 2, 2], [1, 0], slot=1.0), torch.zeros(1, CONTAINERS * NODES)).detach().numpy()
    m1 = m1.reshape(CONTAINERS, NODES)
    assert m1[1, 1] == MASKED and m1[0, 0] == MASKED and m1[0, 1] != MASKED and m1[1, 2] != MASKED


def test_the_near_weight_is_learned_and_moves_the_untrained_policy_towards_users() -> None:
    module = _module()
    assert any(p is module.near_raw for p in module.parameters())
    obs = _obs(user_station=[2, 2, 2, 2], placement=[1, 1])
    prior = module._prior(obs, torch.zeros(1, CONTAINERS * NODES)).detach().numpy().reshape(CONTAINERS, NODES)
    assert prior[0, 2] > prior[0, 0] and prior[1, 2] > prior[1, 0]  # nearer the users than the far end
    assert prior[0, 1] - prior[0, 2] == pytest.approx(STAY_INIT - 0.5 * NEAR_INIT, rel=1e-5)  # still mostly stays


def test_a_layout_without_delays_builds_the_pre_near_module() -> None:
    module = _module(with_delays=False)
    assert module.near_raw is None and "delay_norm" not in module.state_dict()
    obs = _obs(user_station=[2, 2, 2, 2], placement=[1, 1])
    prior = module._prior(obs, torch.zeros(1, CONTAINERS * NODES)).detach().numpy().reshape(CONTAINERS, NODES)
    np.testing.assert_allclose(prior, [[0.0, STAY_INIT, 0.0], [0.0, STAY_INIT, 0.0]], atol=1e-6)


@pytest.mark.parametrize(("delay", "users", "match"), [
    (np.ones((2, 3)), [0, 1, 0, 1], "delay_sn_s must be 3 x 3"),
    (np.full((3, 3), np.nan), [0, 1, 0, 1], "delay_sn_s must be 3 x 3 finite"),
    (-DELAY_S, [0, 1, 0, 1], "delays >= 0"),
    (DELAY_S, [0, 0, 0, 0], "user_service must map 4 users onto all 2 containers"),
    (DELAY_S, [0, 1, 0, 2], "user_service must map"),
    (DELAY_S, [0, 1, 0], "user_service must map"),
])
def test_bad_layouts_are_one_line_errors(delay: np.ndarray, users: list[int], match: str) -> None:
    with pytest.raises(EdgeMigrateError, match=match):
        layout(USERS, CONTAINERS, NODES, 0.5, delay_sn_s=delay, user_service=users)


def test_near_among_powered_nodes_counts_an_empty_node_as_the_farthest() -> None:
    """Users all at station 2, containers on nodes 0 and 1 (node 2 empty): ungated, both containers are pulled
    towards node 2 (which would power it); gated, node 2 scores as the farthest and each container's nearness
    is only about the node the other one is on."""
    obs = _obs(user_station=[2, 2, 2, 2], placement=[0, 1])
    zero = torch.zeros(1, CONTAINERS * NODES)
    free = _module(near_init=4.0)._prior(obs, zero).detach().numpy().reshape(CONTAINERS, NODES)
    gated = _module(near_init=4.0, near_powered_only=True)._prior(obs, zero).detach().numpy().reshape(CONTAINERS, NODES)
    np.testing.assert_allclose(free, [[STAY_INIT - 4.0, -2.0, 0.0], [-4.0, STAY_INIT - 2.0, 0.0]], atol=1e-5)
    # container 0 (on node 0): node 1 holds container 1 -> its nearness -0.5; nodes 0 (only itself) and 2 (empty) -1
    np.testing.assert_allclose(gated, [[STAY_INIT - 4.0, -2.0, -4.0], [-4.0, STAY_INIT - 4.0, -4.0]], atol=1e-5)
    assert free[0].argmax() == 2 and gated[0].argmax() == 0  # with stay 2, only the ungated term opens node 2


def test_near_init_sets_the_untrained_weight_and_old_layouts_build_as_trained() -> None:
    assert float(_module(near_init=7.5).near_raw.detach()) * 10.0 == pytest.approx(7.5)
    lay = layout(USERS, CONTAINERS, NODES, 0.5, delay_sn_s=DELAY_S, user_service=[0, 1, 0, 1])
    old = {k: v for k, v in lay.items() if k not in ("near_init", "near_powered_only")}  # a checkpoint's layout
    module = _built(old)
    assert float(module.near_raw.detach()) * 10.0 == pytest.approx(NEAR_INIT) and not module._near_powered_only


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 51.0])
def test_a_bad_near_init_is_a_one_line_error(bad: float) -> None:
    with pytest.raises(EdgeMigrateError, match="near_init must be in"):
        layout(USERS, CONTAINERS, NODES, 0.5, delay_sn_s=DELAY_S, user_service=[0, 1, 0, 1], near_init=bad)
