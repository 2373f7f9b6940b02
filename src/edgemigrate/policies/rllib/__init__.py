"""The Mobile-Kube agents (Ghafouri et al. 2022): PG, PPO and IMPALA trained with Ray RLlib's new API stack.

``config`` holds Table II's hyperparameters, ``pg`` the vanilla policy gradient RLlib no longer ships,
``trainer`` the training loop (any env creator; local Ray or ``--ray ADDRESS``), ``agent`` the deterministic
policy loaded from a checkpoint, ``packing`` the placement-prior module that lets PPO / IMPALA learn to pack,
``toyenv`` a seconds-to-train env with MobileKube-v0's contract for tests.
Importing this package does not import Ray; the modules that need it import it inside their functions.
"""

from __future__ import annotations

from edgemigrate.policies.rllib.config import (
    Algo,
    ImpalaConfig,
    NetworkConfig,
    PGConfig,
    PPOConfig,
    algo_config,
)

__all__ = ["Algo", "ImpalaConfig", "NetworkConfig", "PGConfig", "PPOConfig", "algo_config"]
