"""Several writers on one store (both back ends): a change that lost a race fails, it never overwrites.

Each writer is a separate :class:`Store`, i.e. a separate database connection, as two controller
processes would be. Threads meet at a barrier so the calls overlap; the assertions hold for every
interleaving (exactly one winner), so nothing here depends on timing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import pytest

from edgemigrate.controller.store import (
    SCHEMA_VERSION,
    Action,
    ActionKind,
    ActionState,
    ConflictError,
    Placement,
    Store,
    open_store,
)
from tests.controller.helpers import seed

S = ActionState
WRITERS = 4


def _race(stores: list[Store], call: Callable[[int, Store], object]) -> list[object]:
    """Run ``call(i, store_i)`` in one thread per store, all released together; results or exceptions."""
    barrier = threading.Barrier(len(stores))
    results: list[object] = [None] * len(stores)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i, stores[i])
        except Exception as exc:  # collected and asserted on by the test
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return results


def _open_many(url: str, n: int) -> list[Store]:
    return [open_store(url) for _ in range(n)]


def _migration(aid: str) -> Action:
    return Action(aid, ActionKind.MIGRATION_HANDOVER, "u1", "svc", "e1", "e2", "b1", "b2")


def test_a_stale_writer_gets_a_conflict_not_an_overwrite(store_url: str) -> None:
    with open_store(store_url) as a, open_store(store_url) as b:
        seed(a)
        a.plan_action(_migration("act-1"))
        a.transition("act-1", S.PLANNED, S.RUNNING)
        assert b.action("act-1").state is S.RUNNING  # both controllers saw RUNNING
        a.transition("act-1", S.RUNNING, S.DONE, detail="restored at e2")
        with pytest.raises(ConflictError, match="act-1: expected RUNNING but it is DONE"):
            b.transition("act-1", S.RUNNING, S.ROLLED_BACK, detail="timed out")
        final = b.action("act-1")
        assert (final.state, final.detail) == (S.DONE, "restored at e2")
        assert b.placement("u1", "svc") == Placement("u1", "svc", "e2", "b2")


@pytest.mark.parametrize("rounds", [3])
def test_concurrent_transitions_have_exactly_one_winner(store_url: str, rounds: int) -> None:
    targets = [S.DONE, S.FAILED, S.ROLLED_BACK, S.FAILED]
    stores = _open_many(store_url, WRITERS)
    try:
        seed(stores[0])
        for r in range(rounds):
            aid = f"act-{r}"
            stores[0].plan_action(_migration(aid))
            stores[0].transition(aid, S.PLANNED, S.RUNNING)
            results = _race(stores, lambda i, s, aid=aid: s.transition(aid, S.RUNNING, targets[i], detail=f"w{i}"))
            winners = [i for i, res in enumerate(results) if isinstance(res, Action)]
            assert len(winners) == 1, results
            assert all(isinstance(res, ConflictError) for i, res in enumerate(results) if i != winners[0]), results
            final = stores[1].action(aid)
            assert (final.state, final.detail) == (targets[winners[0]], f"w{winners[0]}")
            expected_host = "e2" if final.state is S.DONE else "e1"
            assert stores[2].placement("u1", "svc").host == expected_host
            if final.state is S.DONE:  # put the service back for the next round
                stores[0].put_placement(Placement("u1", "svc", "e1", "b1"))
    finally:
        for s in stores:
            s.close()


def test_concurrent_plans_for_one_service_have_exactly_one_winner(store_url: str) -> None:
    stores = _open_many(store_url, WRITERS)
    try:
        seed(stores[0])
        results = _race(stores, lambda i, s: s.plan_action(_migration(f"plan-{i}")))
        winners = [res for res in results if isinstance(res, Action)]
        assert len(winners) == 1, results
        assert all(isinstance(res, ConflictError) for res in results if not isinstance(res, Action)), results
        assert stores[3].in_flight() == [winners[0]]
    finally:
        for s in stores:
            s.close()


def test_a_transition_waiting_on_an_uncommitted_writer_loses(store_url: str) -> None:
    """Another connection holds the action row (PostgreSQL: row lock; SQLite: the write lock) and
    finishes the action; our transition, whether it waits for that commit or starts after it, fails."""
    with open_store(store_url) as s:
        seed(s)
        s.plan_action(_migration("act-1"))
        s.transition("act-1", S.PLANNED, S.RUNNING)
        commit = _hold_and_finish(store_url, "act-1")
        outcome: list[object] = []
        t = threading.Thread(target=lambda: outcome.append(_try(lambda: s.transition("act-1", S.RUNNING, S.FAILED))))
        t.start()
        commit()
        t.join(timeout=120)
        assert not t.is_alive()
        assert isinstance(outcome[0], ConflictError), outcome
        assert s.action("act-1").state is S.DONE


def _try(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except Exception as exc:
        return exc


def _hold_and_finish(url: str, aid: str) -> Callable[[], None]:
    """Open a transaction elsewhere that locks action ``aid`` and sets it DONE; return its commit."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE actions SET state = 'done' WHERE id = ?", (aid,))
    else:
        import psycopg

        conn = psycopg.connect(url)  # not autocommit: the transaction stays open until commit()
        conn.execute("SELECT id FROM actions WHERE id = %s FOR UPDATE", (aid,))
        conn.execute("UPDATE actions SET state = 'done' WHERE id = %s", (aid,))

    def commit() -> None:
        conn.commit() if not isinstance(conn, sqlite3.Connection) else conn.execute("COMMIT")
        conn.close()

    return commit


def test_stores_opened_at_once_on_a_new_database_agree_on_one_schema(store_url: str) -> None:
    barrier = threading.Barrier(WRITERS)
    results: list[object] = [None] * WRITERS

    def worker(i: int) -> None:
        barrier.wait()
        try:
            with open_store(store_url) as s:
                results[i] = s.schema_version()
        except Exception as exc:  # asserted on below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [SCHEMA_VERSION] * WRITERS
