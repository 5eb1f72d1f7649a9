"""The four phases. Each starts its own servers and client processes, stays inside its time box, and
stops everything it started before returning (Child.stop in finally blocks)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    HOST,
    PY,
    Child,
    ChildFailed,
    cpu_seconds,
    cpu_seconds_by_name,
    free_port,
    machine_cpu,
    machine_cpu_share,
    percentile,
    r1,
    rss_kb,
    say,
    wait_port,
)
from cpo.runtime import tune_gc


class Ctx:
    """What every phase needs: the environment, where logs go, and the global deadline."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        deadline: float,
        server_kind: str,
        server_env: dict[str, str],
    ) -> None:
        self.env = env
        self.server_env = server_env
        self.log_dir = log_dir
        self.deadline = deadline
        self.server_kind = server_kind

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


# --- servers ---------------------------------------------------------------------------------------
def start_stack_server(ctx: Ctx, name: str) -> tuple[Child, int]:
    port = free_port()
    bin_dir = Path(PY).parent
    if ctx.server_kind == "daphne":
        argv = [
            str(bin_dir / "daphne"),
            "-b",
            HOST,
            "-p",
            str(port),
            "--websocket_timeout",
            "-1",
            "config.asgi:application",
        ]
    else:  # uvicorn as the product runs it; "uvicorn-sansio" tries uvicorn's newer websockets implementation
        ws_impl = "websockets-sansio" if ctx.server_kind == "uvicorn-sansio" else "websockets"
        argv = [
            str(bin_dir / "uvicorn"),
            "config.asgi:application",
            "--host",
            HOST,
            "--port",
            str(port),
            "--ws",
            ws_impl,
            "--lifespan",
            "off",
            "--no-access-log",
            "--ws-max-size",
            "1048576",
        ]
    # The server dies with the bench (PR_SET_PDEATHSIG in the launcher) and is stopped by the phase.
    child = Child(name, argv, env=ctx.server_env, log_dir=ctx.log_dir)
    wait_port(port, 30, child)
    return child, port


def server_pid(child: Child) -> int:
    """The server's pid (the launcher execs the server, so it is the child's own pid)."""
    return child.pid


def start_floor_server(ctx: Ctx, max_seconds: float, uvloop: bool = False) -> tuple[Child, int]:
    port = free_port()
    argv = [PY, "-m", "benchmarks.floor_server", "--port", str(port), "--max-seconds", str(int(max_seconds))]
    if uvloop:
        argv.append("--uvloop")
    child = Child("floor-server" + ("-uvloop" if uvloop else ""), argv, env=ctx.env, log_dir=ctx.log_dir)
    wait_port(port, 20, child)
    return child, port


def clients(
    ctx: Ctx,
    name: str,
    mode: str,
    port: int,
    first: int,
    count: int,
    *,
    auth: bool,
    max_seconds: float,
    extra: list[str] | None = None,
) -> Child:
    argv = [
        PY,
        "-m",
        "benchmarks.clients",
        mode,
        "--url",
        f"ws://{HOST}:{port}/ocpp/",
        "--first",
        str(first),
        "--count",
        str(count),
        "--max-seconds",
        str(int(max_seconds)),
        *(extra or []),
    ]
    if auth:
        argv.append("--auth")
    return Child(name, argv, env=ctx.env, log_dir=ctx.log_dir, stdin=True)


