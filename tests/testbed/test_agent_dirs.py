"""``testbed down`` removes what its agents left in their default folders (no root needed for this part)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemigrate.testbed import testbed as tbmod
from edgemigrate.testbed.paths import agent_image_dir, agent_state_dir


def test_down_removes_only_this_testbeds_agent_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tbmod, "AGENTS_ROOT", tmp_path / "agents")
    monkeypatch.setattr(tbmod, "IMAGES_ROOT", tmp_path / "images")
    monkeypatch.setattr("edgemigrate.testbed.paths.AGENTS_ROOT", tmp_path / "agents")
    monkeypatch.setattr("edgemigrate.testbed.paths.IMAGES_ROOT", tmp_path / "images")
    for tb in ("em", "other"):
        (agent_state_dir(tb, "edge2")).mkdir(parents=True)
        (agent_state_dir(tb, "edge2") / "services.json").write_text('{"kv": {}}')
        (agent_image_dir(tb, "edge2") / "incoming").mkdir(parents=True)
    removed = tbmod._remove_agent_dirs("em")
    assert not (tmp_path / "agents" / "em").exists() and not (tmp_path / "images" / "em").exists()
    assert (agent_state_dir("other", "edge2") / "services.json").exists()
    assert any("agent state" in r for r in removed)
