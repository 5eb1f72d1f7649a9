"""Live streams: `streams` concurrent driver live streams (GET /api/v1/sessions/{id}/live) held open on
one server process, and what they cost the driver API.

The driver API's latency (GET /api/v1/sessions/{id} of a few drivers, open loop at `rate` per second)
is measured on the same server idle, then with every stream open while the sessions of random streams
change (the product's own publisher, apps.charging.live.session_publish, run by the bench as an OCPP
process would run it after a commit: `publish_rate` per second, in every window), then idle again once
the streams are closed (`..._idle_after_p99_ms`: how much the machine's own noise moves it). The
streams are held by a client process (`python -m benchmarks.live_streams hold`); each driver keeps two
open. The server's database pool is sampled every second in every window alike through /readyz (open,
free, waiting; read before readyz's own check takes a connection) and pg_stat_activity (the
connections of the server's application_name); the pool figures judge the window with the streams.

    python -m benchmarks --phases live [--live-streams 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    HOST,
    PY,
    Child,
    cpu_seconds,
    machine_cpu,
    machine_cpu_share,
    percentile,
    r1,
    rss_kb,
    say,
)

DRIVER_EMAIL = "bench-live-{n}@bench.invalid"
STREAMS_PER_DRIVER = 2
APPLICATION_NAME = "cpo-bench-live"
PROBE_DRIVERS = 8


def prepare(drivers: int) -> list[tuple[int, str]]:
    """`drivers` drivers with one ACTIVE session each on the bench's chargers: [(session id, token)]."""
    from django.contrib.gis.geos import Point
    from rest_framework_simplejwt.tokens import AccessToken

    from apps.accounts.models import Organisation, User
    from apps.charging.models import DriverSession, DriverSessionTransition
    from apps.stations.models import ChargePoint, Location
    from benchmarks.setup import ORG_SLUG

    org = Organisation.objects.get(slug=ORG_SLUG)
    location, _ = Location.objects.get_or_create(
        organisation=org,
        name="Bench site",
        defaults={
            "address": "Benchstrasse 1",
            "city": "Berlin",
            "country": "DE",
            "time_zone": "Europe/Berlin",
            "point": Point(13.4132, 52.5219, srid=4326),
        },
    )
    ChargePoint.objects.filter(organisation=org, location__isnull=True).update(location=location)
    cps = list(
        ChargePoint.objects.filter(organisation=org)
        .order_by("identity")
        .values_list("pk", flat=True)[:drivers]
    )
    emails = [DRIVER_EMAIL.format(n=n) for n in range(drivers)]
    existing = set(User.objects.filter(email__in=emails).values_list("email", flat=True))
    User.objects.bulk_create(
        [User(email=e, password="!") for e in emails if e not in existing],  # noqa: S106 - unusable
        batch_size=2000,
    )
    users = {u.email: u for u in User.objects.filter(email__in=emails)}
    DriverSessionTransition.objects.filter(session__driver__in=users.values()).delete()
    DriverSession.objects.filter(driver__in=users.values()).delete()
    sessions = DriverSession.objects.bulk_create(
        [
            DriverSession(
                driver=users[e],
                organisation=org,
                charge_point_id=cps[n % len(cps)],
                evse_id=1,
                status="ACTIVE",
            )
            for n, e in enumerate(emails)
        ],
        batch_size=2000,
    )
    return [(s.pk, str(AccessToken.for_user(users[e]))) for s, e in zip(sessions, emails, strict=True)]


