"""The real-testbed handover experiment of Ngo et al. 2020, sec. V (figs. 4-6, table I).

A testbed with three base stations (``design.TESTBED``: edge-edge 100 Mbit/s 50 ms, edge-cloud 75 Mbit/s
150 ms, shaped BS -> server paths), one agent per server, the controller with one planner, and the virtual MU
walking past the base stations while it offloads to its service (the "Simple" counter or ``facedetect``).
``bed.py`` states each planner's handover rule; ``analysis.py`` how downtime is measured.

Results folder (``results/testbed-handover__<planners>__<seed>__<time>/``):

* ``config.json`` (the resolved :class:`~.design.HandoverConfig`), ``manifest.json`` (command, seed,
  versions, git SHA);
* ``runs/<service>__<planner>__<repeat>/``: ``requests.jsonl`` (every request the MU sent), ``events.json``
  (every migration with the agents' statistics and every handover the controller made, monotonic times),
  ``actions.json`` (the controller's actions), ``mu_summary.json`` (the MU's counter check, its own
  handovers), ``controller.log``, ``mu.log``;
* ``precopy_warmup.json``: per service the pre-copy model (``costs.handover.PrecopyModel``) fitted to one
  warm-up migration edge1 -> edge2 before the runs; the planners price migrations with it, refitted after
  every run with all migrations measured so far (null: the warm-up failed; eq. 5 until a run measured one);
* ``runs.csv``: one row per run; ``summary.csv``/``summary.json``/``summary.md``: per service and planner,
  mean +- 95 % CI, and whether each target holds; ``fig4_e2e_delay.png``, ``fig5_downtime.png``,
  ``frozen.png``, ``table1_bytes_per_phase.png``;
* ``migrations.jsonl``: one JSON object per migration, read by the calibration code. Keys:

  - ``service``, ``planner``, ``repeat``: which run;
  - ``pre_bytes``: checkpoint payload bytes of the pre-migration (every pre-copy round, taken while the
    service runs); ``final_bytes``: payload bytes of the migration phase (the final round, while frozen);
  - ``link_bps``, ``rtt_s``: the source -> destination link as shaped (bits per second, round trip);
  - ``frozen_s``: the engine's frozen window (freeze on the source to the destination's restore);
    ``restore_s``: the restore on the destination; ``total_s``: the whole migration, pre-copy included;
  - ``downtime_s``: what the user saw: the summed gaps in answered requests around this move (the migration
    with its handover), see ``analysis.py``;
  - ``handover_outage_s``: the radio outage of the handover that belongs to this move (0 if none);
  - extra keys: ``src``, ``dst``, ``n_rounds``, ``pre_wire_bytes``/``final_wire_bytes`` (after compression),
    ``longest_gap_s``, ``handover_overlap_s`` (outage inside the frozen window), ``handover_lead_s`` (freeze
    minus handover start), ``start_s`` (since the MU started), ``counter_ok`` (the counter continued
    across this move).
"""

from __future__ import annotations

from edgemigrate.experiments.handover.design import PLANNERS, SERVICES, HandoverConfig
from edgemigrate.experiments.handover.experiment import MIGRATION_KEYS, run_experiment

__all__ = ["MIGRATION_KEYS", "PLANNERS", "SERVICES", "HandoverConfig", "run_experiment"]
