"""Stateful services to migrate, their clients, and how to run them under runc.

* :mod:`.counter` - seed 002's "Simple" service (each request increments and returns a counter), with
  ``--resident-mb`` of mostly static memory: ``python -m edgemigrate.engine.services.counter --host IP --port P``.
* :mod:`.kvstore` - in-memory key-value store with a resident size and a dirty rate (pages rewritten per second).
* :mod:`.redis` - Debian's ``redis-server`` command line (no persistence, bound to the service IP), a seeded
  filler and key-by-key checksums.
* :mod:`.probe` - a client sending a request every 10 ms; largest reply gap = client-observed downtime,
  counter monotonicity = state intact.
* :mod:`.oci` - OCI bundles for ``runc run``/``checkpoint``/``restore`` inside a testbed host's namespace.
* :mod:`.lineserver`, :mod:`.memory` - the shared single-threaded TCP loop and resident memory block.
"""
