"""Gymnasium environments over the simulator. Importing this package registers them."""

from __future__ import annotations

import gymnasium as gym

from edgemigrate.envs.mobilekube import MobileKubeConfig, MobileKubeEnv
from edgemigrate.envs.ppcm import PPCMEnv

if "edgemigrate/PPCM-v0" not in gym.registry:
    gym.register(id="edgemigrate/PPCM-v0", entry_point="edgemigrate.envs.ppcm:PPCMEnv")
if "edgemigrate/MobileKube-v0" not in gym.registry:
    gym.register(id="edgemigrate/MobileKube-v0", entry_point="edgemigrate.envs.mobilekube:MobileKubeEnv")

__all__ = ["MobileKubeConfig", "MobileKubeEnv", "PPCMEnv"]
