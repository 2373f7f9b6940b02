from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared data folder (real sample files); tests skip when it is not there."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared data folder not found at {SHARED_DATA.resolve()}")
    return SHARED_DATA.resolve()
