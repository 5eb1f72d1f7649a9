"""Load-generating chargers: raw `websockets` clients speaking OCPP-J 1.6 (no `ocpp` library, so the
generator stays cheap). One process runs one mode and talks to the bench over stdin/stdout lines:

    python -m benchmarks.clients load  --url ws://127.0.0.1:P/ocpp/ --first 0 --count 50 ...
        connect + BootNotification, print READY; on `GO {"t0":..,"t1":..}` run closed-loop Heartbeats
        (--action MeterValues: one energy sample each, stored by the product) until t1 and print
        RESULT with the round trips that completed inside [t0, t1).
    python -m benchmarks.clients idle  ... --count 5000
        connect + boot with bounded concurrency (PROGRESS lines), print READY, hold until STOP (HOLD while
        opening: stop opening, print READY for what is open).
    python -m benchmarks.clients fleet ... --count 2500 --hb-min 5 --hb-max 10
        connect + boot, then heartbeat every hb-min..hb-max s and answer every CALL from the CSMS at once
        ({"status": "Accepted"}); print READY once all are up (or at once on NOW), RESULT on STOP.
        --calls-log FILE records when each CALL arrived.
    python -m benchmarks.clients storm ... --count 2500 --rate 250 --hb-min 10 --hb-max 10
        a reconnect storm: print READY; on `GO {"t0":..}` open charger k at t0 + k/rate (open loop, one
        attempt each, --open-timeout for the handshake), boot it, then heartbeat every hb-min..hb-max s;
        print DONE once every charger was Accepted or failed, RESULT on STOP.

Every mode exits by itself after --max-seconds, or when the bench goes away (stdin closed).
Chargers are BENCH-00000, BENCH-00001, ...; with --auth the HTTP Basic password is key_for(identity).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

BOOT = {"chargePointVendor": "BenchVendor", "chargePointModel": "BenchModel"}


def identity_for(n: int) -> str:
    return f"BENCH-{n:05d}"


def key_for(identity: str) -> str:
    return f"bench-key-{identity}"


def emit(kind: str, data: dict[str, Any]) -> None:
    sys.stdout.write(f"{kind} {json.dumps(data, separators=(',', ':'))}\n")
    sys.stdout.flush()


class Control:
    """Lines from the bench on stdin, as an asyncio queue ("EOF" when the bench went away)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            word, _, rest = line.strip().partition(" ")
            try:
                data = json.loads(rest) if rest else {}
            except ValueError:
                data = {}
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (word, data))
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("EOF", {}))

    async def next(self, timeout: float) -> tuple[str, dict[str, Any]]:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout=max(0.01, timeout))
        except TimeoutError:
            return "TIMEOUT", {}


async def open_charger(base_url: str, identity: str, auth: bool, open_timeout: float) -> ClientConnection:
    headers = {}
    if auth:
        token = base64.b64encode(f"{identity}:{key_for(identity)}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return await connect(
        base_url.rstrip("/") + "/" + identity,
        subprotocols=["ocpp1.6"],
        additional_headers=headers,
        compression=None,
        open_timeout=open_timeout,
        ping_interval=None,
        close_timeout=2,
        max_size=1024 * 1024,
        user_agent_header=None,
    )


async def boot(ws: ClientConnection, timeout: float) -> str:
    await ws.send(json.dumps([2, "boot-1", "BootNotification", BOOT]))
    async with asyncio.timeout(timeout):
        while True:
            reply = json.loads(await ws.recv())
            if reply[0] == 3 and reply[1] == "boot-1":
                return str(reply[2].get("status"))
            if reply[0] == 4 and reply[1] == "boot-1":
                return f"CALLERROR:{reply[2]}"
            if reply[0] == 2:  # a CALL from the CSMS during boot: answer it
                await ws.send(json.dumps([3, reply[1], {"status": "Accepted"}]))


