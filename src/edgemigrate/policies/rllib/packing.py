"""A placement policy module that can learn to pack: Table II's MLP plus four placement-aware terms.

Why (measured, docs/mobilekube.md "Why PPO did not pack"): with ``MultiDiscrete`` container -> node actions
every container's head samples independently, and under a near-uniform policy the expected reward of "put
container j on node k" is the same for every k (the other 15 heads are as likely to be anywhere), so the
policy gradient towards sharing a node is zero at the start and only noise can break the tie. Packing is a
coordination that the one-hot observation and independent heads do not make learnable in 20k steps.

The module adds to the MLP's logits of container ``j`` on node ``k`` (one shared scalar each, learned):

- ``stay * [j is on k]``: a prior to keep the current placement (initial weight :data:`STAY_INIT`), so the
  other containers' nodes are predictable from the observation and a move has a consequence the gradient
  can see;
- ``join * containers_k``: a preference for loaded nodes, in containers (the utilisation over one container's
  share: a node with three more containers than this one's gets ``3 * join``; initial 0, learned from eq. 13's
  energy term);
- ``near * -delay_jk``: a preference for nodes close to the container's users (initial :data:`NEAR_INIT`,
  learned from eq. 13's latency term). ``delay_jk`` is the mean over ``j``'s users of the backhaul delay from
  the user's station (read from the observation's one-hots) to node ``k`` - the ``d_net`` of eqs. 5-6 - less
  the access delay every path shares, over the largest such backhaul delay, so it lies in [0, 1]. The delay matrix is the env's fixed network
  (``layout(..., delay_sn_s=...)``), not anything that changes during an episode: the term sees only what the
  observation determines. With ``near_powered_only`` only nodes that hold another container compete on nearness and an empty node
  counts as the farthest, so the term moves containers between the nodes already powered and never pulls one
  onto an empty node (which eq. 13's energy term would punish): its gradient then points one way;
- a mask (-1e9) on nodes that have no room for ``j`` now (sec. V's capacity constraints 3-4 applied per
  container to the current loads; the joint action can still overfill a node, which the env penalises).

Why the ``near`` term (measured, docs/mobilekube.md): with stay / join / mask alone the 16-user agent learned
to pack (5.56 empty servers) but its latency stayed 6 % under best-fit's where the optimum shows 38 %: which
of the powered nodes is near a user is a product of a station one-hot and a fixed delay row, which the
64-unit MLP would have to learn per (user, station, node) from w2 = 0.05's small share of the reward.

The MLP (two 64-unit layers, Table II) sees the same observation and learns everything else. The observation
must carry the utilisation (``MobileKubeConfig.obs_utilisation``); the layout comes in the module's
``model_config["placement_layout"]``. A layout without ``delay_sn_s`` (checkpoints from before the ``near``
term) builds the module without it, so those checkpoints load and act as they were trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns

from edgemigrate.core.errors import ValidationError
from edgemigrate.policies.rllib.config import MAX_NEAR_INIT, NEAR_INIT

LAYOUT_KEY = "placement_layout"
STAY_INIT = 2.0
"""Initial weight of the keep-placement prior: with 8 nodes, e^2 / (e^2 + 7) = 51 % to stay at the start, so a
container's node next step is predictable yet half of them still explore."""
MASKED = -1.0e9
ENV_BUFFERS = ("delay_norm", "user_mix")
"""Module buffers that describe the env (its delays, its users), not learned: a warm start never copies them."""
PRIOR_SCALE = 10.0
"""The two scalars are stored divided by this: Adam moves a parameter by about ``lr`` per step whatever its
gradient, so at Table II's lr 3e-4 (80 steps per 1000-step batch with 10 epochs) a scalar moves at most ~0.024
per 1000 env steps, and a packing ``join`` weight (~1 per container, against ``stay`` = 2) would take 10^5
steps; scaled, it can move ~0.24 per batch. The MLP's own weights keep the table's rate."""


