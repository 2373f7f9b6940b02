"""A trained RLlib agent as a deterministic placement policy: ``act(obs, info) -> action``.

``load_agent`` reads only the RL module from an algorithm checkpoint (no Ray cluster, no env runners), checks
that the checkpoint's observation and action spaces are the env's - a checkpoint trained for 16 users does not
fit an env of 32 users, and that is a one-line error naming both sizes instead of a matrix-shape traceback from
torch - and takes the most probable action of every component (argmax of the logits), so two runs on the same
observations act the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ConfigError

MODULE_PATH = ("learner_group", "learner", "rl_module", "default_policy")


def _space_size(space: gym.Space[Any]) -> str:
    if isinstance(space, gym.spaces.MultiDiscrete):
        return f"{len(space.nvec)} x {int(space.nvec.max())} choices"
    if isinstance(space, gym.spaces.Discrete):
        return f"{int(space.n)} choices"
    return f"{int(np.prod(space.shape or (0,)))} values"


class PlacementAgent:
    """Deterministic policy over an RLlib RL module (torch, inference only, one observation at a time)."""

    def __init__(self, module: Any, name: str = "rllib") -> None:
        self.module = module
        self.name = name
        self._dist_cls = module.get_inference_action_dist_cls()

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: the policy is deterministic and stateless."""

    def act(self, obs: Any, info: dict[str, Any] | None = None) -> NDArray[np.int64] | int:
        import torch
        from ray.rllib.core.columns import Columns

        x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1))
        with torch.no_grad():
            out = self.module.forward_inference({Columns.OBS: x})
            action = self._dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS]).to_deterministic().sample()
        a = np.asarray(action.numpy() if hasattr(action, "numpy") else action, dtype=np.int64).reshape(-1)
        return a if isinstance(self.module.action_space, gym.spaces.MultiDiscrete) else int(a[0])


def load_agent(checkpoint_path: Path | str, observation_space: gym.Space[Any], action_space: gym.Space[Any],
               name: str = "rllib") -> PlacementAgent:
    """The agent saved in ``checkpoint_path`` (an algorithm checkpoint folder) for an env with these spaces."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    root = Path(checkpoint_path)
    module_dir = root.joinpath(*MODULE_PATH)
    if not module_dir.is_dir():
        raise ConfigError(f"{root}: not an RLlib algorithm checkpoint (no {'/'.join(MODULE_PATH)})")
    module = RLModule.from_checkpoint(str(module_dir.resolve()))
    for what, theirs, ours in (("observation", module.observation_space, observation_space),
                               ("action", module.action_space, action_space)):
        same = (theirs.shape == ours.shape and type(theirs) is type(ours)
                and (not isinstance(ours, gym.spaces.MultiDiscrete) or np.array_equal(theirs.nvec, ours.nvec)))
        if not same:
            raise ConfigError(f"{root}: checkpoint {what} size {_space_size(theirs)} does not match the env's "
                              f"{_space_size(ours)} (trained for another env or number of users)")
    module.eval()
    return PlacementAgent(module, name=name)