class Opener:
    """Opens and boots chargers with bounded concurrency (and one retry), counting what happened."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.connected = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.boot_status: dict[str, int] = {}
        self.conns: list[ClientConnection] = []
        self.sem = asyncio.Semaphore(args.concurrency)

    async def one(self, n: int) -> ClientConnection | None:
        identity = identity_for(n)
        for attempt in range(2):
            async with self.sem:
                try:
                    ws = await open_charger(self.args.url, identity, self.args.auth, self.args.open_timeout)
                    try:
                        status = await boot(ws, self.args.open_timeout)
                    except BaseException:
                        await ws.close()
                        raise
                    self.boot_status[status] = self.boot_status.get(status, 0) + 1
                    self.connected += 1
                    self.conns.append(ws)
                    return ws
                except Exception as exc:
                    name = type(exc).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1
                    if attempt == 0:
                        await asyncio.sleep(0.5 + random.random())
        self.failed += 1
        return None

    async def all(self, progress: bool) -> list[ClientConnection | None]:
        reporter = None
        if progress:

            async def report() -> None:
                while True:
                    await asyncio.sleep(1.0)
                    emit("PROGRESS", {"connected": self.connected, "failed": self.failed})

            reporter = asyncio.create_task(report())
        try:
            return await asyncio.gather(
                *(self.one(n) for n in range(self.args.first, self.args.first + self.args.count))
            )
        finally:
            if reporter is not None:
                reporter.cancel()

    def summary(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "failed": self.failed,
            "errors": self.errors,
            "boot": self.boot_status,
        }


async def close_all(conns: list[ClientConnection | None], timeout: float = 3.0) -> None:
    live = [ws for ws in conns if ws is not None]
    if live:
        await asyncio.wait([asyncio.ensure_future(ws.close()) for ws in live], timeout=timeout)


# --- load: closed loop -----------------------------------------------------------------------------
async def run_load(args: argparse.Namespace, control: Control, deadline: float) -> None:
    opener = Opener(args)
    conns = await opener.all(progress=False)
    emit("READY", opener.summary())
    word, go = await control.next(deadline - time.monotonic())
    if word != "GO":
        await close_all(conns)
        return
    t0, t1 = float(go["t0"]), float(go["t1"])
    t1 = min(t1, time.time() + max(0.0, deadline - time.monotonic() - 5))
    latencies: list[int] = []
    errors = {"bad_answer": 0, "closed": 0}

    async def client(ws: ClientConnection) -> None:
        n = 0
        try:
            while time.time() < t1:
                n += 1
                uid = str(n)
                start = time.perf_counter()
                if args.action == "MeterValues":
                    # A distinct sample each time (the product stores every one: no duplicate skipped).
                    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    await ws.send(
                        f'[2,"{uid}","MeterValues",{{"connectorId":1,"meterValue":[{{"timestamp":"{stamp}",'
                        f'"sampledValue":[{{"value":"{n}"}}]}}]}}]'
                    )
                else:
                    await ws.send(f'[2,"{uid}","Heartbeat",{{}}]')
                reply = json.loads(await ws.recv())
                elapsed = time.perf_counter() - start
                done = time.time()
                if reply[0] != 3 or reply[1] != uid:
                    errors["bad_answer"] += 1
                    continue
                if t0 <= done < t1:
                    latencies.append(int(elapsed * 1e6))
        except ConnectionClosed:
            errors["closed"] += 1

    await asyncio.gather(*(client(ws) for ws in conns if ws is not None))
    emit(
        "RESULT",
        {
            "count": len(latencies),
            "window_s": t1 - t0,
            "lat_us": latencies,
            "errors": errors,
            **opener.summary(),
        },
    )
    await close_all(conns)


# --- idle: hold connections ------------------------------------------------------------------------
async def run_idle(args: argparse.Namespace, control: Control, deadline: float) -> None:
    """READY once all are open; STOP (even while still opening) reports RESULT and exits."""
    opener = Opener(args)
    started = time.monotonic()
    opening = asyncio.create_task(opener.all(progress=True))
    command = asyncio.create_task(control.next(deadline - time.monotonic()))
    await asyncio.wait({opening, command}, return_when=asyncio.FIRST_COMPLETED)
    complete = opening.done()
    if not complete and command.result()[0] == "HOLD":  # stop opening; hold what is open
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
        command = asyncio.create_task(control.next(deadline - time.monotonic()))
    if complete or not command.done():
        emit(
            "READY",
            {**opener.summary(), "elapsed_s": round(time.monotonic() - started, 2), "complete": complete},
        )
        await command  # STOP, EOF or our own deadline
    still_open = sum(1 for ws in opener.conns if ws.state.name == "OPEN")
    emit("RESULT", {"still_open": still_open, "complete": complete, **opener.summary()})
    sys.stdout.flush()
    os._exit(0)  # the sockets close with the process; no need to close thousands one by one


# --- fleet: heartbeating chargers that answer commands -----------------------------------------------
async def run_fleet(args: argparse.Namespace, control: Control, deadline: float) -> None:
    """READY once all are open and booted, or at once on NOW; MARK resets the statistics; STOP reports."""
    stats = {"hb_sent": 0, "hb_answered": 0, "calls_answered": 0, "callerrors": 0, "disconnected": 0}
    hb_lat: list[int] = []
    calls: dict[str, int] = {}
    # When each CALL from the CSMS arrived and was answered (wall clock, comparable across the bench's
    # processes): the bench splits a command's latency into stages with these.
    call_times: dict[str, list[float]] = {}
    stop = asyncio.Event()

    calls_log = open(args.calls_log, "a", buffering=1) if args.calls_log else None  # noqa: SIM115

    async def reader(ws: ClientConnection, pending: dict[str, float], identity: str) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg[0] == 2:
                    received = time.time()
                    if calls_log is not None:  # when each CALL arrived (driver start latency)
                        calls_log.write(f"{identity} {msg[2]} {received:.6f}\n")
                    await ws.send(json.dumps([3, msg[1], {"status": "Accepted"}]))
                    call_times[msg[1]] = [received, time.time()]
                    stats["calls_answered"] += 1
                    calls[msg[2]] = calls.get(msg[2], 0) + 1
                elif msg[0] == 3:
                    sent = pending.pop(msg[1], None)
                    if sent is not None:
                        stats["hb_answered"] += 1
                        hb_lat.append(int((time.perf_counter() - sent) * 1e6))
                else:
                    stats["callerrors"] += 1
        except ConnectionClosed:
            pass
        if not stop.is_set():
            stats["disconnected"] += 1

    async def heartbeats(ws: ClientConnection, pending: dict[str, float]) -> None:
        interval = random.uniform(args.hb_min, args.hb_max)
        await asyncio.sleep(random.uniform(0, interval))
        n = 0
        try:
            while not stop.is_set():
                n += 1
                uid = f"hb{n}"
                pending[uid] = time.perf_counter()
                await ws.send(f'[2,"{uid}","Heartbeat",{{}}]')
                stats["hb_sent"] += 1
                if len(pending) > 5:  # the server stopped answering; do not grow without bound
                    pending.clear()
                await asyncio.sleep(interval)
        except ConnectionClosed:
            pass

    tasks: list[asyncio.Task] = []
    opener = Opener(args)

    async def start_one(n: int) -> None:
        ws = await opener.one(n)
        if ws is not None:
            pending: dict[str, float] = {}
            tasks.append(asyncio.create_task(reader(ws, pending, identity_for(n))))
            tasks.append(asyncio.create_task(heartbeats(ws, pending)))

    started = time.monotonic()
    opening = asyncio.create_task(
        asyncio.wait(
            [asyncio.ensure_future(start_one(n)) for n in range(args.first, args.first + args.count)]
        )
    )
    ready_sent = False
    command: asyncio.Task = asyncio.create_task(control.next(deadline - time.monotonic()))
    while True:
        await asyncio.wait(
            {opening, command} if not ready_sent else {command}, return_when=asyncio.FIRST_COMPLETED
        )
        if not command.done():  # all open
            emit("READY", {**opener.summary(), "elapsed_s": round(time.monotonic() - started, 2)})
            ready_sent = True
            continue
        word, _data = command.result()
        if word == "NOW" and not ready_sent:
            emit(
                "READY",
                {**opener.summary(), "elapsed_s": round(time.monotonic() - started, 2), "complete": False},
            )
            ready_sent = True
        elif word == "MARK":  # measure the steady state only
            hb_lat.clear()
            call_times.clear()
            for key in stats:
                if key != "disconnected":
                    stats[key] = 0
        elif word != "NOW":
            break
        command = asyncio.create_task(control.next(deadline - time.monotonic()))
    stop.set()
    open_now = sum(1 for ws in opener.conns if ws.state.name == "OPEN")
    hb_lat.sort()

    def pct(p: float) -> float | None:
        return round(hb_lat[min(len(hb_lat) - 1, int(p / 100 * len(hb_lat)))] / 1000, 2) if hb_lat else None

    emit(
        "RESULT",
        {
            **stats,
            "open": open_now,
            "calls": calls,
            "call_times": call_times,
            "hb_p50_ms": pct(50),
            "hb_p99_ms": pct(99),
            "hb_max_ms": round(hb_lat[-1] / 1000, 2) if hb_lat else None,
            **opener.summary(),
        },
    )
    sys.stdout.flush()
    os._exit(0)


# --- storm: chargers arriving at a fixed rate ------------------------------------------------------
async def run_storm(args: argparse.Namespace, control: Control, deadline: float) -> None:
    """Open-loop arrivals: charger k of this process starts at t0 + k / rate whatever the server does.
    One attempt each (a handshake that takes longer than --open-timeout is a failure, as it is for a
    charger, which then waits and retries). Times are wall clock (time.time), comparable across the
    bench's processes; latencies are perf_counter differences."""
    emit("READY", {"count": args.count})
    word, go = await control.next(deadline - time.monotonic())
    if word != "GO":
        return
    t0 = float(go["t0"])
    stop = asyncio.Event()
    accepted_at: list[float] = []  # seconds after t0 when each charger had its Accepted
    connect_ms: list[float] = []
    boot_ms: list[float] = []
    hb_ms: list[float] = []
    errors: dict[str, int] = {}
    statuses: dict[str, int] = {}
    outcomes = 0
    conns: list[ClientConnection] = []
    all_done = asyncio.Event()

    def outcome() -> None:
        nonlocal outcomes
        outcomes += 1
        if outcomes == args.count:
            all_done.set()

    async def heartbeats(ws: ClientConnection) -> None:
        interval = random.uniform(args.hb_min, args.hb_max)
        wait = random.uniform(0, interval)  # the fleet's heartbeats spread over the interval, as in life
        n = 0
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                wait = interval
                if stop.is_set():
                    return
                n += 1
                uid = f"hb{n}"
                sent = time.perf_counter()
                await ws.send(f'[2,"{uid}","Heartbeat",{{}}]')
                while True:
                    reply = json.loads(await ws.recv())
                    if reply[0] == 2:  # a CALL from the CSMS: answer it
                        await ws.send(json.dumps([3, reply[1], {"status": "Accepted"}]))
                        continue
                    if reply[1] == uid:
                        hb_ms.append((time.perf_counter() - sent) * 1000)
                        break
        except (ConnectionClosed, ValueError):
            if not stop.is_set():
                errors["closed_after_boot"] = errors.get("closed_after_boot", 0) + 1

    async def one(n: int, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        identity = identity_for(n)
        began = time.perf_counter()
        try:
            ws = await open_charger(args.url, identity, args.auth, args.open_timeout)
        except Exception as exc:
            name = "handshake_timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
            outcome()
            return
        opened = time.perf_counter()
        connect_ms.append((opened - began) * 1000)
        conns.append(ws)
        try:
            status = await boot(ws, args.boot_timeout)
        except Exception as exc:
            name = "boot_timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
            outcome()
            return
        boot_ms.append((time.perf_counter() - opened) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
        if status == "Accepted":
            accepted_at.append(time.time() - t0)
        outcome()
        await heartbeats(ws)

    per_s = max(args.rate, 0.001)
    tasks = [
        asyncio.create_task(one(n, t0 + k / per_s))
        for k, n in enumerate(range(args.first, args.first + args.count))
    ]
    command = asyncio.create_task(control.next(deadline - time.monotonic()))
    done_wait = asyncio.create_task(all_done.wait())
    await asyncio.wait({done_wait, command}, return_when=asyncio.FIRST_COMPLETED)
    emit("DONE", {"outcomes": outcomes, "elapsed_s": round(time.time() - t0, 3)})
    if not command.done():
        await command  # STOP, EOF or our own deadline
    stop.set()
    for task in tasks:
        task.cancel()
    emit(
        "RESULT",
        {
            "count": args.count,
            "accepted": len(accepted_at),
            "failed": args.count - len(accepted_at),
            "statuses": statuses,
            "errors": errors,
            "accepted_at": [round(x, 4) for x in accepted_at],
            "connect_ms": [round(x, 2) for x in connect_ms],
            "boot_ms": [round(x, 2) for x in boot_ms],
            "hb_ms": [round(x, 2) for x in hb_ms],
        },
    )
    sys.stdout.flush()
    os._exit(0)  # the sockets close with the process


async def main(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.max_seconds
    control = Control()
    runner = {"load": run_load, "idle": run_idle, "fleet": run_fleet, "storm": run_storm}[args.mode]
    try:
        await asyncio.wait_for(runner(args, control, deadline), timeout=args.max_seconds)
    except TimeoutError:
        emit("ABORTED", {"reason": f"max-seconds {args.max_seconds} reached"})
    sys.stdout.flush()
    os._exit(0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clients")
    parser.add_argument("mode", choices=["load", "idle", "fleet", "storm"])
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/ocpp/ (loopback only)")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--auth", action="store_true", help="HTTP Basic (security profile 1)")
    parser.add_argument("--concurrency", type=int, default=50, help="connections being opened at once")
    parser.add_argument("--open-timeout", type=float, default=30)
    parser.add_argument("--boot-timeout", type=float, default=60, help="storm: wait for the boot answer")
    parser.add_argument(
        "--action", choices=["Heartbeat", "MeterValues"], default="Heartbeat", help="load: the message sent"
    )
    parser.add_argument("--rate", type=float, default=250, help="storm: chargers arriving per second")
    parser.add_argument("--hb-min", type=float, default=5)
    parser.add_argument("--hb-max", type=float, default=10)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument(
        "--calls-log", default="", help="fleet: append '<identity> <action> <unix time>' per CALL"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    from urllib.parse import urlsplit

    from benchmarks.common import is_loopback_host, raise_fd_limit

    ns = parse_args()
    if not is_loopback_host(urlsplit(ns.url).hostname):
        raise SystemExit("clients: only loopback addresses may be targeted")
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(ns))
    else:
        uvloop.run(main(ns))
