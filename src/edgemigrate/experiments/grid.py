"""Run a grid of independent jobs in local processes, or hand the same grid to a Ray cluster.

A job is a module-level function and keyword arguments (both picklable). Locally the jobs run in a
``spawn`` process pool (each worker pins torch/OpenMP to one thread); with ``ray_address`` each job becomes
a Ray task on the cluster. Ray is imported only then, so it is never needed otherwise
(``pip install 'ray[default]'``; ``ray_address="local"`` starts an in-process cluster, as CI does).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from edgemigrate.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Job:
    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is optional for non-RL grids
        pass


def _call(job: Job) -> Any:
    return job.fn(**job.kwargs)


def run_grid(jobs: Sequence[Job], *, workers: int = 2, ray_address: str | None = None,
             progress: bool = True) -> list[Any]:
    """Run ``jobs``; results come back in job order."""
    if not jobs:
        return []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="job", leave=False)
    results: list[Any] = [None] * len(jobs)
    try:
        if ray_address is not None:
            results = _run_ray(jobs, ray_address, bar)
        elif workers <= 1:
            _init_worker()
            for i, job in enumerate(jobs):
                results[i] = _call(job)
                if bar is not None:
                    bar.update(1)
        else:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
                futures = {pool.submit(_call, job): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def _run_ray(jobs: Sequence[Job], address: str, bar: Any) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'ray[default]'") from None
    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False,
                     log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(_ray_call)
        refs = [remote.remote(job) for job in jobs]
        out: list[Any] = []
        for ref in refs:
            out.append(ray.get(ref))
            if bar is not None:
                bar.update(1)
        return out
    finally:
        if started:
            ray.shutdown()


def _ray_call(job: Job) -> Any:
    _init_worker()
    return _call(job)
