"""The PPCM learning agent (Liu et al. 2024, sec. V): DCN actor, attention critic, PPO with expert demonstrations.

Torch is imported only inside this package. Entry points: :func:`~edgemigrate.policies.rl.ppo.train`,
:class:`~edgemigrate.policies.rl.agent.PPCMPolicy` (``PPCMPolicy.load(checkpoint_dir)``),
:func:`~edgemigrate.policies.rl.evaluate.evaluate`, and the contract toy env
:class:`~edgemigrate.policies.rl.toyenv.LayerOverlapEnv`.
"""

from __future__ import annotations

from edgemigrate.policies.rl.agent import ActorCritic, PPCMPolicy
from edgemigrate.policies.rl.evaluate import EvalResult, evaluate
from edgemigrate.policies.rl.networks import ACTORS, CRITICS, ObsDims
from edgemigrate.policies.rl.ppo import PPOConfig, TrainResult, train

__all__ = [
    "ACTORS",
    "CRITICS",
    "ActorCritic",
    "EvalResult",
    "ObsDims",
    "PPCMPolicy",
    "PPOConfig",
    "TrainResult",
    "evaluate",
    "train",
]
