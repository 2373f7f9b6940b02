"""Actor and critic networks for the PPCM contract observation (Liu et al. 2024, sec. V-C, fig. 2).

Layered like Stable-Baselines3 (feature extractor -> trunk -> head), each part chosen by name + kwargs:

* :class:`DCNActor` (``"dcn"``) - per-choice Deep & Cross Network. Sparse layer presence is embedded by a
  learned matrix ``E (L, d)`` as a bag of embeddings (``presence @ E``) for each node and for the task (plus the
  bag of the task's layers the node lacks, see :class:`ChoiceFeatures`); with the dense node and task features,
  layer-normalised, this forms ``x_0`` per choice. A cross network ``x_{l+1} = x_0 (x_l^T w_l) + b_l
  + x_l`` (Liu et al. 2024, eq. 20, as in DCN, their ref. [40]; the paper prints ``x_l x_l^T``, the DCN paper and
  we use ``x_0 x_l^T``)
  runs in parallel with a deep ReLU network ``h_{l+1} = f(W_l h_l + b_l)`` (eq. 21); their outputs are
  concatenated (the "combination layer") and a small head gives one logit per choice. Weights are shared across
  choices, so one actor serves any number of nodes.
* :class:`AttentionCritic` (``"attention"``) - tokens for every choice (dense features, layer bags as above)
  plus one task token, multi-head
  self-attention blocks (eq. 22, after Liu et al. 2024's ref. [41]); the value is read from the task token.
* :class:`MLPActor` (``"mlp"``), :class:`MLPCritic` (``"mlp"``) - plain dense networks over the flattened
  observation (fixed ``N``, ``L``), for ablations against the two above.

Every actor returns logits masked with ``-inf`` where ``action_mask == 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.registry import Registry

Obs = dict[str, Tensor]
OBS_KEYS = ("nodes", "node_layers", "task", "task_layers", "action_mask")


@dataclass(frozen=True, slots=True)
class ObsDims:
    """Sizes read from the observation space - never hard-coded. ``n_choices = N + 1`` (last = cloud)."""

    n_choices: int
    n_layers: int
    f_node: int
    f_task: int

    @classmethod
    def from_space(cls, space: spaces.Space[Any]) -> ObsDims:
        if not isinstance(space, spaces.Dict) or any(k not in space.spaces for k in OBS_KEYS):
            raise ValidationError(f"observation space must be a Dict with keys {OBS_KEYS}, got {space}")
        nodes, node_layers = space["nodes"].shape, space["node_layers"].shape
        task, task_layers, mask = space["task"].shape, space["task_layers"].shape, space["action_mask"].shape
        if (
            nodes is None
            or node_layers is None
            or task is None
            or task_layers is None
            or mask is None
            or len(nodes) != 2
            or node_layers[0] != nodes[0]
            or node_layers[1:] != task_layers
            or mask != (nodes[0],)
            or len(task) != 1
        ):
            raise ValidationError(
                f"inconsistent PPCM observation shapes: nodes {nodes}, node_layers {node_layers}, task {task}, "
                f"task_layers {task_layers}, action_mask {mask}"
            )
        return cls(n_choices=nodes[0], n_layers=node_layers[1], f_node=nodes[1], f_task=task[0])

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def masked(logits: Tensor, mask: Tensor) -> Tensor:
    """``logits`` with ``-inf`` where ``mask`` is false (the cloud column is always feasible by contract)."""
    return logits.masked_fill(~mask.bool(), float("-inf"))


def mlp(sizes: Sequence[int], *, out_act: bool = False) -> nn.Sequential:
    """Linear+ReLU stack ``sizes[0] -> ... -> sizes[-1]`` (eq. 21); ReLU after the last layer iff ``out_act``."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or out_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class LayerEmbedding(nn.Module):
    """Bag of layer embeddings: ``presence (..., L) @ E (L, d)`` - the sparse-feature embedding of DCN."""

    def __init__(self, n_layers: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_layers, dim) / n_layers**0.5)

    def forward(self, presence: Tensor) -> Tensor:
        return presence @ self.weight


def missing_layers(obs: Obs) -> Tensor:
    """``(B, M, L)`` 0/1: the task's layers a choice lacks - the sparse set behind ``z_n`` (Liu et al. 2024,
    eq. 15)."""
    return obs["task_layers"].unsqueeze(1) * (1.0 - obs["node_layers"])


