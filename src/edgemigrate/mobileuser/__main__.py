"""Run a virtual mobile user on a testbed; start it inside the client's network namespace, e.g.
``tb.popen_in("client1", [python, "-m", "edgemigrate.mobileuser", "--testbed", "em", ...])``.

Reports and discovery go to the central store at ``--store`` (a :class:`~.reporter.StoreReporter`); the
request log is written as JSON lines to ``--log`` and a counter-continuity summary is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgemigrate.controller.store import open_store
from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.mobileuser.log import check_counter, read_log, write_record
from edgemigrate.mobileuser.mu import MobileUser, MuConfig
from edgemigrate.mobileuser.path import SPEED_SIMPLE_M_PER_S, BackAndForthPath
from edgemigrate.mobileuser.radio import DEFAULT_HYSTERESIS_DB, RadioModel, default_sites
from edgemigrate.mobileuser.reporter import StoreReporter, check_endpoint
from edgemigrate.mobileuser.testbed import TestbedRadio, service_locator
from edgemigrate.mobileuser.transport import TcpLineTransport
from edgemigrate.testbed import Testbed


def _endpoint(text: str) -> tuple[str, int]:
    ip, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
    try:
        return check_endpoint((ip, int(port)), "--endpoint")
    except EdgeMigrateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m edgemigrate.mobileuser", description=__doc__.split("\n")[0])
    ap.add_argument("--testbed", required=True)
    ap.add_argument("--host", required=True, help="the client host the MU runs on")
    ap.add_argument("--user", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--store", required=True, help="central store URL, e.g. sqlite:////tmp/em.db")
    ap.add_argument("--endpoint", required=True, type=_endpoint, help="the service's IP:PORT for discovery")
    ap.add_argument("--log", required=True, help="request log (JSON lines)")
    ap.add_argument("--duration-s", type=float, required=True)
    ap.add_argument("--speed-m-per-s", type=float, default=SPEED_SIMPLE_M_PER_S)
    ap.add_argument("--bs-spacing-m", type=float, default=60.0)
    ap.add_argument("--hysteresis-db", type=float, default=DEFAULT_HYSTERESIS_DB)
    ap.add_argument("--coordinated", action="store_true", help="handovers come from the controller's plan")
    ap.add_argument("--request-gap-s", type=float, default=0.0)
    ap.add_argument("--report-every-s", type=float, default=1.0)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        tb = Testbed.load(args.testbed)
        sites = default_sites(len(tb.base_stations()), args.bs_spacing_m)
        path = BackAndForthPath(sites[0].x_m, 0.0, sites[-1].x_m, 0.0, args.speed_m_per_s)
        cfg = MuConfig(args.user, args.service, path, RadioModel(sites, hysteresis_db=args.hysteresis_db),
                       coordinated=args.coordinated, report_every_s=args.report_every_s,
                       request_gap_s=args.request_gap_s)
        store = open_store(args.store)
        reporter = StoreReporter.fixed(store, {args.service: args.endpoint})
        with open(args.log, "a", encoding="utf-8") as fh:
            mu = MobileUser(cfg, reporter=reporter, link=TestbedRadio(args.testbed, args.host),
                            transport=TcpLineTransport(tb.mu_ip(args.host)),
                            locate=service_locator(args.testbed, args.endpoint[0]),
                            sink=lambda r: write_record(fh, r))
            sent = mu.run(args.duration_s)
        check = check_counter(read_log(args.log))
        print(json.dumps({"requests": sent, "answered": check.answered, "first": check.first, "last": check.last,
                          "handovers": [[h.at_s - mu.start_s, h.from_bs, h.to_bs] for h in mu.handovers],
                          "counter_ok": check.ok, "violations": list(check.violations)}), flush=True)
        store.close()
        return 0 if check.ok else 1
    except EdgeMigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
