"""Where the agents of a testbed keep their state by default, so that tearing the testbed down can remove it.

Both folders carry the testbed's name: two testbeds with an ``edge1`` each never share an agent's journal,
and ``testbed down`` removes exactly what that testbed's agents left (containers, journals, images).
"""

from __future__ import annotations

import os
from pathlib import Path

AGENTS_ROOT = Path(os.environ.get("EDGEMIGRATE_AGENTS_DIR", "/run/edgemigrate/agents"))
IMAGES_ROOT = Path(os.environ.get("EDGEMIGRATE_IMAGES_DIR", "/dev/shm/edgemigrate"))


def agent_state_dir(testbed: str, host: str) -> Path:
    return AGENTS_ROOT / testbed / host


def agent_image_dir(testbed: str, host: str) -> Path:
    return IMAGES_ROOT / testbed / host