class ChoiceFeatures(nn.Module):
    """Feature extractor: per choice ``x_0 = [node dense, is_cloud, E(node layers), E'(missing), task dense, E(task)]``.

    ``E(.)`` is the bag of layer embeddings. ``E'(missing)`` embeds the sparse set of the task's layers this choice
    lacks (``task_layers & ~node_layers``), with its own matrix ``E'``: the download a placement causes is linear in
    it (``z_n`` of Liu et al. 2024, eq. 15, in bytes is ``missing @ sizes``), whereas from the separate node and
    task bags it is a full-rank bilinear form that rank-1 cross layers learn slowly (measured on the toy env:
    without it PPO stayed near random for 8k steps when the dense ``z_n`` column was hidden). Output
    ``(B, M, out_dim)``; the ``is_cloud`` flag marks the last choice (index ``N``).
    """

    def __init__(self, dims: ObsDims, embed_dim: int, missing_embedding: bool = True) -> None:
        super().__init__()
        self.dims = dims
        self.embed = LayerEmbedding(dims.n_layers, embed_dim)
        self.embed_missing = LayerEmbedding(dims.n_layers, embed_dim) if missing_embedding else None
        n_bags = 2 if missing_embedding else 1
        self.out_dim = dims.f_node + 1 + n_bags * embed_dim + dims.f_task + embed_dim

    def forward(self, obs: Obs) -> Tensor:
        nodes = obs["nodes"]
        b, m, _ = nodes.shape
        is_cloud = torch.zeros(b, m, 1, dtype=nodes.dtype, device=nodes.device)
        is_cloud[:, -1] = 1.0
        parts = [nodes, is_cloud, self.embed(obs["node_layers"])]
        if self.embed_missing is not None:
            parts.append(self.embed_missing(missing_layers(obs)))
        task = torch.cat([obs["task"], self.embed(obs["task_layers"])], dim=-1)
        parts.append(task[:, None, :].expand(b, m, task.shape[-1]))
        return torch.cat(parts, dim=-1)


class CrossNetwork(nn.Module):
    """``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l`` for ``n_layers`` layers (Liu et al. 2024, eq. 20; DCN, their
    ref. [40])."""

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(n_layers, dim) / dim**0.5)
        self.b = nn.Parameter(torch.zeros(n_layers, dim))

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for layer in range(self.w.shape[0]):
            x = x0 * (x @ self.w[layer]).unsqueeze(-1) + self.b[layer] + x
        return x


class DCNActor(nn.Module):
    """Per-choice DCN scorer -> masked logits ``(B, M)``."""

    def __init__(
        self,
        dims: ObsDims,
        embed_dim: int = 16,
        cross_layers: int = 3,
        deep_hidden: Sequence[int] = (64, 64),
        head_hidden: int = 32,
        missing_embedding: bool = True,
    ) -> None:
        super().__init__()
        self.features = ChoiceFeatures(dims, embed_dim, missing_embedding)
        d = self.features.out_dim
        self.norm = nn.LayerNorm(d)
        self.cross = CrossNetwork(d, cross_layers)
        self.deep = mlp([d, *deep_hidden], out_act=True)
        combined = d + (deep_hidden[-1] if deep_hidden else d)
        self.head = mlp([combined, head_hidden, 1])
        last = cast(nn.Linear, self.head[-1])
        nn.init.orthogonal_(last.weight, gain=0.01)  # near-uniform initial policy (CleanRL)
        nn.init.zeros_(last.bias)

    def forward(self, obs: Obs) -> Tensor:
        x0 = self.norm(self.features(obs))
        z = torch.cat([self.cross(x0), self.deep(x0)], dim=-1)
        return masked(self.head(z).squeeze(-1), obs["action_mask"])


class MultiHeadSelfAttention(nn.Module):
    """``MultiHead(X) = Concat(head_1..head_h) W^O``, ``head_i = softmax(Q_i K_i^T / sqrt(d_k)) V_i`` (eq. 22).

    Written out over ``F.scaled_dot_product_attention`` with one fused QKV projection: on CPU in training mode
    this ran ~2x faster than ``nn.MultiheadAttention`` for our short token sequences.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, dim = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, T, d_k)
        return self.out(y.transpose(1, 2).reshape(b, t, dim))


class _AttentionBlock(nn.Module):
    """Post-norm transformer encoder block: multi-head self-attention (eq. 22) + feed-forward."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = mlp([dim, 2 * dim, dim])

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.ff(x))