# --- phases 1 and 2: closed-loop heartbeat throughput -------------------------------------------------
def load_run(
    ctx: Ctx,
    label: str,
    port: int,
    spid: int,
    *,
    auth: bool,
    n_clients: int,
    procs: int,
    warmup: float,
    duration: float,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """One closed-loop run: `procs` generator processes, n_clients in total, Heartbeat round trips that
    complete within the measured window after `warmup`."""
    per = [n_clients // procs + (1 if i < n_clients % procs else 0) for i in range(procs)]
    gens, first = [], 0
    try:
        for i, count in enumerate(per):
            gens.append(
                clients(
                    ctx,
                    f"{label}-gen{i}",
                    "load",
                    port,
                    first,
                    count,
                    auth=auth,
                    max_seconds=warmup + duration + 60,
                    extra=extra,
                )
            )
            first += count
        ready = [g.expect("READY", 45) for g in gens]
        connected = sum(r["connected"] for r in ready)
        boots: dict[str, int] = {}
        for r in ready:
            for k, v in r["boot"].items():
                boots[k] = boots.get(k, 0) + v
        t0 = time.time() + warmup
        t1 = t0 + duration
        for g in gens:
            g.send(f'GO {{"t0": {t0}, "t1": {t1}}}')
        time.sleep(max(0.0, t0 - time.time()))
        cpu0 = cpu_seconds(spid)
        gcpu0 = [cpu_seconds(g.pid) for g in gens]
        time.sleep(max(0.0, t1 - time.time()))
        cpu1 = cpu_seconds(spid)
        gcpu1 = [cpu_seconds(g.pid) for g in gens]
        results = [g.expect("RESULT", 30) for g in gens]
    finally:
        for g in gens:
            g.stop()
    lat = [x / 1000 for r in results for x in r["lat_us"]]
    count = sum(r["count"] for r in results)
    errors = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    gen_cpu = sum((b or 0) - (a or 0) for a, b in zip(gcpu0, gcpu1, strict=True)) / duration
    return {
        "msgs_per_s": count / duration,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "connected": connected,
        "boot": boots,
        "errors": errors,
        "server_cpu": ((cpu1 or 0) - (cpu0 or 0)) / duration,
        "generator_cpu": gen_cpu,
    }


def throughput(
    ctx: Ctx,
    targets: dict[str, tuple[Callable[[], tuple[Child, int]], bool]],
    *,
    runs: int,
    n_clients: int,
    procs: int,
    warmup: float,
    duration: float,
    box: float,
    extra: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Closed-loop runs against each target server, interleaved (A, B, A, B, ...) so that a neighbour's
    load on this shared machine hits both alike; median of `runs` per target (fewer if the box runs out).
    `targets` maps a label to (start the server, authenticate the clients). Servers idle between runs."""
    box_end = min(time.monotonic() + box, ctx.deadline - 5)
    per_run = warmup + duration + 8
    started: dict[str, tuple[Child, int]] = {}
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in targets}
    rss: dict[str, int | None] = {}
    try:
        for label, (start, _auth) in targets.items():
            started[label] = start()
        for i in range(runs):
            if i and time.monotonic() + per_run * len(targets) > box_end:
                say(f"  time box reached after {i} round(s)")
                break
            for label, (_start, auth) in targets.items():
                server, port = started[label]
                res = load_run(
                    ctx,
                    f"{label}{i + 1}",
                    port,
                    server_pid(server),
                    auth=auth,
                    n_clients=n_clients,
                    procs=procs,
                    warmup=warmup,
                    duration=duration,
                    extra=extra,
                )
                results[label].append(res)
                say(
                    f"  {label:5s} run {i + 1}: {res['msgs_per_s']:7,.0f} msgs/s  "
                    f"p50 {res['p50_ms']:5.1f} ms  p99 {res['p99_ms']:6.1f} ms  "
                    f"server CPU {res['server_cpu']:4.0%} "
                    f"({res['msgs_per_s'] / max(res['server_cpu'], 0.01):,.0f} msgs per CPU-second)  "
                    f"generators CPU {res['generator_cpu']:.0%}  "
                    f"[{res['connected']}/{n_clients} connected, boot {res['boot']}"
                    + (f", errors {res['errors']}" if any(res["errors"].values()) else "")
                    + "]"
                )
        for label, (server, _port) in started.items():
            rss[label] = rss_kb(server_pid(server))
    finally:
        for server, _port in started.values():
            server.stop()
    out: dict[str, dict[str, Any]] = {}
    for label, res in results.items():
        if not res:
            continue
        ordered = sorted(res, key=lambda r: r["msgs_per_s"])
        median = ordered[len(ordered) // 2]
        out[label] = {
            "msgs_per_s": round(statistics.median(r["msgs_per_s"] for r in res)),
            "p50_ms": r1(median["p50_ms"]),
            "p99_ms": r1(median["p99_ms"]),
            "runs": [round(r["msgs_per_s"]) for r in res],
            "server_cpu": round(median["server_cpu"], 2),
            "generator_cpu": round(median["generator_cpu"], 2),
            # Throughput per second of server CPU: less sensitive to other work on the machine.
            "msgs_per_cpu_s": round(
                statistics.median(r["msgs_per_s"] / max(r["server_cpu"], 0.01) for r in res)
            ),
            "server_rss_kb": rss.get(label),
        }
    return out


# --- phase 3: idle connections ---------------------------------------------------------------------
def idle(ctx: Ctx, *, target: int, procs: int, concurrency: int, box: float) -> dict[str, Any]:
    box_end = min(time.monotonic() + box, ctx.deadline - 10)
    server, port = start_stack_server(ctx, "idle-server")
    spid = server_pid(server)
    gens: list[Child] = []
    try:
        # Warm up (imports, database and Redis connections, caches), then take the baseline.
        warm = clients(ctx, "idle-warmup", "idle", port, 0, 20, auth=True, max_seconds=60)
        warm.expect("READY", 30)
        warm.send("STOP")
        warm.expect("RESULT", 10)
        warm.stop()
        time.sleep(2.0)
        before = rss_kb(spid) or 0
        say(f"  idle: server RSS before {before / 1024:,.1f} MB")
        started = time.monotonic()
        per = [target // procs + (1 if i < target % procs else 0) for i in range(procs)]
        first = 0
        progress: dict[str, dict[str, int]] = {}
        for i, count in enumerate(per):
            gens.append(
                clients(
                    ctx,
                    f"idle-gen{i}",
                    "idle",
                    port,
                    first,
                    count,
                    auth=True,
                    max_seconds=box + 20,
                    extra=["--concurrency", str(concurrency)],
                )
            )
            first += count
        ready: dict[str, dict[str, Any]] = {}
        last_say = 0.0

        def on_progress(name: str) -> Callable[[str, dict[str, Any]], None]:
            def handler(kind: str, data: dict[str, Any]) -> None:
                if kind == "PROGRESS":
                    progress[name] = data

            return handler

        timed_out = False
        while len(ready) < len(gens):
            for g in gens:
                if g.name in ready:
                    continue
                try:
                    ready[g.name] = g.expect("READY", 1.0, on_other=on_progress(g.name))
                except ChildFailed:
                    if not g.alive():
                        raise
            if time.monotonic() - last_say >= 10:
                last_say = time.monotonic()
                done = sum(p.get("connected", 0) for p in progress.values())
                say(
                    f"  idle: {done:,} connected after {time.monotonic() - started:.0f} s, "
                    f"server RSS {(rss_kb(spid) or 0) / 1024:,.0f} MB"
                )
            if len(ready) < len(gens) and time.monotonic() > box_end - 20:
                say("  idle: time box reached while connecting; holding and measuring what is connected")
                timed_out = True
                for g in gens:
                    if g.name not in ready:
                        g.send("HOLD")
                        ready[g.name] = g.expect("READY", 10, on_other=on_progress(g.name))
        connect_s = time.monotonic() - started
        connected = sum(r["connected"] for r in ready.values())
        failed = sum(r["failed"] for r in ready.values())
        errors: dict[str, int] = {}
        for r in ready.values():
            for k, v in r.get("errors", {}).items():
                errors[k] = errors.get(k, 0) + v
        time.sleep(3.0)  # let the server settle (buffers flushed, tasks parked)
        after = rss_kb(spid) or 0
        still_open = 0
        for g in gens:
            g.send("STOP")
        for g in gens:
            with contextlib.suppress(ChildFailed):
                still_open += g.expect("RESULT", 10)["still_open"]
    finally:
        server.stop()
        for g in gens:
            g.stop()
    per_conn = (after - before) / connected if connected else None
    say(
        f"  idle: {connected:,} connected ({failed} failed{', ' + str(errors) if errors else ''}) in "
        f"{connect_s:.0f} s ({connected / connect_s:,.0f}/s); "
        f"RSS {before / 1024:,.1f} -> {after / 1024:,.1f} MB "
        f"= {per_conn or 0:.1f} KB per connection; {still_open:,} still open at the end"
    )
    return {
        "idle_connections": connected,
        "rss_kb_per_connection": r1(per_conn),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "idle_failed": failed,
        "idle_connect_s": r1(connect_s),
        "idle_still_open": still_open,
        "idle_timed_out": timed_out,
    }


# --- phase 4: commands from another process --------------------------------------------------------
class _StageStamps:
    """Wall-clock stamps of one command's path in the caller thread, for the per-stage breakdown.

    Wraps (in the bench process only, while installed) the gateway's seams a command passes through:
    the presence lookup and the on-commit hand-over to the channel layer. The charger simulator stamps
    when the CALL arrived and when it answered."""

    SEAMS = (
        ("presence", "lookup", "presence"),
        ("services", "_dispatch", "dispatch"),
    )

    def __init__(self) -> None:
        self._local = threading.local()
        self._saved: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        from apps.ocpp_gateway import presence, services

        modules = {"presence": presence, "services": services}
        for module_name, attr, label in self.SEAMS:
            module = modules[module_name]
            original = getattr(module, attr, None)
            if original is None:  # a seam this version of the gateway does not have
                continue
            self._saved.append((module, attr, original))
            setattr(module, attr, self._wrap(original, label))

    def uninstall(self) -> None:
        for module, attr, original in reversed(self._saved):
            setattr(module, attr, original)
        self._saved.clear()

    def _wrap(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.mark(f"{label}_start")
            try:
                return fn(*args, **kwargs)
            finally:
                self.mark(f"{label}_end")

        return wrapper

    def begin(self) -> None:
        self._local.stamps = {"start": time.time()}

    def mark(self, name: str) -> None:
        stamps = getattr(self._local, "stamps", None)
        if stamps is not None:
            stamps.setdefault(name, time.time())

    def take(self) -> dict[str, float]:
        stamps, self._local.stamps = getattr(self._local, "stamps", {}), None
        return stamps or {}


class CommandRunner:
    """Sends ClearCache commands and waits for each (command_send, then command_wait, as an admin action
    does), recording latency and stage stamps; `run` is one caller (a thread or a process)."""

    def __init__(self, cps: dict[str, Any], *, box_end: float, second_server_from: str) -> None:
        self.cps = cps
        self.box_end = box_end
        self.second_server_from = second_server_from
        self.stamps = _StageStamps()
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] = []

    def one(self, identity: str) -> None:
        from apps.ocpp_gateway.services import command_send, command_wait

        if time.monotonic() > self.box_end - 15:
            return
        stamps = self.stamps
        stamps.begin()
        t = time.perf_counter()
        cmd = command_send(
            charge_point=self.cps[identity], action="ClearCache", payload={}, timeout_s=10, source="bench"
        )
        sent = time.perf_counter()
        stamps.mark("send_returned")
        outcome = command_wait(command_id=cmd.pk, timeout_s=12)
        done = time.perf_counter()
        stamps.mark("wait_returned")
        with self.lock:
            self.records.append(
                {
                    "total_ms": (done - t) * 1000,
                    "send_ms": (sent - t) * 1000,
                    "status": outcome.get("status"),
                    "server": 0 if identity < self.second_server_from else 1,
                    "unique_id": cmd.unique_id,
                    "command_id": cmd.pk,
                    "stamps": stamps.take(),
                }
            )

    @staticmethod
    def warm(threads: int) -> None:
        """Open the database and Redis connections `threads` callers hold at once, and hand them back to
        their pools, as they are in a worker that has been serving for a while: psycopg's pool starts
        with one connection (min_size) and keeps the ones it grew to, so a cold pool would put a new
        PostgreSQL connection (backend start and authentication) into the first command of each thread."""
        from django.db import connection, connections

        from apps.ocpp_gateway.redis_clients import sync_redis

        barrier = threading.Barrier(threads)

        def hold() -> None:
            try:
                barrier.wait(timeout=30)
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                sync_redis().ping()
                barrier.wait(timeout=30)  # all held at once: each pool grows to `threads`
            finally:
                connections.close_all()

        workers = [threading.Thread(target=hold, name=f"bench-warm-{i}") for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def run(self, items: list[str]) -> None:
        from django.db import connections

        try:
            for identity in items:
                self.one(identity)
        finally:
            connections.close_all()


# (stage, from stamp, to stamp): the caller's stamps plus the simulator's "charger_received" and
# "charger_answered". Stages with a missing stamp are left out for that command.
COMMAND_STAGES = (
    ("caller_prepare", "start", "presence_end"),  # schema validation, presence lookup (Redis)
    ("caller_transaction", "presence_end", "dispatch_start"),  # INSERT command + audit, COMMIT
    ("caller_layer_send", "dispatch_start", "dispatch_end"),  # channel-layer send (sender thread)
    ("to_charger", "dispatch_end", "charger_received"),  # server: layer receive -> consumer -> frame
    ("charger", "charger_received", "charger_answered"),  # simulator's own answer
    ("to_waiter", "charger_answered", "wait_returned"),  # server: answer -> row final -> Redis; BLMOVE wakes
    ("total", "start", "wait_returned"),
)


def stage_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for stage, a, b in COMMAND_STAGES:
        values = [
            (r["stamps"][b] - r["stamps"][a]) * 1000 for r in records if a in r["stamps"] and b in r["stamps"]
        ]
        out[stage] = {
            "n": len(values),
            "p50_ms": r1(percentile(values, 50)),
            "p99_ms": r1(percentile(values, 99)),
        }
    return out


def _cpu_split(servers: list[tuple[Child, int]], fleets: list[Child]) -> dict[str, float]:
    """CPU seconds used so far by each part of the commands phase: the two servers, the caller (this
    process), the fleets, the PostgreSQL backends and Redis, and the machine as a whole."""
    split = {f"server{i}": cpu_seconds(server_pid(s)) or 0.0 for i, (s, _p) in enumerate(servers)}
    split["caller"] = time.process_time()
    split["fleets"] = sum(cpu_seconds(f.pid) or 0.0 for f in fleets)
    split.update(cpu_seconds_by_name(["postgres", "redis-server"]))
    counters = machine_cpu() or []
    ticks = os.sysconf("SC_CLK_TCK")
    busy = [counters[i] for i in (0, 1, 2, 5, 6) if i < len(counters)]
    split["machine"] = sum(busy) / ticks
    return split


def _cpu_split_rate(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    rates = {k: round((after[k] - before[k]) / max(seconds, 1e-6), 2) for k in before}
    rates["other"] = round(rates["machine"] - sum(v for k, v in rates.items() if k != "machine"), 2)
    return rates


def commands(
    ctx: Ctx,
    *,
    chargers: int,
    n_commands: int,
    threads: int,
    hb_min: float,
    hb_max: float,
    box: float,
    caller_procs: int = 0,
) -> dict[str, Any]:
    """Commands from another process to chargers held by two servers while the fleet heartbeats: half
    sent one after the other, half from `threads` threads of this process at once (the `command_*`
    figures); then, with `caller_procs`, as many again from that many separate caller processes at once
    (`command_processes`: the product's callers are several processes, each with its own interpreter)."""
    from django.db import connections

    from apps.ocpp_gateway import presence
    from apps.ocpp_gateway.redis_clients import sync_redis
    from apps.stations.models import ChargePoint
    from benchmarks.clients import identity_for

    box_end = min(time.monotonic() + box, ctx.deadline - 10)
    servers: list[tuple[Child, int]] = []
    fleets: list[Child] = []
    callers: list[Child] = []
    proc_records: list[dict[str, Any]] = []
    proc_cpu_s = 0.0
    machine_p = None
    try:
        for i in range(2):
            servers.append(start_stack_server(ctx, f"cmd-server{i}"))
        half = chargers // 2
        started = time.monotonic()
        for i, (_srv, port) in enumerate(servers):
            count = half if i == 0 else chargers - half
            fleets.append(
                clients(
                    ctx,
                    f"fleet{i}",
                    "fleet",
                    port,
                    i * half,
                    count,
                    auth=True,
                    max_seconds=box + 20,
                    extra=["--concurrency", "50", "--hb-min", str(hb_min), "--hb-max", str(hb_max)],
                )
            )
        ready = []
        for f in fleets:
            try:
                ready.append(f.expect("READY", max(5.0, box_end - time.monotonic() - 70)))
            except ChildFailed:
                if not f.alive():
                    raise
                say(f"  commands: time box reached while {f.name} was connecting; going on with what is open")
                f.send("NOW")
                ready.append(f.expect("READY", 10))
        connected = sum(r["connected"] for r in ready)
        connect_s = time.monotonic() - started
        say(
            f"  commands: {connected:,}/{chargers:,} chargers connected and booted in {connect_s:.0f} s "
            f"({connected / connect_s:,.0f}/s over two servers); heartbeating every {hb_min:g}-{hb_max:g} s"
        )
        for i in range(caller_procs):
            callers.append(
                Child(
                    f"caller{i}",
                    [
                        PY,
                        "-m",
                        "benchmarks.callers",
                        "--second-server-from",
                        identity_for(half),
                        "--max-seconds",
                        str(int(max(30.0, box_end - time.monotonic()))),
                    ],
                    env=ctx.env,
                    log_dir=ctx.log_dir,
                    stdin=True,
                )
            )
        time.sleep(min(hb_max, 5.0))  # into the steady state
        for c in callers:
            c.expect("READY", max(5.0, min(60.0, box_end - time.monotonic() - 60)))
        for f in fleets:
            f.send("MARK")
        cps = {
            cp.identity: cp
            for cp in ChargePoint.objects.filter(identity__in=[identity_for(n) for n in range(chargers)])
        }
        r = sync_redis()
        pipe = r.pipeline(transaction=False)
        for identity in cps:
            pipe.exists(presence.PREFIX + identity)
        targets = [i for i, live in zip(cps, pipe.execute(), strict=True) if live]  # connected chargers only
        # Give this thread's database connection back to the pool (DB_POOL_MAX_SIZE, 10 by default): the
        # caller threads hold one each, as requests and tasks do while they run, and an eleventh would wait
        # for a whole chunk of commands to end (measured: 1.5 s stalls with 10 threads).
        connections.close_all()
        rng = random.Random(8)
        CommandRunner.warm(threads)
        # This process stands in for the product's callers (ASGI server, Celery worker), which tune their
        # collector at start (cpo.runtime.tune_gc).
        tune_gc()
        cpu0 = [cpu_seconds(server_pid(s)) for s, _p in servers]
        t_start = time.monotonic()
        machine0 = machine_cpu()
        runner = CommandRunner(cps, box_end=box_end, second_server_from=identity_for(half))
        records = runner.records
        sequential = runner.run

        runner.stamps.install()
        fleet_cpu0 = [cpu_seconds(f.pid) for f in fleets]
        own_cpu0 = time.process_time()
        picks = [rng.choice(targets) for _ in range(n_commands)]
        n_seq = n_commands // 2
        seq_runner = threading.Thread(target=sequential, args=(picks[:n_seq],), name="bench-commands-seq")
        seq_runner.start()
        seq_runner.join(timeout=max(1.0, box_end - time.monotonic() - 5))
        n_seq_done = len(records)
        machine1 = machine_cpu()
        seq_records = list(records)
        conc = picks[n_seq:]
        chunks = [conc[i::threads] for i in range(threads)]
        split0 = _cpu_split(servers, fleets)
        c_start = time.monotonic()
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-commands") as pool:
            futures = [pool.submit(sequential, chunk) for chunk in chunks]
            for fut in futures:
                fut.result(timeout=max(1.0, box_end - time.monotonic()))
        machine2 = machine_cpu()
        conc_split = _cpu_split_rate(split0, _cpu_split(servers, fleets), time.monotonic() - c_start)
        if callers:
            conc_p = [rng.choice(targets) for _ in range(n_commands - n_seq)]
            for i, c in enumerate(callers):
                go = {"identities": conc_p[i :: len(callers)], "box_s": box_end - time.monotonic()}
                c.send("GO " + json.dumps(go))
            for c in callers:
                try:
                    result = c.expect("RESULT", max(1.0, box_end - time.monotonic()))
                except ChildFailed as exc:
                    say(f"  commands: {exc}")
                    continue
                proc_records.extend(result["records"])
                proc_cpu_s += result["cpu_s"]
            machine_p = machine_cpu_share(machine2, machine_cpu())
        elapsed = time.monotonic() - t_start
        runner.stamps.uninstall()
        cpu1 = [cpu_seconds(server_pid(s)) for s, _p in servers]
        fleet_cpu1 = [cpu_seconds(f.pid) for f in fleets]
        own_cpu = (time.process_time() - own_cpu0) / elapsed
        rss = [rss_kb(server_pid(s)) for s, _p in servers]
        for f in fleets:
            f.send("STOP")
        fleet_results = []
        for f in fleets:
            try:
                fleet_results.append(f.expect("RESULT", 15))
            except ChildFailed as exc:
                say(f"  commands: {exc}")
    finally:
        for c in callers:
            c.stop()
        for f in fleets:
            f.stop()
        for s, _p in servers:
            s.stop()
    conc_records = records[n_seq_done:]
    call_times: dict[str, list[float]] = {}
    for fr in fleet_results:
        call_times.update(fr.get("call_times") or {})
    for rec in records + proc_records:
        answered = call_times.get(rec["unique_id"])
        if answered:
            rec["stamps"]["charger_received"], rec["stamps"]["charger_answered"] = answered

    def summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
        total = [r["total_ms"] for r in recs]
        send = [r["send_ms"] for r in recs]
        return {
            "n": len(recs),
            "p50_ms": r1(percentile(total, 50)),
            "p99_ms": r1(percentile(total, 99)),
            "max_ms": r1(max(total) if total else None),
            "send_p50_ms": r1(percentile(send, 50)),
            "send_p99_ms": r1(percentile(send, 99)),
        }

    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    all_s, seq_s, conc_s = summary(records), summary(seq_records), summary(conc_records)
    hb_sent = sum(r["hb_sent"] for r in fleet_results)
    hb_p99 = max((r["hb_p99_ms"] or 0) for r in fleet_results) if fleet_results else None
    hb_p50 = max((r["hb_p50_ms"] or 0) for r in fleet_results) if fleet_results else None
    heartbeating = sum(r["open"] for r in fleet_results)
    server_cpu = [round(((b or 0) - (a or 0)) / elapsed, 2) for a, b in zip(cpu0, cpu1, strict=True)]
    fleet_cpu = [
        round(((b or 0) - (a or 0)) / elapsed, 2) for a, b in zip(fleet_cpu0, fleet_cpu1, strict=True)
    ]
    seq_stages, conc_stages = stage_summary(seq_records), stage_summary(conc_records)
    say(f"  commands: {all_s['n']} ClearCache in {elapsed:.1f} s, outcomes {statuses}")
    say(
        f"    sequential  ({seq_s['n']}): p50 {seq_s['p50_ms']} ms  p99 {seq_s['p99_ms']} ms  "
        f"max {seq_s['max_ms']} ms"
        f"  (command_send alone p50 {seq_s['send_p50_ms']} ms, p99 {seq_s['send_p99_ms']} ms)"
    )
    say(
        f"    {threads} threads  ({conc_s['n']}): p50 {conc_s['p50_ms']} ms  p99 {conc_s['p99_ms']} ms  "
        f"max {conc_s['max_ms']} ms  (command_send alone p50 {conc_s['send_p50_ms']} ms, "
        f"p99 {conc_s['send_p99_ms']} ms)"
    )
    say(
        f"    all: p50 {all_s['p50_ms']} ms  p99 {all_s['p99_ms']} ms; heartbeats during the window: "
        f"{hb_sent / elapsed:,.0f}/s, p50 {hb_p50} ms p99 {hb_p99} ms (worst server); "
        f"{heartbeating:,} chargers still connected; server CPU {server_cpu}; "
        f"server RSS {[round((x or 0) / 1024) for x in rss]} MB; fleet CPU {fleet_cpu}; "
        f"caller CPU {own_cpu:.2f}; load average {[round(x, 2) for x in os.getloadavg()]}"
    )
    machine = {
        "sequential": machine_cpu_share(machine0, machine1),
        "concurrent": machine_cpu_share(machine1, machine2),
    }
    say(f"    machine CPU during the commands: {machine}")
    say(f"    CPU during the concurrent half, in cores: {conc_split}")
    procs_s = None
    if callers:
        procs_s = {
            **summary(proc_records),
            "processes": len(callers),
            "caller_cpu_ms_per_command": r1(proc_cpu_s * 1000 / max(1, len(proc_records))),
            "machine_cpu": machine_p,
            "stages": stage_summary(proc_records),
        }
        say(
            f"    {len(callers)} caller processes at once ({procs_s['n']}): p50 {procs_s['p50_ms']} ms  "
            f"p99 {procs_s['p99_ms']} ms  max {procs_s['max_ms']} ms  (command_send alone p50 "
            f"{procs_s['send_p50_ms']} ms, p99 {procs_s['send_p99_ms']} ms); machine CPU {machine_p}"
        )
        for stage, _a, _b in COMMAND_STAGES:
            st = procs_s["stages"][stage]
            say(f"      {stage:20s} {st['p50_ms']!s:>7} / {st['p99_ms']!s:>7}")
    say("    stages, p50 / p99 ms (sequential | concurrent):")
    for stage, _a, _b in COMMAND_STAGES:
        q, c = seq_stages[stage], conc_stages[stage]
        say(
            f"      {stage:20s} {q['p50_ms']!s:>7} / {q['p99_ms']!s:>7}   "
            f"| {c['p50_ms']!s:>7} / {c['p99_ms']!s:>7}"
        )
    return {
        "command_p50_ms": all_s["p50_ms"],
        "command_p99_ms": all_s["p99_ms"],
        "command_max_ms": all_s["max_ms"],
        "command_sequential": seq_s,
        "command_concurrent": {**conc_s, "threads": threads},
        "command_outcomes": statuses,
        "heartbeating_chargers": heartbeating,
        "fleet_heartbeats_per_s": round(hb_sent / elapsed) if elapsed else None,
        "fleet_heartbeat_p50_ms": hb_p50,
        "fleet_heartbeat_p99_ms": hb_p99,
        "command_server_cpu": server_cpu,
        "command_fleet_cpu": fleet_cpu,
        "command_caller_cpu": round(own_cpu, 2),
        "command_stages": {"sequential": seq_stages, "concurrent": conc_stages},
        "command_machine_cpu": machine,
        "command_concurrent_cpu_cores": conc_split,
        "command_processes": procs_s,
        "fleet_disconnected": sum(r["disconnected"] for r in fleet_results),
        "fleet_connected": connected,
        "fleet_connect_per_s": round(connected / connect_s, 1),
    }


# --- phase: reconnect storm --------------------------------------------------------------------------
def _storm_run(
    ctx: Ctx,
    label: str,
    port: int,
    spid: int,
    *,
    first: int,
    chargers: int,
    rate: float,
    procs: int,
    hb_s: float,
    open_timeout: float,
    box_end: float,
) -> dict[str, Any]:
    """One storm against one server: `chargers` arriving at `rate` per second (open loop) from `procs`
    generator processes, each booting and then heartbeating every `hb_s` seconds until every charger has
    an outcome (Accepted, or failed: handshake or boot timed out or refused)."""
    per = [chargers // procs + (1 if i < chargers % procs else 0) for i in range(procs)]
    arrival_s = chargers / rate
    gens: list[Child] = []
    try:
        start = first
        for i, count in enumerate(per):
            gens.append(
                clients(
                    ctx,
                    f"storm-{label}-gen{i}",
                    "storm",
                    port,
                    start,
                    count,
                    auth=True,
                    max_seconds=max(30.0, box_end - time.monotonic() + 10),
                    extra=[
                        "--rate",
                        str(rate * count / chargers),
                        "--hb-min",
                        str(hb_s),
                        "--hb-max",
                        str(hb_s),
                        "--open-timeout",
                        str(open_timeout),
                        "--boot-timeout",
                        str(max(10.0, box_end - time.monotonic() - arrival_s)),
                    ],
                )
            )
            start += count
        for g in gens:
            g.expect("READY", 30)
        t0 = time.time() + 1.0
        for g in gens:
            g.send(f'GO {{"t0": {t0}}}')
        cpu0 = cpu_seconds(spid)
        timed_out = False
        for g in gens:
            try:
                g.expect("DONE", max(1.0, box_end - time.monotonic()))
            except ChildFailed:
                if not g.alive():
                    raise
                timed_out = True
        elapsed = time.time() - t0
        cpu1 = cpu_seconds(spid)
        for g in gens:
            g.send("STOP")
        results = [g.expect("RESULT", 20) for g in gens]
    finally:
        for g in gens:
            g.stop()
    accepted_at = [x for r in results for x in r["accepted_at"]]
    boot = [x for r in results for x in r["boot_ms"]]
    connect = [x for r in results for x in r["connect_ms"]]
    hb = [x for r in results for x in r["hb_ms"]]
    errors: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    failed = sum(r["failed"] for r in results)
    out = {
        "seconds": r1(max(accepted_at), 2) if accepted_at else None,
        "failed": failed,
        "boot_p50_ms": r1(percentile(boot, 50)),
        "boot_p99_ms": r1(percentile(boot, 99)),
        "connect_p99_ms": r1(percentile(connect, 99)),
        "hb_p99_ms": r1(percentile(hb, 99)),
        "heartbeats": len(hb),
        "errors": errors,
        "statuses": statuses,
        "server_cpu": round(((cpu1 or 0) - (cpu0 or 0)) / max(elapsed, 0.001), 2),
        "timed_out": timed_out,
    }
    say(
        f"  {label:5s}: {chargers - failed:,}/{chargers:,} Accepted, the last after {out['seconds']} s "
        f"(arrivals take {arrival_s:.1f} s); {failed} failed {errors or ''}; boot p50 {out['boot_p50_ms']} "
        f"ms p99 {out['boot_p99_ms']} ms; handshake p99 {out['connect_p99_ms']} ms; heartbeat p99 "
        f"{out['hb_p99_ms']} ms ({len(hb):,}); server CPU {out['server_cpu']:.0%}"
        + (" [time box reached]" if timed_out else "")
    )
    return out


def storm(
    ctx: Ctx,
    *,
    chargers: int,
    rate: float,
    procs: int,
    hb_s: float,
    open_timeout: float,
    box: float,
) -> dict[str, Any]:
    """A reconnect storm: pre-registered chargers (security profile 1) arriving at `rate` per second at
    one server process, each booting then heartbeating; the bare floor (websockets + ocpp) first under the
    same arrivals, then the product. Chargers BENCH-<chargers>.. (10 of them) warm the product up first."""
    box_end = min(time.monotonic() + box, ctx.deadline - 5)
    per_target = (box_end - time.monotonic()) / 2
    figures: dict[str, Any] = {"storm_chargers": chargers, "storm_rate": rate}
    floor, fport = start_floor_server(ctx, per_target + 30)
    try:
        res = _storm_run(
            ctx,
            "floor",
            fport,
            server_pid(floor),
            first=0,
            chargers=chargers,
            rate=rate,
            procs=procs,
            hb_s=hb_s,
            open_timeout=open_timeout,
            box_end=time.monotonic() + per_target,
        )
    finally:
        floor.stop()
    figures.update({f"storm_floor_{k}": v for k, v in res.items()})
    server, port = start_stack_server(ctx, "storm-server")
    try:
        warm = clients(ctx, "storm-warmup", "idle", port, chargers, 10, auth=True, max_seconds=60)
        warm.expect("READY", 30)
        warm.send("STOP")
        warm.expect("RESULT", 10)
        warm.stop()
        res = _storm_run(
            ctx,
            "stack",
            port,
            server_pid(server),
            first=0,
            chargers=chargers,
            rate=rate,
            procs=procs,
            hb_s=hb_s,
            open_timeout=open_timeout,
            box_end=box_end,
        )
    finally:
        server.stop()
    figures.update({f"storm_{k}": v for k, v in res.items()})
    return figures
