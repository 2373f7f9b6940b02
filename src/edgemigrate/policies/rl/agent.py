"""Actor-critic module, masked categorical, and the trained agent as a project ``Policy`` with checkpoints.

Checkpoint = a directory with ``model.pt`` (``torch.save`` of the ``state_dict`` only, loaded with
``weights_only=True`` so a checkpoint cannot execute code) and ``config.json`` (format tag, observation dims,
network names + kwargs, the training config, versions). :meth:`PPCMPolicy.load` rebuilds the networks from the
JSON and acts greedily (arg-max of the masked logits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.policies.rl.networks import ACTORS, CRITICS, OBS_KEYS, Obs, ObsDims, build

CHECKPOINT_FORMAT = "edgemigrate.ppcm-checkpoint/1"


def obs_to_torch(obs: Mapping[str, Any], device: torch.device | str = "cpu") -> Obs:
    """Contract observation (single or batched NumPy) -> float32 tensors with a batch dim; mask -> bool."""
    out: Obs = {}
    for key in OBS_KEYS:
        if key not in obs:
            raise ValidationError(f"observation lacks key '{key}' (contract keys: {', '.join(OBS_KEYS)})")
        arr = np.asarray(obs[key])
        t = torch.as_tensor(arr, device=device)
        out[key] = t.bool() if key == "action_mask" else t.float()
    if out["nodes"].dim() == 2:
        out = {k: v.unsqueeze(0) for k, v in out.items()}
    if not bool(out["action_mask"].any(dim=-1).all()):
        raise ValidationError(
            "action_mask has a row with no feasible choice (the cloud must always be feasible)"
        )
    return out


def index_obs(obs: Obs, idx: Tensor | NDArray[np.int64]) -> Obs:
    """Rows ``idx`` of every tensor of a batched observation."""
    return {k: v[idx] for k, v in obs.items()}


def masked_entropy(logits: Tensor) -> Tensor:
    """Entropy of a categorical whose masked logits are ``-inf`` (``0 * -inf`` terms count as 0)."""
    logp = torch.log_softmax(logits, dim=-1)
    # zero the -inf entries *before* multiplying: where(mask, p * logp, 0) would back-propagate 0 * inf = NaN
    safe = torch.where(torch.isfinite(logp), logp, torch.zeros_like(logp))
    return -(safe.exp() * safe).sum(-1)  # masked entries: exp(0) * 0 = 0


class ActorCritic(nn.Module):
    """An actor (masked logits) and a critic (value), chosen by registry name + kwargs."""

    def __init__(
        self,
        dims: ObsDims,
        actor: str = "dcn",
        critic: str = "attention",
        actor_kwargs: dict[str, Any] | None = None,
        critic_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.dims = dims
        self.spec: dict[str, Any] = {
            "dims": dims.to_dict(),
            "actor": actor,
            "critic": critic,
            "actor_kwargs": dict(actor_kwargs or {}),
            "critic_kwargs": dict(critic_kwargs or {}),
        }
        self.actor = build(ACTORS, actor, dims, self.spec["actor_kwargs"])
        self.critic = build(CRITICS, critic, dims, self.spec["critic_kwargs"])

    def logits(self, obs: Obs) -> Tensor:
        return self.actor(obs)

    def value(self, obs: Obs) -> Tensor:
        return self.critic(obs)

    def act_value(self, obs: Obs, action: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """CleanRL's ``get_action_and_value``: sample (or score) actions from the masked categorical."""
        logits = self.actor(obs)
        logp_all = torch.log_softmax(logits, dim=-1)
        if action is None:
            action = torch.multinomial(logp_all.exp(), 1).squeeze(-1)
        logp = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        return action, logp, masked_entropy(logits), self.critic(obs)


class PPCMPolicy:
    """A trained actor as a project ``Policy``: ``reset(seed)``, ``act(obs, info) -> int``, ``name``.

    Greedy by default (arg-max of masked logits, so never an infeasible choice); ``sample=True`` draws from the
    masked distribution with a generator seeded by :meth:`reset`. ``threads`` sets torch's (process-wide)
    intra-op threads: one step of these small networks took 1.2 ms with 1 thread and 19 ms with 2 on a busy
    2-core machine; ``None`` leaves torch's setting alone.
    """

    def __init__(
        self,
        model: ActorCritic,
        name: str = "ppcm",
        *,
        sample: bool = False,
        meta: dict[str, Any] | None = None,
        threads: int | None = 1,
    ):
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.name = name
        self.sample = sample
        self.meta: dict[str, Any] = dict(meta or {})
        self._gen = torch.Generator().manual_seed(0)

    def reset(self, seed: int | None = None) -> None:
        self._gen = torch.Generator().manual_seed(0 if seed is None else int(seed))

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], info: Mapping[str, Any] | None = None) -> int:
        logits = self.model.logits(obs_to_torch(obs))[0]
        if self.sample:
            return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=self._gen).item())
        return int(torch.argmax(logits).item())

    @torch.no_grad()
    def act_batch(self, obs: Mapping[str, Any]) -> NDArray[np.int64]:
        """Greedy actions for a batched (vector-env) observation."""
        return torch.argmax(self.model.logits(obs_to_torch(obs)), dim=-1).numpy().astype(np.int64)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path) -> Path:
        """Write ``path/model.pt`` and ``path/config.json``; returns ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), path / "model.pt")
        from edgemigrate import __version__

        config = {
            "format": CHECKPOINT_FORMAT,
            "name": self.name,
            **self.model.spec,
            "meta": self.meta,
            "versions": {"edgemigrate": __version__, "torch": torch.__version__},
        }
        (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=_json_default))
        return path

    @classmethod
    def load(cls, path: str | Path, *, sample: bool = False, threads: int | None = 1) -> PPCMPolicy:
        """Rebuild from a checkpoint directory (or its ``config.json``/``model.pt``)."""
        path = Path(path)
        if path.is_file():
            path = path.parent
        cfg_path, weights = path / "config.json", path / "model.pt"
        for p in (cfg_path, weights):
            if not p.is_file():
                raise DataFormatError(p, None, "checkpoint file missing (expected config.json and model.pt)")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(cfg_path, exc.lineno, f"invalid JSON: {exc.msg}") from None
        if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
            raise DataFormatError(
                cfg_path, None, f"not an edgemigrate PPCM checkpoint (format != {CHECKPOINT_FORMAT})"
            )
        try:
            dims = ObsDims(**config["dims"])
            model = ActorCritic(
                dims, config["actor"], config["critic"], config["actor_kwargs"], config["critic_kwargs"]
            )
        except (KeyError, TypeError) as exc:
            raise DataFormatError(cfg_path, None, f"bad checkpoint config: {exc}") from None
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, OSError, EOFError) as exc:
            raise DataFormatError(
                weights, None, f"weights do not match the config: {str(exc).splitlines()[0]}"
            ) from None
        meta = config.get("meta", {})
        return cls(model, name=str(config.get("name", "ppcm")), sample=sample, meta=meta, threads=threads)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple | set):
        return list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
