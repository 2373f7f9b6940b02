"""Gymnasium environments over the simulator. Importing this package registers them."""

from __future__ import annotations

import gymnasium as gym

from edgemigrate.envs.ppcm import PPCMEnv

if "edgemigrate/PPCM-v0" not in gym.registry:
    gym.register(id="edgemigrate/PPCM-v0", entry_point="edgemigrate.envs.ppcm:PPCMEnv")

__all__ = ["PPCMEnv"]