# --- the stream holder (a client process) -------------------------------------------------------------
async def _hold(port: int, targets: list[tuple[int, str]], concurrency: int) -> None:
    """Open a stream per target (`concurrency` opening at once), report READY, keep them open and count
    the `session` events that arrive, close them all on STOP and report RESULT."""
    gate = asyncio.Semaphore(concurrency)
    pattern = b"event: session"
    counts = {"open": 0, "failed": 0, "updates": 0, "closed_by_server": 0}
    statuses: dict[str, int] = {}
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.Task[None]] = []

    async def follow(reader: asyncio.StreamReader) -> None:
        tail = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                counts["closed_by_server"] += 1
                return
            data = tail + chunk
            counts["updates"] += data.count(pattern)
            tail = data[-(len(pattern) - 1) :]

    async def one(pk: int, token: str) -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(
                    f"GET /api/v1/sessions/{pk}/live HTTP/1.1\r\nHost: {HOST}\r\n"
                    f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                status = head.split(b" ", 2)[1].decode()
                statuses[status] = statuses.get(status, 0) + 1
                if status != "200":
                    counts["failed"] += 1
                    writer.close()
                    return
                seen = b""
                while pattern not in seen:  # the first event: the stream is open and serving
                    chunk = await asyncio.wait_for(reader.read(65536), 60)
                    if not chunk:
                        raise ConnectionError("closed before the first event")
                    seen += chunk
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
                counts["failed"] += 1
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                return
        counts["open"] += 1
        writers.append(writer)
        readers.append(asyncio.ensure_future(follow(reader)))

    started = time.monotonic()
    await asyncio.gather(*(one(pk, token) for pk, token in targets))
    print(
        "READY "
        + json.dumps({**counts, "statuses": statuses, "open_s": round(time.monotonic() - started, 1)}),
        flush=True,
    )
    counts["updates"] = 0  # from here on: the updates of the measured window
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "STOP":
            break
    still_open = sum(1 for task in readers if not task.done())
    for writer in writers:
        writer.close()
    for task in readers:
        task.cancel()
    print("RESULT " + json.dumps({**counts, "still_open": still_open}), flush=True)


def hold_main(argv: list[str]) -> int:
    from benchmarks.common import raise_fd_limit

    p = argparse.ArgumentParser(prog="python -m benchmarks.live_streams hold")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--targets", required=True, help="JSON file: [[session id, token], ...]")
    p.add_argument("--concurrency", type=int, default=50)
    args = p.parse_args(argv)
    raise_fd_limit()
    targets = [tuple(t) for t in json.loads(Path(args.targets).read_text())]
    asyncio.run(_hold(args.port, targets, args.concurrency))  # type: ignore[arg-type]
    return 0


# --- the bench side ---------------------------------------------------------------------------------
def _probe(base_url: str, targets: list[tuple[int, str]], rate: float, seconds: float) -> list[float]:
    """GET /api/v1/sessions/{id} of `targets` at `rate` per second (open loop, seeded gaps); ms each
    (a failed answer counts as 10 s, so that it cannot hide)."""
    import requests

    local = threading.local()
    rng = random.Random(11)

    def one(pk: int, token: str) -> float:
        http = getattr(local, "http", None) or requests.Session()
        local.http = http
        sent = time.perf_counter()
        try:
            ok = (
                http.get(
                    f"{base_url}/api/v1/sessions/{pk}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                ).status_code
                == 200
            )
        except requests.RequestException:
            ok = False
        return (time.perf_counter() - sent) * 1000 if ok else 10_000.0

    futures = []
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="live-probe") as pool:
        end = time.monotonic() + seconds
        next_at = time.monotonic()
        n = 0
        while True:
            next_at += rng.expovariate(rate)
            if next_at > end:
                break
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            pk, token = targets[n % len(targets)]
            n += 1
            futures.append(pool.submit(one, pk, token))
    return [f.result() for f in futures]


def _threads(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class _Background(threading.Thread):
    """Runs `step` every `every` seconds until stopped."""

    def __init__(self, name: str, every: float, step: Any) -> None:
        super().__init__(name=name, daemon=True)
        self.every, self.step = every, step
        self.stopped = threading.Event()
        self.errors = 0

    def run(self) -> None:
        from django.db import connection

        try:
            next_at = time.monotonic()
            while not self.stopped.is_set():
                try:
                    self.step()
                except Exception:
                    self.errors += 1
                next_at += self.every
                self.stopped.wait(max(0.0, next_at - time.monotonic()))
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def run(
    ctx: Any, *, streams: int, rate: float, publish_rate: float, seconds: float, box: float
) -> dict[str, Any]:
    """The phase: one stack server, the API idle, then with `streams` live streams open."""
    import requests
    from django.db import connection

    from apps.charging import live as driver_live
    from apps.charging.models import DriverSession
    from benchmarks.phases import start_stack_server

    box_end = min(time.monotonic() + box, ctx.deadline - 5)
    drivers = max(PROBE_DRIVERS, -(-streams // STREAMS_PER_DRIVER))
    targets = prepare(drivers)
    stream_targets = [targets[n % drivers] for n in range(streams)]
    probe_targets = targets[:PROBE_DRIVERS]
    targets_file = Path(tempfile.mkdtemp(prefix="cpo-bench-live-")) / "targets.json"
    targets_file.write_text(json.dumps(stream_targets))
    saved_env = ctx.server_env
    ctx.server_env = {**saved_env, "DB_APPLICATION_NAME": APPLICATION_NAME}
    server = holder = None
    result: dict[str, Any] = {"live_streams": 0}
    publisher = sampler = None
    try:
        server, port = start_stack_server(ctx, "live-server")
        base = f"http://{HOST}:{port}"
        # A server that has been serving (its first requests pay one-time costs): not measured.
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(
                pool.map(
                    lambda t: requests.get(
                        f"{base}/api/v1/sessions/{t[0]}",
                        timeout=20,
                        headers={"Authorization": f"Bearer {t[1]}"},
                    ),
                    probe_targets * 4,
                )
            )
        rng = random.Random(5)
        published = [0]

        def publish() -> None:
            """A change to a random streamed session, published as the product does after a commit (the
            status flips between ACTIVE and STOPPING: the stream has something new to show)."""
            pk = rng.choice(stream_targets)[0]
            flipped[pk] = "STOPPING" if flipped.get(pk, "ACTIVE") == "ACTIVE" else "ACTIVE"
            DriverSession.objects.filter(pk=pk).update(status=flipped[pk])
            driver_live.session_publish(pk)
            published[0] += 1

        pool_samples: list[dict[str, int]] = []
        pg_samples: list[int] = []

        def sample() -> None:
            """The server's pool (through /readyz) and its PostgreSQL connections, in both windows alike."""
            pool = requests.get(f"{base}/readyz", timeout=5).json().get("database_pool") or {}
            pool_samples.append(pool)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APPLICATION_NAME]
                )
                pg_samples.append(cursor.fetchone()[0])

        def window(targets: list[tuple[int, str]], seconds: float) -> tuple[list[float], dict[str, Any]]:
            """The API probed for `seconds` with the publisher and the sampler running; what it cost."""
            nonlocal publisher, sampler
            publisher = _Background("live-publisher", 1.0 / publish_rate, publish)
            sampler = _Background("live-pool-sampler", 1.0, sample)
            cpu0, machine0, published0 = cpu_seconds(server.pid), machine_cpu(), published[0]
            publisher.start()
            sampler.start()
            t0 = time.monotonic()
            latencies = _probe(base, targets, rate, seconds)
            took = time.monotonic() - t0
            publisher.stop()
            sampler.stop()
            cpu1 = cpu_seconds(server.pid)
            return latencies, {
                "server_cpu": round((cpu1 - cpu0) / took, 2)
                if cpu0 is not None and cpu1 is not None
                else None,
                "machine": machine_cpu_share(machine0, machine_cpu()),
                "published": published[0] - published0,
            }

        flipped: dict[int, str] = {}
        idle, idle_cost = window(probe_targets, seconds)
        idle_pool_samples = len(pool_samples)
        rss_idle = rss_kb(server.pid)

        holder = Child(
            "live-holder",
            [
                PY,
                "-m",
                "benchmarks.live_streams",
                "hold",
                "--port",
                str(port),
                "--targets",
                str(targets_file),
            ],
            env=ctx.env,
            log_dir=ctx.log_dir,
            stdin=True,
        )
        ready = holder.expect("READY", max(10.0, box_end - time.monotonic() - seconds - 15))
        say(
            f"  live streams: {ready['open']:,}/{streams:,} open in {ready['open_s']} s "
            f"(answers {ready['statuses']})"
        )
        del (
            pool_samples[:idle_pool_samples],
            pg_samples[:idle_pool_samples],
        )  # judge the pool with the streams
        holder_cpu0 = cpu_seconds(holder.pid)
        loaded, loaded_cost = window(probe_targets, min(seconds, max(5.0, box_end - time.monotonic() - 15)))
        holder_cpu = cpu_seconds(holder.pid)
        loaded_pool_samples, loaded_pg_samples = list(pool_samples), list(pg_samples)
        threads = _threads(server.pid)
        rss_streams = rss_kb(server.pid)
        holder.send("STOP")
        held = holder.expect("RESULT", 20)
        # The server notices the closed streams and gives every place back: until its pool is all free.
        closed_at, after = time.monotonic(), {}
        while time.monotonic() - closed_at < 40:
            with contextlib.suppress(requests.RequestException, ValueError):
                after = requests.get(f"{base}/readyz", timeout=5).json().get("database_pool") or {}
                if after and after["available"] == after["size"] and not after["waiting"]:
                    break
            time.sleep(0.5)
        close_s = time.monotonic() - closed_at
        # The API idle again, on the same server: how much of the difference was the machine's noise.
        idle_after: list[float] = []
        if box_end - time.monotonic() > seconds + 3:
            idle_after, _cost = window(probe_targets, seconds)
        pool_samples, pg_samples = loaded_pool_samples, loaded_pg_samples
        free = [p["max"] - p["size"] + p["available"] for p in pool_samples if p]
        idle_p99, loaded_p99 = percentile(idle, 99), percentile(loaded, 99)
        result = {
            "live_streams": held["still_open"],  # open from READY to STOP, i.e. through the measured window
            "live_streams_requested": streams,
            "live_streams_failed": ready["failed"],
            "live_streams_closed_by_server": held["closed_by_server"],
            "live_streams_api_idle_p99_ms": r1(idle_p99),
            "live_streams_api_p99_ms": r1(loaded_p99),
            "live_streams_api_p50_ms": r1(percentile(loaded, 50)),
            "live_streams_api_idle_p50_ms": r1(percentile(idle, 50)),
            "live_streams_api_idle_after_p99_ms": r1(percentile(idle_after, 99)),
            "live_streams_api_ratio": r1(loaded_p99 / idle_p99, 2) if idle_p99 and loaded_p99 else None,
            "live_streams_api_requests": [len(idle), len(loaded)],
            "live_streams_updates_published": loaded_cost["published"],
            "live_streams_server_cpu": [idle_cost["server_cpu"], loaded_cost["server_cpu"]],
            "live_streams_holder_cpu": r1((holder_cpu - holder_cpu0) / seconds, 2)
            if holder_cpu is not None and holder_cpu0 is not None
            else None,
            "live_streams_server_threads": threads,
            "live_streams_machine_busy": [(c["machine"] or {}).get("busy") for c in (idle_cost, loaded_cost)],
            "live_streams_updates_received": held["updates"],
            "live_streams_pool_max": pool_samples[0].get("max") if pool_samples else None,
            "live_streams_pool_min_free": min(free) if free else None,
            "live_streams_pool_max_waiting": max((p.get("waiting", 0) for p in pool_samples), default=None),
            "live_streams_pool_samples": len(pool_samples),
            "live_streams_pg_connections_max": max(pg_samples, default=None),
            "live_streams_close_s": r1(close_s),
            "live_streams_pool_free_after": (after["max"] - after["size"] + after["available"])
            if after
            else None,
            "live_streams_rss_kb_per_stream": r1((rss_streams - rss_idle) / ready["open"])
            if rss_streams and rss_idle and ready["open"]
            else None,
        }
        result["live_streams_pool_never_exhausted"] = (
            bool(free) and min(free) > 0 and not result["live_streams_pool_max_waiting"]
        )
    finally:
        for thread in (sampler, publisher):
            if thread is not None:
                thread.stop()
        ctx.server_env = saved_env
        if holder is not None:
            holder.stop()
        if server is not None:
            server.stop()
    r = {k.removeprefix("live_streams_"): v for k, v in result.items()}
    say(
        f"  live streams: {result['live_streams']:,} held open; API p99 idle {r.get('api_idle_p99_ms')} ms, "
        f"with the streams {r.get('api_p99_ms')} ms (ratio {r.get('api_ratio')}); "
        f"{r.get('updates_published')} updates published, {r.get('updates_received')} stream events "
        f"received; pool of {r.get('pool_max')}: at least {r.get('pool_min_free')} free, at most "
        f"{r.get('pool_max_waiting')} waiting over {r.get('pool_samples')} samples, "
        f"{r.get('pg_connections_max')} PostgreSQL connections at most; "
        f"{r.get('rss_kb_per_stream')} KB per stream; server CPU idle/streams {r.get('server_cpu')}, "
        f"machine busy {r.get('machine_busy')}"
    )
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["hold"]:
        raise SystemExit(hold_main(sys.argv[2:]))
    raise SystemExit("usage: python -m benchmarks --phases live (this module's own entry is `hold`)")
