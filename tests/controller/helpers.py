"""Shared set-up for the store tests: a small edge (two edge hosts, a cloud, two base stations)."""

from __future__ import annotations

import sqlite3

from edgemigrate.controller.store import (
    BaseStation,
    Host,
    HostRole,
    Placement,
    Store,
    User,
)

GIB = 1 << 30


def seed(store: Store, users: tuple[str, ...] = ("u1",)) -> None:
    """Hosts e1, e2, cloud; stations b1, b2; each user's service ``svc`` on e1 via b1."""
    store.put_host(Host("e1", HostRole.EDGE, "10.0.0.1:7070", 4.0, 16 * GIB, 200 * GIB, cpu_events_per_s=2400.5))
    store.put_host(Host("e2", HostRole.EDGE, "10.0.0.2:7070", 4.0, 16 * GIB, 200 * GIB))
    store.put_host(Host("cloud", HostRole.CLOUD, "cloud.example:7070", 12.0, 128 * GIB, 4000 * GIB))
    store.put_base_station(BaseStation("b1", 0.0, 0.0, 1e9, 8))
    store.put_base_station(BaseStation("b2", 150.0, 0.0, 1e9, 8))
    for user in users:
        store.put_user(User(user, sla_delay_s=0.25))
        store.put_placement(Placement(user, "svc", "e1", "b1"))


def raw_execute(url: str, sql: str) -> None:
    """Run ``sql`` on the store's database behind the store's back (to fake another version's data)."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        try:
            conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)