def layout(users: int, containers: int, nodes: int, slot: float, delay_sn_s: Any = None,
           user_service: Any = None, *, near_init: float = NEAR_INIT,
           near_powered_only: bool = False) -> dict[str, Any]:
    """The observation layout the module needs; ``slot`` = one container's CPU over a node's capacity.

    ``delay_sn_s`` (stations x nodes, seconds; stations are the ``nodes`` one-hot columns of the users) and
    ``user_service`` (the container of every user) enable the ``near`` term, with its initial weight
    ``near_init`` and its ``near_powered_only`` form (module docstring); plain values, so the layout stays JSON
    and pickles into the checkpoint with the module's config (a layout without the last two keys, from before
    them, builds the module it was trained with).
    """
    out: dict[str, Any] = {"users": users, "containers": containers, "nodes": nodes, "slot": slot}
    if delay_sn_s is not None:
        d = np.asarray(delay_sn_s, dtype=np.float64)
        us = np.asarray(user_service if user_service is not None else np.arange(users) % containers, dtype=np.int64)
        if d.shape != (nodes, nodes) or not np.all(np.isfinite(d)) or d.min() < 0:
            raise ValidationError(f"placement layout: delay_sn_s must be {nodes} x {nodes} finite delays >= 0, "
                                  f"got shape {d.shape}")
        if us.shape != (users,) or us.min() < 0 or us.max() >= containers or len(np.unique(us)) != containers:
            raise ValidationError(f"placement layout: user_service must map {users} users onto all {containers} "
                                  "containers")
        if not (np.isfinite(near_init) and 0.0 <= near_init <= MAX_NEAR_INIT):
            raise ValidationError(f"placement layout: near_init must be in [0, {MAX_NEAR_INIT:g}], got {near_init}")
        out["delay_sn_s"] = d.tolist()
        out["user_service"] = us.tolist()
        out["near_init"] = float(near_init)
        out["near_powered_only"] = bool(near_powered_only)
    return out


def near_feature(users_onehot: Any, mix: Any, delay_norm: Any) -> Any:
    """``-delay_jk`` for a batch: ``users_onehot`` (b, o, m) user -> station, ``mix`` (n, o) each container's
    mean over its users, ``delay_norm`` (m stations, m nodes) in [0, 1]; returns (b, n, m), 0 = as near as the
    network allows, -1 = the farthest node from every user of the container."""
    import torch

    return -torch.matmul(mix, torch.matmul(users_onehot, delay_norm))


def user_mix(user_service: Any, containers: int) -> NDArray[np.float32]:
    """(n, o): row ``j`` averages the users of container ``j``."""
    us = np.asarray(user_service, dtype=np.int64)
    mix = (us[None, :] == np.arange(containers)[:, None]).astype(np.float32)
    return mix / mix.sum(axis=1, keepdims=True)


class PlacementPriorPPOModule(DefaultPPOTorchRLModule):  # type: ignore[misc]
    """PPO's / IMPALA's default torch module with the stay / join / near / room terms (module docstring)."""

    def setup(self) -> None:
        import torch

        super().setup()
        lay = dict(self.model_config.get(LAYOUT_KEY) or {})
        self._o, self._n, self._m = int(lay["users"]), int(lay["containers"]), int(lay["nodes"])
        self._slot = float(lay["slot"])
        self.stay_raw = torch.nn.Parameter(torch.tensor(STAY_INIT / PRIOR_SCALE))
        self.join_raw = torch.nn.Parameter(torch.tensor(0.0))
        self.near_raw: Any = None
        self._near_powered_only = bool(lay.get("near_powered_only", False))
        if lay.get("delay_sn_s") is not None:
            d = np.asarray(lay["delay_sn_s"], dtype=np.float64)
            # buffers, not parameters: the network is fixed; saved with the module so a checkpoint is self-contained
            span = max(float(d.max() - d.min()), 1e-12)
            self.register_buffer("delay_norm", torch.as_tensor((d - d.min()) / span, dtype=torch.float32))
            self.register_buffer("user_mix", torch.as_tensor(user_mix(lay["user_service"], self._n)))
            self.near_raw = torch.nn.Parameter(torch.tensor(float(lay.get("near_init", NEAR_INIT)) / PRIOR_SCALE))

    def _prior(self, obs: Any, logits: Any) -> Any:
        import torch

        b, o, n, m = obs.shape[0], self._o, self._n, self._m
        on = obs[:, o * m:(o + n) * m].reshape(b, n, m)
        util = obs[:, (o + n) * m:(o + n) * m + m].reshape(b, 1, m)
        terms = self.stay_raw * on + self.join_raw * util / self._slot
        if self.near_raw is not None:
            users = obs[:, :o * m].reshape(b, o, m)
            near = near_feature(users, self.user_mix, self.delay_norm)
            if self._near_powered_only:
                others = (util - self._slot * on) > 0.5 * self._slot  # node k holds a container other than j
                near = torch.where(others, near, torch.full_like(near, -1.0))
            terms = terms + self.near_raw * near
        out = logits.reshape(b, n, m) + PRIOR_SCALE * terms
        full = (util + self._slot * (1.0 - on)) > 1.0 + 1e-6
        return torch.where(full, torch.full_like(out, MASKED), out).reshape(b, n * m)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        out = super()._forward(batch, **kwargs)
        out[Columns.ACTION_DIST_INPUTS] = self._prior(batch[Columns.OBS], out[Columns.ACTION_DIST_INPUTS])
        return out

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        out = super()._forward_train(batch, **kwargs)
        out[Columns.ACTION_DIST_INPUTS] = self._prior(batch[Columns.OBS], out[Columns.ACTION_DIST_INPUTS])
        return out