class AttentionCritic(nn.Module):
    """Self-attention over ``[task token, choice tokens...]`` -> value from the task token, shape ``(B,)``."""

    def __init__(
        self, dims: ObsDims, embed_dim: int = 16, model_dim: int = 32, heads: int = 4, blocks: int = 1
    ):
        super().__init__()
        if model_dim % heads:
            raise ValidationError(f"AttentionCritic: model_dim {model_dim} not divisible by heads {heads}")
        self.embed = LayerEmbedding(dims.n_layers, embed_dim)
        self.embed_missing = LayerEmbedding(dims.n_layers, embed_dim)
        self.node_in = nn.Linear(dims.f_node + 2 + 2 * embed_dim, model_dim)  # + is_cloud, + feasible flags
        self.task_in = nn.Linear(dims.f_task + embed_dim, model_dim)
        self.blocks = nn.Sequential(*[_AttentionBlock(model_dim, heads) for _ in range(blocks)])
        self.out = mlp([model_dim, model_dim, 1])
        nn.init.orthogonal_(cast(nn.Linear, self.out[-1]).weight, gain=1.0)

    def forward(self, obs: Obs) -> Tensor:
        nodes = obs["nodes"]
        b, m, _ = nodes.shape
        is_cloud = torch.zeros(b, m, 1, dtype=nodes.dtype, device=nodes.device)
        is_cloud[:, -1] = 1.0
        feasible = obs["action_mask"].to(nodes.dtype).unsqueeze(-1)
        node_tok = self.node_in(
            torch.cat(
                [
                    nodes,
                    is_cloud,
                    feasible,
                    self.embed(obs["node_layers"]),
                    self.embed_missing(missing_layers(obs)),
                ],
                dim=-1,
            )
        )
        task_tok = self.task_in(torch.cat([obs["task"], self.embed(obs["task_layers"])], dim=-1))
        x = self.blocks(torch.cat([task_tok[:, None, :], node_tok], dim=1))
        return self.out(x[:, 0]).squeeze(-1)


def _flat(obs: Obs) -> Tensor:
    b = obs["nodes"].shape[0]
    parts = [obs["nodes"], obs["node_layers"], obs["task"], obs["task_layers"], obs["action_mask"]]
    return torch.cat([p.reshape(b, -1).to(obs["nodes"].dtype) for p in parts], dim=-1)


def _flat_dim(dims: ObsDims) -> int:
    m = dims.n_choices
    return m * dims.f_node + m * dims.n_layers + dims.f_task + dims.n_layers + m


class MLPActor(nn.Module):
    """Ablation actor: dense ReLU network over the flattened observation -> masked logits (fixed N, L)."""

    def __init__(self, dims: ObsDims, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = mlp([_flat_dim(dims), *hidden, dims.n_choices])
        nn.init.orthogonal_(cast(nn.Linear, self.net[-1]).weight, gain=0.01)

    def forward(self, obs: Obs) -> Tensor:
        return masked(self.net(_flat(obs)), obs["action_mask"])


class MLPCritic(nn.Module):
    """Ablation critic: dense ReLU network over the flattened observation -> value ``(B,)``."""

    def __init__(self, dims: ObsDims, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = mlp([_flat_dim(dims), *hidden, 1])

    def forward(self, obs: Obs) -> Tensor:
        return self.net(_flat(obs)).squeeze(-1)


ACTORS: Registry[type[nn.Module]] = Registry("actor network")
ACTORS.add("dcn", DCNActor)
ACTORS.add("mlp", MLPActor)
CRITICS: Registry[type[nn.Module]] = Registry("critic network")
CRITICS.add("attention", AttentionCritic)
CRITICS.add("mlp", MLPCritic)


def build(registry: Registry[type[nn.Module]], name: str, dims: ObsDims, kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate ``registry[name](dims, **kwargs)``; a bad kwarg is a user error naming the key."""
    cls = registry.get(name)
    try:
        return cls(dims, **kwargs)
    except TypeError as exc:
        raise ValidationError(
            f"{registry.kind} '{name}': bad keyword arguments {sorted(kwargs)}: {exc}"
        ) from None
