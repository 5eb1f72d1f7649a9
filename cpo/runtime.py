"""Process-wide tuning for the product's long-running processes (the ASGI server, Celery workers)."""

from __future__ import annotations

import functools
import gc
import os
import sys

import redis.utils

DEFAULT_GC_THRESHOLDS = "2000,10,5000"
DEFAULT_SWITCH_INTERVAL_MS = "1"


def tune_gc() -> tuple[int, ...] | None:
    """Freeze what start-up created and collect the old generation rarely, the young ones often. A
    long-running process holds hundreds of thousands of long-lived objects (connections, tasks, queues,
    Django's import graph); with the default thresholds full collections of them stalled the event loop
    for 0.75-1.8 s each in the gateway (benchmarks), and a worker's threads stop for a collection all at
    once. A full collection comes after 2000 x 10 x 5000 net allocations (100 million, as with the
    earlier 50000,20,100). The young generations stay small because each of their collections stops the
    loop for as long as it takes to scan them: with 50000,20,100 and 2,000 live streams open, a gen0
    collection took 20-55 ms and the first gen1 collection after the streams opened (everything they had
    allocated) 431 ms, the driver API's tail (benchmarks, live phase); with 2000,10,5000 they take a few
    ms and at most about 40 ms. `CPO_GC_THRESHOLDS` ("" keeps Python's defaults). Returns the thresholds
    set, or None."""
    setting = os.environ.get("CPO_GC_THRESHOLDS", DEFAULT_GC_THRESHOLDS).strip()
    if not setting:
        return None
    thresholds = tuple(int(n) for n in setting.split(","))
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return thresholds


def cache_redis_lib_version() -> None:
    """redis-py looks its own version up in the installed packages' metadata (importlib.metadata, a scan
    of sys.path) for every connection it opens, on the event loop for asyncio clients: about 1 ms idle,
    and when 2,000 live streams ended at once (each giving its Redis lease back and leaving its group over
    new pooled connections) the loop stood still in that scan for 1-3.6 s at a time (benchmarks, live
    phase). The version cannot change while the process runs: look it up once."""
    lookup = redis.utils.get_lib_version
    if not hasattr(lookup, "cache_info"):
        redis.utils.get_lib_version = functools.cache(lookup)


def tune_switch_interval() -> float:
    """How long a thread may keep the GIL while another waits for it (`CPO_SWITCH_INTERVAL_MS`, default
    1; Python's own is 5). A request's synchronous code runs in its thread beside the event loop and needs
    the GIL back after every database round trip: while the loop is busy (thousands of connections and
    streams) it waited up to a whole interval each time. Measured with the middleware chain in one thread
    (cpo.asgi_threads), on the live phase of `make bench`. Returns the interval set, in seconds."""
    interval = float(os.environ.get("CPO_SWITCH_INTERVAL_MS", DEFAULT_SWITCH_INTERVAL_MS)) / 1000.0
    if not 0 < interval <= 0.1:
        raise ValueError("CPO_SWITCH_INTERVAL_MS must be above 0 and at most 100")
    sys.setswitchinterval(interval)
    return sys.getswitchinterval()
