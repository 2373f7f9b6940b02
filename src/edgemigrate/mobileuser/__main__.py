"""Run a virtual mobile user on a testbed; start it inside the client's network namespace, e.g.
``tb.popen_in("client1", [python, "-m", "edgemigrate.mobileuser", "--testbed", "em", ...])``.

Reports and discovery go to the controller's mTLS API with ``--controller IP:PORT --mu-pki DIR`` (a
:class:`~.reporter.ControllerReporter`, certificate ``mu-<user>``), or straight into the central store with
``--store URL --endpoint IP:PORT`` (a :class:`~.reporter.StoreReporter`, for tests). The request log is
written as JSON lines to ``--log`` and a counter-continuity summary is printed at the end (one JSON line;
``start_s`` and the handovers' ``at_s`` are on the system's monotonic clock, like the log's times).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from edgemigrate.controller.store import open_store
from edgemigrate.core.errors import EdgeMigrateError, ValidationError
from edgemigrate.mobileuser.log import check_counter, read_log, write_record
from edgemigrate.mobileuser.mu import MAX_BODY_BYTES, MobileUser, MuConfig, request_for
from edgemigrate.mobileuser.path import SPEED_SIMPLE_M_PER_S, BackAndForthPath
from edgemigrate.mobileuser.radio import (
    DEFAULT_HYSTERESIS_DB,
    DEFAULT_MIN_RSSI_DBM,
    RadioModel,
    default_sites,
)
from edgemigrate.mobileuser.reporter import ControllerReporter, Reporter, StoreReporter, check_endpoint
from edgemigrate.mobileuser.testbed import TestbedAirLink, TestbedRadio, service_locator
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


BUNDLED_IMAGE = "astronaut.jpg"  # data/faces/: 512 x 512, 53 KB, one face (workloads/facedetect.py)


def load_image(name: str) -> bytes | None:
    """The bytes to upload: the bundled image by its name, a file, or None for ``none``; bounded before read."""
    if name == "none":
        return None
    if name == BUNDLED_IMAGE:
        return resources.files("edgemigrate").joinpath("data", "faces", BUNDLED_IMAGE).read_bytes()
    p = Path(name)
    try:
        size = p.stat().st_size
        if not 0 < size <= MAX_BODY_BYTES:
            raise ValidationError(f"--image {p}: {size} bytes, expected 1..{MAX_BODY_BYTES}")
        return p.read_bytes()
    except OSError as exc:
        raise ValidationError(f"--image {p}: {exc.strerror}") from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m edgemigrate.mobileuser", description=__doc__.split("\n")[0])
    ap.add_argument("--testbed", required=True)
    ap.add_argument("--host", required=True, help="the client host the MU runs on")
    ap.add_argument("--user", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--controller", type=_endpoint, help="the controller's API, IP:PORT (with --mu-pki)")
    ap.add_argument("--mu-pki", help="folder with this user's mu-<user> certificate (controller.api.issue_mu_cert)")
    ap.add_argument("--store", help="central store URL, e.g. sqlite:////tmp/em.db (with --endpoint; tests)")
    ap.add_argument("--endpoint", type=_endpoint, help="the service's IP:PORT for discovery (with --store)")
    ap.add_argument("--kind", choices=("counter", "facedetect"), default="counter",
                    help="the service's request: INC (counter) or UPLOAD <user> <n> + an image (facedetect)")
    ap.add_argument("--image", default=BUNDLED_IMAGE,
                    help="facedetect: the PNG/JPEG uploaded with every request (the same all run; default: the "
                         f"bundled {BUNDLED_IMAGE}); 'none': DETECT on the service's own copy, nothing uploaded")
    ap.add_argument("--log", required=True, help="request log (JSON lines)")
    ap.add_argument("--duration-s", type=float, required=True)
    ap.add_argument("--speed-m-per-s", type=float, default=SPEED_SIMPLE_M_PER_S)
    ap.add_argument("--bs-spacing-m", type=float, default=60.0)
    ap.add_argument("--hysteresis-db", type=float, default=DEFAULT_HYSTERESIS_DB)
    ap.add_argument("--min-rssi-dbm", type=float, default=DEFAULT_MIN_RSSI_DBM,
                    help="receiver minimum: below it the serving BS is lost (a cell's edge)")
    ap.add_argument("--coordinated", action="store_true", help="handovers come from the controller's plan")
    ap.add_argument("--request-gap-s", type=float, default=0.0)
    ap.add_argument("--request-timeout-s", type=float, default=2.0,
                    help="give up on a reply after this long, reconnect and rediscover")
    ap.add_argument("--report-every-s", type=float, default=1.0)
    ap.add_argument("--no-air-rate", action="store_true",
                    help="leave the radio links' rate alone (default: B(RSSI) of eq. 4 at every report)")
    return ap


def _reporter(args: argparse.Namespace) -> tuple[Reporter, object]:
    """The reporter the options ask for, and what to close after the run."""
    if args.controller is not None:
        if args.mu_pki is None or args.store is not None:
            raise ValidationError("--controller needs --mu-pki (and no --store)")
        rep = ControllerReporter(args.controller[0], args.controller[1], args.mu_pki, args.user)
        return rep, rep
    if args.store is None or args.endpoint is None:
        raise ValidationError("give --controller IP:PORT --mu-pki DIR, or --store URL --endpoint IP:PORT")
    store = open_store(args.store)
    return StoreReporter.fixed(store, {args.service: args.endpoint}), store


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        image = load_image(args.image) if args.kind == "facedetect" else None
        tb = Testbed.load(args.testbed)
        sites = default_sites(len(tb.base_stations()), args.bs_spacing_m)
        path = BackAndForthPath(sites[0].x_m, 0.0, sites[-1].x_m, 0.0, args.speed_m_per_s)
        cfg = MuConfig(args.user, args.service, path, RadioModel(sites, hysteresis_db=args.hysteresis_db,
                                                               min_rssi_dbm=args.min_rssi_dbm),
                       coordinated=args.coordinated, report_every_s=args.report_every_s,
                       request_gap_s=args.request_gap_s, request_timeout_s=args.request_timeout_s,
                       request=request_for(args.kind, args.user, image), body=image or b"")
        reporter, closer = _reporter(args)
        radio = TestbedRadio(args.testbed, args.host)
        air = None if args.no_air_rate else TestbedAirLink(args.testbed, args.host)

        def locate() -> str | None:  # the host holding the address the MU last discovered
            return service_locator(args.testbed, mu.endpoint[0])() if mu.endpoint is not None else None

        try:
            with open(args.log, "a", encoding="utf-8") as fh:
                mu = MobileUser(cfg, reporter=reporter, link=radio, transport=TcpLineTransport(tb.mu_ip(args.host)),
                                locate=locate, sink=lambda r: write_record(fh, r),
                                air=None if air is None else air.update)
                sent = mu.run(args.duration_s)
            radio.wait()
        finally:
            closer.close()  # type: ignore[attr-defined]
        check = check_counter(read_log(args.log))
        print(json.dumps({"requests": sent, "answered": check.answered, "first": check.first, "last": check.last,
                          "start_s": mu.start_s,
                          "handovers": [[h.at_s - mu.start_s, h.from_bs, h.to_bs] for h in mu.handovers],
                          "handovers_at_s": [h.at_s for h in mu.handovers], "radio_errors": radio.errors,
                          "report_errors": mu.report_errors, "discover_errors": mu.discover_errors,
                          "air_rates": [] if air is None else air.changes,
                          "air_errors": [] if air is None else air.errors,
                          "counter_ok": check.ok, "violations": list(check.violations)}), flush=True)
        return 0 if check.ok else 1
    except EdgeMigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
