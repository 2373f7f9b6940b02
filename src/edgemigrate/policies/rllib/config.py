"""Hyperparameters of the Mobile-Kube agents (Ghafouri et al. 2022, Table II) as frozen dataclasses.

Table II lists, for every algorithm, a network of two 64-unit layers and:

* PG: train batch 1000, gamma 0.99, learning rate 3e-4;
* PPO: SGD minibatch 128, train batch 1000, learning rate 3e-4;
* IMPALA: train batch 1000, gamma 0.99, learning rate 3e-4.

Everything Table II does not list is RLlib's default of the algorithm, except where a field below says why it
differs (each such field cites what we measured). The field docs become the CLI's help.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from edgemigrate.core.errors import ValidationError


class Algo(StrEnum):
    PG = "pg"
    PPO = "ppo"
    IMPALA = "impala"


NEAR_INIT = 0.5
"""Default initial weight of the placement prior's nearness term (``packing.py``): the nearest node's logit is at
most 0.5 above the farthest one's, small against the stay prior (2.0) and a packing ``join`` (a trained 16-user
agent: 0.29 per container, ~2.3 between a node of 12 containers and one of 4), so the untrained policy still
packs; PPO moves it from there. With ``near_powered_only`` it can start higher (4 in docs/mobilekube.md)."""
MAX_NEAR_INIT = 50.0
"""Bound on the initial ``near`` weight: far above any weight learned so far (~10 after 300k steps); a larger
start would drown the MLP's logits."""


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes (Table II: two layers of 64)."""
    activation: str = "tanh"
    """Hidden activation. Table II prints "Linear"; two linear layers collapse into one linear map of the one-hot
    observation, so we use tanh (RLlib's default for fully connected nets); ``linear`` reproduces the table."""
    placement_prior: bool = False
    """PPO / IMPALA only: add the keep-placement prior, the learned preference for loaded nodes and the mask of
    full nodes to the MLP's logits (``policies/rllib/packing.py``). Not in the paper: without it no agent
    learned to pack (docs/mobilekube.md). Needs an env whose observation carries the node utilisation."""
    near_prior: bool = True
    """With ``placement_prior``: also the learned preference for nodes near the container's users (the
    ``near`` term of ``policies/rllib/packing.py``); false = the stay / join / mask prior alone (the ablation)."""
    near_init: float = NEAR_INIT
    """With ``near_prior``: the term's initial weight (:data:`NEAR_INIT`)."""
    near_powered_only: bool = False
    """With ``near_prior``: nearness among the nodes that already hold another container only, an empty node
    counting as the farthest (``packing.py``): the term then only reassigns containers between powered nodes."""

    def __post_init__(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValidationError(f"network.hidden: expected positive layer sizes, got {self.hidden}")
        if self.activation not in ("tanh", "relu", "linear", "swish", "elu"):
            raise ValidationError(f"network.activation: expected tanh|relu|linear|swish|elu, "
                                  f"got {self.activation!r}")
        if not (isinstance(self.near_init, int | float) and 0.0 <= self.near_init <= MAX_NEAR_INIT):
            raise ValidationError(f"network.near_init: expected a number in [0, {MAX_NEAR_INIT:g}], "
                                  f"got {self.near_init!r}")


@dataclass(frozen=True, slots=True)
class PGConfig:
    """Vanilla policy gradient (REINFORCE on whole episodes; RLlib >= 2.10 no longer ships PG)."""

    train_batch_size: int = 1000
    """Env steps per update (Table II)."""
    gamma: float = 0.99
    """Discount (Table II)."""
    lr: float = 3e-4
    """Adam learning rate (Table II)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)


@dataclass(frozen=True, slots=True)
class PPOConfig:
    train_batch_size: int = 1000
    """Env steps per update (Table II)."""
    minibatch_size: int = 128
    """SGD minibatch (Table II)."""
    lr: float = 3e-4
    """Adam learning rate (Table II)."""
    gamma: float = 0.99
    """Discount (not in Table II for PPO; the value the table gives PG and IMPALA)."""
    num_epochs: int = 30
    """SGD passes over each batch (not in Table II: RLlib's default)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)


@dataclass(frozen=True, slots=True)
class ImpalaConfig:
    train_batch_size: int = 1000
    """Env steps per learner update (Table II)."""
    gamma: float = 0.99
    """Discount (Table II)."""
    lr: float = 3e-4
    """Adam learning rate (Table II)."""
    rollout_fragment_length: int = 50
    """Env steps per runner fragment (RLlib's default); the batch is made of whole fragments."""
    num_epochs: int = 4
    """Passes over each batch. RLlib's default (1 pass, the whole batch as one minibatch) takes ONE gradient step
    per batch: at lr 3e-4 that is too few. Measured on CartPole-v1 (500-step batches, 60k env steps,
    ``benchmarks/bench_mobilekube_rllib.py``): the learner consumed every sampled step either way (no batch
    dropped), and the mean return was 82 with 1 step per batch vs 178 with 4 epochs of 100-step minibatches."""
    minibatch_size: int | None = 200
    """SGD minibatch within a batch (None = the whole batch): 4 epochs x 1000/200 = 20 gradient steps per batch,
    the ratio measured above. Must be a multiple of ``rollout_fragment_length``."""
    learner_queue_size: int = 3
    """Batches waiting for the learner thread (RLlib's default)."""
    vf_loss_coeff: float = 0.5
    entropy_coeff: float = 0.01
    grad_clip: float = 40.0
    network: NetworkConfig = field(default_factory=NetworkConfig)


AlgoConfig = PGConfig | PPOConfig | ImpalaConfig
DEFAULTS: dict[Algo, type[PGConfig] | type[PPOConfig] | type[ImpalaConfig]] = {
    Algo.PG: PGConfig, Algo.PPO: PPOConfig, Algo.IMPALA: ImpalaConfig}


def parse_algo(name: str) -> Algo:
    try:
        return Algo(name.lower())
    except ValueError:
        raise ValidationError(f"algo: expected one of {', '.join(a.value for a in Algo)}, got {name!r}") from None


def algo_config(algo: Algo, overrides: dict[str, Any] | None = None) -> AlgoConfig:
    """The Table II config of ``algo`` with ``overrides`` (field name -> value; unknown names are an error)."""
    base = DEFAULTS[algo]()
    if not overrides:
        return base
    names = {f.name for f in fields(base)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValidationError(f"{algo.value}: unknown hyperparameter(s) {', '.join(bad)}; "
                              f"expected some of {', '.join(sorted(names))}")
    net = overrides.get("network")
    if isinstance(net, dict):  # from the CLI: --set 'ppo.network={"placement_prior": true}'
        try:
            net = NetworkConfig(**{**as_dict_network(base.network), **net,
                                   "hidden": tuple(net.get("hidden", base.network.hidden))})
        except TypeError as exc:
            raise ValidationError(f"{algo.value}.network: {exc}") from None
        overrides = {**overrides, "network": net}
    return replace(base, **overrides)


def as_dict_network(net: NetworkConfig) -> dict[str, Any]:
    return {"hidden": list(net.hidden), "activation": net.activation, "placement_prior": net.placement_prior,
            "near_prior": net.near_prior, "near_init": net.near_init, "near_powered_only": net.near_powered_only}


def as_dict(cfg: AlgoConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = as_dict_network(v) if isinstance(v, NetworkConfig) else v
    return out
