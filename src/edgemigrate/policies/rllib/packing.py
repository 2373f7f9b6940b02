"""A placement policy module that can learn to pack: Table II's MLP plus three placement-aware terms.

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
- a mask (-1e9) on nodes that have no room for ``j`` now (sec. V's capacity constraints 3-4 applied per
  container to the current loads; the joint action can still overfill a node, which the env penalises).

The MLP (two 64-unit layers, Table II) sees the same observation and learns everything else (latency). The
observation must carry the utilisation (``MobileKubeConfig.obs_utilisation``); the layout comes in the module's
``model_config["placement_layout"]``.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns

LAYOUT_KEY = "placement_layout"
STAY_INIT = 2.0
"""Initial weight of the keep-placement prior: with 8 nodes, e^2 / (e^2 + 7) = 51 % to stay at the start, so a
container's node next step is predictable yet half of them still explore."""
MASKED = -1.0e9
PRIOR_SCALE = 10.0
"""The two scalars are stored divided by this: Adam moves a parameter by about ``lr`` per step whatever its
gradient, so at Table II's lr 3e-4 (80 steps per 1000-step batch with 10 epochs) a scalar moves at most ~0.024
per 1000 env steps, and a packing ``join`` weight (~1 per container, against ``stay`` = 2) would take 10^5
steps; scaled, it can move ~0.24 per batch. The MLP's own weights keep the table's rate."""


def layout(users: int, containers: int, nodes: int, slot: float) -> dict[str, float]:
    """The observation layout the module needs; ``slot`` = one container's CPU over a node's capacity."""
    return {"users": users, "containers": containers, "nodes": nodes, "slot": slot}


class PlacementPriorPPOModule(DefaultPPOTorchRLModule):  # type: ignore[misc]
    """PPO's / IMPALA's default torch module with the stay / join / room terms (module docstring)."""

    def setup(self) -> None:
        import torch

        super().setup()
        lay = dict(self.model_config.get(LAYOUT_KEY) or {})
        self._o, self._n, self._m = int(lay["users"]), int(lay["containers"]), int(lay["nodes"])
        self._slot = float(lay["slot"])
        self.stay_raw = torch.nn.Parameter(torch.tensor(STAY_INIT / PRIOR_SCALE))
        self.join_raw = torch.nn.Parameter(torch.tensor(0.0))

    def _prior(self, obs: Any, logits: Any) -> Any:
        import torch

        b, o, n, m = obs.shape[0], self._o, self._n, self._m
        on = obs[:, o * m:(o + n) * m].reshape(b, n, m)
        util = obs[:, (o + n) * m:(o + n) * m + m].reshape(b, 1, m)
        out = logits.reshape(b, n, m) + PRIOR_SCALE * (self.stay_raw * on + self.join_raw * util / self._slot)
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
