#!/usr/bin/env python3
"""Measure the testbed's links for real and print one JSON line per configuration (needs root).

    sudo .venv/bin/python scripts/bench_testbed.py [--seconds 4] [--out benchmarks/testbed.jsonl]

For each configuration it sets the edge1-edge2 link, measures RTT with ping and TCP goodput with
``edgemigrate.testbed.netperf`` (bbr, receiver-side rate from first byte to EOF), and reports them next to the
configured values; ``rate_mbit = 0`` rows measure the user-space emulator's own ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

from edgemigrate.testbed import Testbed, TestbedConfig

CONFIGS = [  # (rate_mbit, rtt_ms, loss)
    (0, 0, 0.0), (0, 50, 0.0), (1000, 5, 0.0), (1000, 50, 0.0), (1000, 150, 0.0), (100, 50, 0.0), (75, 150, 0.0),
    (10, 50, 0.0), (100, 50, 0.01),
]


def measure(tb: Testbed, seconds: float) -> tuple[float, float]:
    out = tb.exec_in("edge1", ["ping", "-n", "-q", "-c", "5", "-i", "0.05", tb.host_ip("edge2")]).stdout.decode()
    m = re.search(r"= ([\d.]+)/([\d.]+)/", out)
    rtt = float(m.group(2)) if m else float("nan")
    sink = tb.popen_in("edge2", [sys.executable, "-m", "edgemigrate.testbed.netperf", "sink", "--port", "5999"],
                       stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    sink.stdout.readline()
    tb.exec_in("edge1", [sys.executable, "-m", "edgemigrate.testbed.netperf", "source", "--host",
                         tb.host_ip("edge2"), "--port", "5999", "--seconds", str(seconds)], check=True)
    res = json.loads(sink.communicate(timeout=120)[0].strip().splitlines()[-1])
    return rtt, res["rate_bps"] / 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--mtu-bytes", type=int, default=9000)
    ap.add_argument("--out", help="append JSON lines here too")
    args = ap.parse_args()
    cfg = TestbedConfig(edges=2, clouds=0, clients=0, subnet="10.75.0.0/16", mgmt_link=False,
                        mtu_bytes=args.mtu_bytes)
    tb = Testbed.up(cfg, name=f"bench{os.getpid() % 10000}")
    try:
        for rate, rtt, loss in CONFIGS:
            tb.set_link("edge1", "edge2", rate_mbit=rate, rtt_ms=rtt, loss=loss)
            time.sleep(0.2)
            rtt_meas, goodput = measure(tb, args.seconds)
            line = json.dumps({"bench": "testbed_link", "emulator": tb.emulator.value, "mtu_bytes": args.mtu_bytes,
                               "rate_mbit": rate, "rtt_ms": rtt, "loss": loss, "measured_rtt_ms": round(rtt_meas, 3),
                               "goodput_mbit": round(goodput, 2), "cc": cfg.congestion_control,
                               "kernel": platform.release(), "cpus": os.cpu_count()})
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(line + "\n")
    finally:
        tb.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
