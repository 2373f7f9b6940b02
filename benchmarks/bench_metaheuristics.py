"""GA / DE / PSO vs. greedy on tight 50-task x 10-node layer-sharing assignments: one JSON line per run.

    .venv/bin/python benchmarks/bench_metaheuristics.py [--instances 3] [--out results.jsonl]

``cost`` and ``greedy_cost`` are total task delay in seconds (see ``LayerAssignmentProblem``); ``ms`` is the
wall-clock solve time; ``polish`` says whether the final local search ran (off = the bare metaheuristic).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from edgemigrate.policies.optim import SOLVERS, LayerAssignmentProblem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--out", type=argparse.FileType("a"), default=None)
    args = ap.parse_args(argv)
    for inst in range(args.instances):
        prob = LayerAssignmentProblem.random(args.tasks, args.nodes, np.random.default_rng(inst))
        t0 = time.perf_counter()
        greedy_cost = float(prob.evaluate(prob.greedy())[0])
        greedy_ms = (time.perf_counter() - t0) * 1e3
        for algo, (fn, cfg) in SOLVERS.items():
            for polish in (False, True):
                t0 = time.perf_counter()
                res = fn(prob, dataclasses.replace(cfg, polish=polish), seed=inst)
                ms = (time.perf_counter() - t0) * 1e3
                line = {
                    "bench": "metaheuristic",
                    "algo": algo,
                    "polish": polish,
                    "instance": inst,
                    "tasks": args.tasks,
                    "nodes": args.nodes,
                    "cost": round(res.cost, 4),
                    "greedy_cost": round(greedy_cost, 4),
                    "improvement_pct": round(100 * (1 - res.cost / greedy_cost), 3),
                    "evaluations": res.evaluations,
                    "ms": round(ms, 1),
                    "greedy_ms": round(greedy_ms, 2),
                }
                text = json.dumps(line)
                print(text)
                if args.out:
                    args.out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
