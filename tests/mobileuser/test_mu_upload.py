"""The MU uploads a real image per facedetect request to the real service (a process on loopback) and logs
the server's processing time beside its E2E delay (Ngo et al. 2020, fig. 4's processing + transmission)."""

from __future__ import annotations

import io

import pytest

from edgemigrate.controller.store import BaseStation, Host, HostRole, Placement, User, open_store
from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.mobileuser import (
    BackAndForthPath,
    MobileUser,
    MuConfig,
    RadioModel,
    RequestRecord,
    StoreReporter,
    TcpLineTransport,
    default_sites,
)
from edgemigrate.mobileuser.__main__ import BUNDLED_IMAGE, load_image
from edgemigrate.mobileuser.log import parse_line, write_record
from edgemigrate.mobileuser.mu import MAX_BODY_BYTES, parse_proc_s, request_for
from tests.workloads.conftest import service


class StillLink:
    def serving(self) -> str:
        return "bs1"

    def handover(self, to_bs: str) -> None:
        raise AssertionError(f"a coordinated MU never hands itself over (to {to_bs})")


def test_proc_s_is_parsed_bounded() -> None:
    assert parse_proc_s(b"3 1 176,66,96,96 proc_s=0.140000") == pytest.approx(0.14)
    assert parse_proc_s(b"3 0") is None and parse_proc_s(b"42") is None
    for bad in (b"3 0 proc_s=-1", b"3 0 proc_s=nan", b"3 0 proc_s=1e9", b"3 0 proc_s=\xff"):
        with pytest.raises(DataFormatError, match="proc_s"):
            parse_proc_s(bad)


def test_request_and_image_bounds(tmp_path) -> None:
    img = load_image(BUNDLED_IMAGE)
    assert img is not None and img.startswith(b"\xff\xd8") and 10_000 < len(img) < 200_000
    assert request_for("facedetect", "mu1", img) == f"UPLOAD mu1 {len(img)}".encode()
    assert request_for("facedetect", "mu1") == b"DETECT mu1" and load_image("none") is None
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (MAX_BODY_BYTES + 1))
    for name, match in ((str(big), "expected 1.."), (str(tmp_path / "missing.jpg"), "missing.jpg")):
        with pytest.raises(ValidationError, match=match):
            load_image(name)
    path = BackAndForthPath(0.0, 0.0, 40.0, 0.0, 0.5)
    with pytest.raises(ValidationError, match="mu.body"):
        MuConfig("mu1", "faces", path, RadioModel(default_sites(3, 20.0)), body=b"x" * (MAX_BODY_BYTES + 1))


def test_mu_uploads_the_image_and_logs_processing_time() -> None:
    img = load_image(BUNDLED_IMAGE)
    assert img is not None
    with service("edgemigrate.workloads.facedetect", "--port", "0", "--resident-mb", "0") as (_, port), \
            open_store("sqlite://:memory:") as store:
        store.put_host(Host("edge1", HostRole.EDGE, "edge1:7443", 4.0, 2**33, 2**36))
        for site in default_sites(3, 20.0):
            store.put_base_station(BaseStation(site.name, site.x_m, site.y_m, 1e9, 8))
        store.put_user(User("mu1"))
        store.put_placement(Placement("mu1", "faces", "edge1", "bs1"))
        path = BackAndForthPath(0.0, 0.0, 40.0, 0.0, 0.5)
        cfg = MuConfig("mu1", "faces", path, RadioModel(default_sites(3, 20.0)), coordinated=True,
                       request=request_for("facedetect", "mu1", img), body=img, request_timeout_s=30.0,
                       report_every_s=0.0)
        records: list[RequestRecord] = []
        transport = TcpLineTransport("127.0.0.1")
        mu = MobileUser(cfg, reporter=StoreReporter.fixed(store, {"faces": ("127.0.0.1", port)}),
                        link=StillLink(), transport=transport, locate=lambda: "edge1", sink=records.append)
        for _ in range(3):
            mu.step()
        transport.close()
        assert [r.reply for r in records] == [1, 2, 3]
        for r in records:
            assert r.proc_s is not None and r.delay_s is not None and 0 < r.proc_s <= r.delay_s
        buf = io.StringIO()
        for r in records:
            write_record(buf, r)
        assert [parse_line(line) for line in buf.getvalue().splitlines()] == records
        delays = store.task_delays("mu1", limit=10)
        assert len(delays) == 2 and all(d.task_size_bytes == len(cfg.request) + 1 + len(img) for d in delays)
