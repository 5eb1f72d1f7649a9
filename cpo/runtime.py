"""Process-wide tuning for the product's long-running processes (the ASGI server, Celery workers)."""

from __future__ import annotations

import gc
import os

DEFAULT_GC_THRESHOLDS = "50000,20,100"


def tune_gc() -> tuple[int, ...] | None:
    """Freeze what start-up created and collect the old generation less often. A long-running process
    holds hundreds of thousands of long-lived objects (connections, tasks, queues, Django's import graph);
    with the default thresholds full collections of them stalled the event loop for 0.75-1.8 s each in
    the gateway (benchmarks), and a worker's threads stop for a collection all at once.
    `CPO_GC_THRESHOLDS` ("" keeps Python's defaults). Returns the thresholds set, or None."""
    setting = os.environ.get("CPO_GC_THRESHOLDS", DEFAULT_GC_THRESHOLDS).strip()
    if not setting:
        return None
    thresholds = tuple(int(n) for n in setting.split(","))
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return thresholds
