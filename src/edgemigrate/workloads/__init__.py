"""Workloads: the stateful services that are migrated, and the clients that load and probe them.

They are not part of the migration data plane: each is an ordinary process, started by a host agent inside a
container as ``python -m edgemigrate.workloads.<module>`` (:meth:`edgemigrate.control.spec.ServiceSpec.argv`
derives the command line; the agent's OCI bundle, :func:`edgemigrate.control.spec.build_bundle`, bind-mounts
this source tree read-only and puts it on ``PYTHONPATH``), or by a test or benchmark directly. They import only
:mod:`edgemigrate.core`.

* :mod:`.counter` - the "Simple" service of Ngo et al. 2020 (each request increments and returns a counter),
  with ``--resident-mb`` of mostly static memory: ``python -m edgemigrate.workloads.counter --host IP --port P``.
* :mod:`.kvstore` - in-memory key-value store with a resident size and a dirty rate (pages rewritten per second).
* :mod:`.facedetect` - the compute-heavy stateful service standing in for the OpenFace/Yolo services of Ngo et al.
  2020: OpenCV Haar-cascade face detection (130-160 ms a request) on bundled or uploaded images, one counter
  per user, ``--resident-mb`` of model-sized memory.
* :mod:`.redis` - Debian's ``redis-server`` command line (no persistence, bound to the service IP), a seeded
  filler and key-by-key checksums.
* :mod:`.httpd` - the ``web`` service: Debian's lighttpd serving one seeded page (Zhang et al. 2019).
* :mod:`.probe` - a client sending a request every 10 ms; largest reply gap = client-observed downtime,
  counter monotonicity = state intact.
* :mod:`.loadgen` - ApacheBench load against the web service and its per-second throughput / QPS timeline.
* :mod:`.lineserver`, :mod:`.memory` - the shared single-threaded TCP loop and resident memory block.
"""
