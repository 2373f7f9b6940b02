"""``experiment mobilekube apply --backend testbed``: the same agent on real containers (root, CRIU; CI runs it).

Every move of the latency-greedy episode is carried out twice on stateful counters: live pre-copy migration
(ours) and Mobile-Kube's recreate (start new, wait healthy, stop old; Ghafouri et al. 2022, sec. VI). The
counter is checked after every move: live keeps it (the replies continue at +1, the value after the move is
the last one the client saw), recreate loses it (reported, as the seed's services are stateless). How long the
client waited is measured and reported, not bounded here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemigrate.cluster import real_engine_skip_reason
from edgemigrate.experiments.mobilekube.apply import ApplyConfig, json_lines, run_apply

pytestmark = [pytest.mark.criu, pytest.mark.netns]


def test_live_migration_keeps_every_counter_and_recreate_loses_it_on_the_same_moves(tmp_path: Path) -> None:
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    cfg = ApplyConfig("testbed", agent="latency-greedy", steps=3, n_nodes=3, n_users=3, n_services=3, seed=0)
    res = run_apply(cfg, tmp_path)
    live = [m for m in res.moves if m.strategy == "live"]
    recreate = [m for m in res.moves if m.strategy == "recreate"]
    assert live, "the episode must move something for the test to mean anything"
    assert [(m.step, m.service, m.source, m.dest) for m in live] == \
        [(m.step, m.service, m.source, m.dest) for m in recreate]
    for m in live:
        assert m.state == "done" and m.state_kept, m
        assert m.counter_after > m.counter_before, m  # the client's requests counted on through the move
    for m in recreate:
        assert m.state == "done" and m.state_kept is False, m
    assert all(s.on_plan for s in res.steps), res.steps
    assert (res.out_dir / "plots" / "interruption.png").is_file()
    for line in json_lines(res):
        print(line)
