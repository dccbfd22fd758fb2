"""Run one function over many items: in-process, a local process pool, Dask or Ray.

All executors yield results as they complete, so the caller can show progress and keep finished work
(the extraction worker also writes its own per-clip cache entry, so nothing finished is lost if the
caller dies). Dask is the scale-out engine this project tests (``LocalCluster`` with processes, or an
existing scheduler address); Ray is supported when it is installed.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable, Iterator

EXECUTORS = ("local", "dask", "ray")


class ExecutorUnavailable(RuntimeError):
    pass


def threads_per_worker(workers: int) -> int:
    """Give each worker an equal share of the cores (torch and CTranslate2 both spawn threads)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def map_unordered(fn: Callable, items: Iterable, executor: str = "local", workers: int = 1,
                  address: str | None = None, initializer: Callable | None = None,
                  initargs: tuple = ()) -> Iterator:
    """Yield ``fn(item)`` for every item, in completion order.

    ``local`` with ``workers <= 1`` runs in this process (easiest to debug); ``local`` with more uses a
    spawn-based process pool (fork after torch/MediaPipe start threads can deadlock). ``dask`` starts a
    ``LocalCluster`` of ``workers`` processes unless ``address`` names a running scheduler.
    """
    items = list(items)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if not items:  # e.g. every clip already cached: no cluster to start
        return
    if executor == "local":
        yield from _local(fn, items, workers, initializer, initargs)
    elif executor == "dask":
        yield from _dask(fn, items, workers, address, initializer, initargs)
    else:
        yield from _ray(fn, items, workers, address, initializer, initargs)


def _local(fn, items, workers, initializer, initargs):
    if workers <= 1 or len(items) <= 1:
        if initializer:
            initializer(*initargs)
        for item in items:
            yield fn(item)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx,
                             initializer=initializer, initargs=initargs) as pool:
        futures = [pool.submit(fn, item) for item in items]
        for fut in as_completed(futures):
            yield fut.result()


def _dask(fn, items, workers, address, initializer, initargs):
    try:
        from distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError as exc:
        raise ExecutorUnavailable("the dask executor needs `dask[distributed]` (pip install 'dask[distributed]')") from exc
    cluster = None
    if address is None:
        # processes, one thread each: the extractors are CPU-bound native code holding the GIL at times
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
    client = Client(address or cluster)
    try:
        if initializer:
            client.run(initializer, *initargs)
        futures = client.map(fn, items, pure=False)
        for fut in dask_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _ray(fn, items, workers, address, initializer, initargs):
    try:
        import ray
    except ImportError as exc:
        raise ExecutorUnavailable("the ray executor needs `ray` (pip install ray); the tested scale-out "
                                  "engine of this project is dask (--executor dask)") from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else max(1, workers), include_dashboard=False)
    try:
        def run(item):
            if initializer:
                initializer(*initargs)
            return fn(item)

        remote = ray.remote(num_cpus=1)(run)
        pending = [remote.remote(item) for item in items]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()
