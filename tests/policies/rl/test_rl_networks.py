"""Actor/critic networks: masks, shapes for several N/L, gradients, configuration errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from edgemigrate.core.errors import ConfigError, ValidationError
from edgemigrate.policies.rl.agent import ActorCritic, PPCMPolicy, masked_entropy, obs_to_torch
from edgemigrate.policies.rl.networks import (
    ACTORS,
    CRITICS,
    CrossNetwork,
    MultiHeadSelfAttention,
    ObsDims,
    build,
)


@pytest.mark.parametrize("actor", ["dcn", "mlp"])
def test_untrained_actor_never_picks_infeasible(actor: str, rng: np.random.Generator, make_obs: Any) -> None:
    torch.manual_seed(0)
    dims = ObsDims(n_choices=6, n_layers=10, f_node=9, f_task=5)
    model = ActorCritic(dims, actor=actor, critic="mlp")
    obs = obs_to_torch(make_obs(rng, 5, 10, batch=500))
    mask = obs["action_mask"]
    with torch.no_grad():
        logits = model.logits(obs)
        assert torch.isneginf(logits[~mask]).all() and torch.isfinite(logits[mask]).all()
        for _ in range(10):  # sampled actions
            a, logp, ent, _ = model.act_value(obs)
            assert mask[torch.arange(500), a].all()
            assert torch.isfinite(logp).all() and torch.isfinite(ent).all()
    policy = PPCMPolicy(model, sample=True)
    greedy = PPCMPolicy(model)
    policy.reset(3)
    for i in range(100):
        one = make_obs(np.random.default_rng(i), 5, 10)
        single = {k: v[0] for k, v in one.items()}
        for p in (policy, greedy):
            assert single["action_mask"][p.act(single, {})] == 1


@pytest.mark.parametrize(("n_nodes", "n_layers"), [(1, 1), (3, 5), (12, 40)])
def test_shapes_for_several_sizes(
    n_nodes: int, n_layers: int, rng: np.random.Generator, make_obs: Any
) -> None:
    dims = ObsDims(n_choices=n_nodes + 1, n_layers=n_layers, f_node=9, f_task=5)
    for actor in ACTORS.names():
        for critic in CRITICS.names():
            model = ActorCritic(dims, actor=actor, critic=critic)
            obs = obs_to_torch(make_obs(rng, n_nodes, n_layers, batch=7))
            assert model.logits(obs).shape == (7, n_nodes + 1)
            assert model.value(obs).shape == (7,)


def test_dcn_actor_and_attention_critic_serve_any_number_of_nodes(
    rng: np.random.Generator, make_obs: Any
) -> None:
    """Weights are shared across choices: a model built for N = 3 scores N = 9 observations."""
    model = ActorCritic(ObsDims(n_choices=4, n_layers=6, f_node=9, f_task=5))
    obs = obs_to_torch(make_obs(rng, 9, 6, batch=4))
    assert model.logits(obs).shape == (4, 10)
    assert model.value(obs).shape == (4,)


@pytest.mark.parametrize(("actor", "critic"), [("dcn", "attention"), ("mlp", "mlp")])
def test_gradients_reach_every_parameter(
    actor: str, critic: str, rng: np.random.Generator, make_obs: Any
) -> None:
    torch.manual_seed(1)
    model = ActorCritic(ObsDims(n_choices=5, n_layers=8, f_node=9, f_task=5), actor=actor, critic=critic)
    obs = obs_to_torch(make_obs(rng, 4, 8, batch=32))
    a, logp, ent, value = model.act_value(obs)
    loss = -(logp * torch.randn(32)).mean() - 0.01 * ent.mean() + ((value - torch.randn(32)) ** 2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_masked_entropy_is_finite_with_finite_gradient() -> None:
    logits = torch.tensor(
        [[0.3, float("-inf"), -1.0], [float("-inf"), float("-inf"), 2.0]], requires_grad=True
    )
    ent = masked_entropy(logits)
    p = torch.softmax(torch.tensor([0.3, -1.0]), -1)
    assert ent[0].item() == pytest.approx(float(-(p * p.log()).sum()))
    assert ent[1].item() == pytest.approx(0.0)
    ent.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_cross_layer_formula() -> None:
    """x_1 = x_0 (x_0^T w) + b + x_0 for one layer (Liu et al. 2024, eq. 20)."""
    net = CrossNetwork(dim=4, n_layers=1)
    x0 = torch.randn(3, 4)
    with torch.no_grad():
        want = x0 * (x0 @ net.w[0]).unsqueeze(-1) + net.b[0] + x0
        torch.testing.assert_close(net(x0), want)


def test_configuration_errors(make_obs: Any) -> None:
    dims = ObsDims(n_choices=3, n_layers=4, f_node=9, f_task=5)
    with pytest.raises(ConfigError, match="did you mean 'dcn'"):
        ActorCritic(dims, actor="dnc")
    with pytest.raises(ValidationError, match="bad keyword"):
        build(ACTORS, "dcn", dims, {"cross_layer": 2})
    bad = spaces.Dict(
        {
            "nodes": spaces.Box(0, 1, (4, 9)),
            "node_layers": spaces.Box(0, 1, (3, 6)),
            "task": spaces.Box(0, 1, (5,)),
            "task_layers": spaces.Box(0, 1, (6,)),
            "action_mask": spaces.Box(0, 1, (4,)),
        }
    )
    with pytest.raises(ValidationError, match="inconsistent"):
        ObsDims.from_space(bad)
    obs = make_obs(np.random.default_rng(0), 2, 4)
    obs["action_mask"][:] = 0
    with pytest.raises(ValidationError, match="no feasible"):
        obs_to_torch(obs)


def test_self_attention_matches_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    mine = MultiHeadSelfAttention(dim=16, heads=4)
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(mine.qkv.weight)
        ref.in_proj_bias.copy_(mine.qkv.bias)
        ref.out_proj.weight.copy_(mine.out.weight)
        ref.out_proj.bias.copy_(mine.out.bias)
        x = torch.randn(3, 7, 16)
        torch.testing.assert_close(mine(x), ref(x, x, x, need_weights=False)[0])
