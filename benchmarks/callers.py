"""A command caller process for the commands phase: the product's callers are several processes (admin
and API workers, Celery workers), each sending a command and waiting for its outcome.

    python -m benchmarks.callers --threads 1 --second-server-from BENCH-02500 --max-seconds 200

Sets Django up, connects to the database and Redis, and prints READY; on `GO {"identities": [...],
"box_s": S}` sends a ClearCache to each identity in turn (command_send, then command_wait, as an admin
action does) from --threads threads, and prints RESULT with one record per command (latency and stage
stamps, as the bench's own threads record them). Exits after --max-seconds or when the bench goes away.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any


def emit(kind: str, data: dict[str, Any]) -> None:
    sys.stdout.write(f"{kind} {json.dumps(data, separators=(',', ':'))}\n")
    sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.callers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--second-server-from", required=True, help="first identity held by the second server")
    p.add_argument("--max-seconds", type=float, default=200)
    args = p.parse_args()
    threading.Timer(args.max_seconds, lambda: os._exit(2)).start()

    import django

    django.setup()
    from django.db import connections

    from apps.ocpp_gateway.redis_clients import sync_redis
    from apps.stations.models import ChargePoint
    from benchmarks.phases import CommandRunner
    from cpo.runtime import tune_gc

    # Warm, as a long-running worker is: database and Redis connections open, code imported, the
    # collector tuned as the product's processes tune it (cpo.runtime).
    ChargePoint.objects.exists()
    sync_redis().ping()
    tune_gc()
    emit("READY", {"pid": os.getpid()})
    line = sys.stdin.readline()
    word, _, rest = line.strip().partition(" ")
    if word != "GO":
        os._exit(0)
    go = json.loads(rest)
    identities: list[str] = go["identities"]
    cps = {cp.identity: cp for cp in ChargePoint.objects.filter(identity__in=identities)}
    connections.close_all()
    runner = CommandRunner(
        cps, box_end=time.monotonic() + float(go["box_s"]), second_server_from=args.second_server_from
    )
    chunks = [identities[i :: args.threads] for i in range(args.threads)]
    runner.warm(args.threads)
    runner.stamps.install()
    started = time.process_time()
    workers = [threading.Thread(target=runner.run, args=(chunk,)) for chunk in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    emit("RESULT", {"records": runner.records, "cpu_s": round(time.process_time() - started, 3)})
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
