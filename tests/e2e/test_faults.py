"""Fault tests: a server process killed (SIGKILL) while chargers run sessions. The chargers reach the
product through a small TCP balancer (as nginx would be in front of two processes), reconnect to the
survivor, and nothing a charger saw acknowledged is lost or duplicated: every acknowledged start, meter
value and stop is stored exactly once and every session ends with the energy its meter says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession, MeterSample
from tests.e2e.conftest import KEY, _server_env, eventually, orm, start_server
from tests.factories import (
    ChargePointFactory,
    IdTokenFactory,
    OrganisationFactory,
)
from tests.processes import free_port
from tools.simulator import Charger, ChargerOptions, Fleet
from tools.simulator.fleet import fleet_id_tags

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

# 500 in the issue; the default keeps the suite's time on a 2-core machine (CPO_FAULT_CHARGERS=500).
CHARGERS = int(os.environ.get("CPO_FAULT_CHARGERS", "60"))
TAG_PREFIX = "04FA"  # each charger its own driver tag (one tag on many chargers is ConcurrentTx)


class Balancer:
    """Round-robin TCP forwarding to the backends that accept a connection (a dead one is skipped)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.turn = 0
        self.server: asyncio.base_events.Server | None = None
        self.pipes: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _attempt in range(len(self.ports)):
            port = self.ports[self.turn % len(self.ports)]
            self.turn += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            for source, target in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.create_task(self._pipe(source, target))
                self.pipes.add(task)
                task.add_done_callback(self.pipes.discard)
            return
        writer.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                target.write(data)
                await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                target.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _acknowledged(fleet: Fleet) -> dict[str, list[tuple[Any, Any]]]:
    found: dict[str, list[tuple[Any, Any]]] = {}
    for charger in fleet.chargers:
        for payload, answer in charger.acknowledged:
            found.setdefault(type(payload).__name__, []).append((charger.identity, payload, answer))
    return found


def _stored(prefix: str) -> tuple[list[dict[str, Any]], Counter]:
    sessions = list(
        ChargingSession.objects.filter(charge_point__identity__startswith=prefix).values(
            "pk",
            "charge_point__identity",
            "ocpp16_transaction_id",
            "meter_start_wh",
            "meter_stop_wh",
            "status",
        )
    )
    samples = Counter(
        MeterSample.objects.filter(charge_point__identity__startswith=prefix).values_list(
            "session__ocpp16_transaction_id", "sampled_at", "measurand", "phase", "location"
        )
    )
    return sessions, samples


async def test_a_killed_server_loses_and_duplicates_nothing_a_charger_saw_acknowledged(
    servers, transactional_db
):
    logging.getLogger("ocpp").setLevel(logging.ERROR)
    logging.getLogger("tools.simulator").setLevel(logging.ERROR)
    doomed, survivor = servers.get("fault-a"), servers.get("fault-b")
    prefix = "FAULT-"

    def register() -> None:
        org = OrganisationFactory(slug="fault-org")
        for n in range(1, CHARGERS + 1):
            ChargePointFactory(identity=f"{prefix}{n:05d}", organisation=org)
            IdTokenFactory(uid=fleet_id_tags(TAG_PREFIX, n, 1)[0])

    await orm(register)()
    balancer = Balancer([doomed.port, survivor.port])
    port = await balancer.start()
    fleet = Fleet(
        url=f"ws://127.0.0.1:{port}/ocpp",
        count=CHARGERS,
        prefix=prefix,
        key=KEY,
        connectors=1,
        id_tag_prefix=TAG_PREFIX,
        meter_interval_s=2,
        heartbeat_interval_s=300,
        connect_rate=100,
        reconnect_base_s=0.5,
        reconnect_max_s=2.0,
        call_timeout_s=20,
        record_acknowledged=True,
    )
    try:
        fleet.start()
        await eventually(
            lambda: _value(fleet.connected == CHARGERS), what="every charger booted", timeout=120
        )
        started = await asyncio.gather(
            *(c.start_transaction(1, c.options.id_tags[0], authorize=False) for c in fleet.chargers)
        )
        assert all(started)
        # Sessions run; meter values flow to both servers. Kill one once every charger had one acknowledged.
        await eventually(
            lambda: _value(all(_count(c, "MeterValues") >= 1 for c in fleet.chargers)),
            what="a meter value acknowledged for every charger",
            timeout=120,
        )
        doomed.process.kill()
        doomed.process.wait(timeout=10)
        # The doomed server's chargers notice, reconnect through the balancer to the survivor, go on.
        await eventually(
            lambda: _value(all(_count(c, "MeterValues") >= 3 for c in fleet.chargers)),
            what="two more meter values acknowledged for every charger after the kill",
            timeout=180,
        )
        not_running = [
            (c.identity, [type(p).__name__ for p, _a in c.acknowledged][-6:], c.stats)
            for c in fleet.chargers
            if c.connectors[1].transaction is None
        ]
        assert not not_running, not_running[:3]
        for charger in fleet.chargers:
            assert charger.stop_transaction(1, reason="Local", id_tag=charger.options.id_tags[0])
        drained = await asyncio.gather(*(c.wait_queue_empty(120) for c in fleet.chargers))
        stuck = [
            (
                c.identity,
                c.accepted,
                c.stats.connects,
                len(c._outbox),
                [type(p).__name__ for p, _a in c.acknowledged],
            )
            for c, done in zip(fleet.chargers, drained, strict=True)
            if not done
        ]
        assert not stuck, f"queued transaction messages not delivered: {stuck[:3]}"
    finally:
        await fleet.stop()
        await balancer.close()
        servers.get("fault-a").stop()  # restarted by get(): leave no process behind for later tests
        survivor.stop()

    acked = _acknowledged(fleet)
    sessions, samples = await orm(_stored)(prefix)
    by_tx = {s["ocpp16_transaction_id"]: s for s in sessions}

    # Starts: exactly the acknowledged ones, each once, with the charger's meter start.
    starts = acked["StartTransaction"]
    assert len(starts) == CHARGERS
    assert len(sessions) == CHARGERS, "a session per acknowledged start, no duplicate from a re-sent start"
    for identity, payload, answer in starts:
        stored = by_tx[answer.transaction_id]
        assert stored["charge_point__identity"] == identity
        assert stored["meter_start_wh"] == payload.meter_start

    # Meter values: every acknowledged sample stored exactly once.
    assert len(acked["MeterValues"]) >= 3 * CHARGERS
    for _identity, payload, _answer in acked["MeterValues"]:
        for meter_value in payload.meter_value:
            at = _ts(meter_value["timestamp"])
            for sampled in meter_value["sampledValue"]:
                key = (
                    payload.transaction_id,
                    at,
                    sampled.get("measurand", "Energy.Active.Import.Register"),
                    sampled.get("phase", ""),
                    sampled.get("location", ""),
                )
                assert samples[key] == 1, (key, samples[key])
    assert max(samples.values()) == 1, "no sample stored twice"

    # Stops: every session completed with the energy its meter says.
    stops = acked["StopTransaction"]
    assert len(stops) == CHARGERS
    for _identity, payload, _answer in stops:
        stored = by_tx[payload.transaction_id]
        assert stored["status"] == SessionStatus.COMPLETED
        assert stored["meter_stop_wh"] == payload.meter_stop
        assert stored["meter_stop_wh"] - stored["meter_start_wh"] > 0
    # The kill really cut connections: some chargers connected more than once.
    assert sum(c.stats.connects for c in fleet.chargers) > CHARGERS


def _count(charger: Any, action: str) -> int:
    return sum(1 for payload, _answer in charger.acknowledged if type(payload).__name__ == action)


async def _value(value: Any) -> Any:
    return value


# --- Redis restarted mid-run ------------------------------------------------------------------------------
class PrivateRedis:
    """A Redis server of this test alone (restarting the shared one would disturb every other run),
    with an append-only file, as production runs it (docker/compose.yaml)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _ocpp_call(env: dict[str, str], identity: str, action: str, payload: dict[str, Any]) -> tuple[int, str]:
    """`manage.py ocpp_call` in its own process, on the product's Redis of this test."""
    done = subprocess.run(
        [sys.executable, "manage.py", "ocpp_call", identity, action, json.dumps(payload), "--timeout", "10"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


async def test_the_product_recovers_by_itself_when_redis_restarts(servers, transactional_db, tmp_path):
    """Redis (channel layer, presence, outcomes) restarts while a charger is connected: without any
    restart of the product, its health comes back and commands reach the charger again."""
    private = PrivateRedis(tmp_path)
    private.start()
    env = {**_server_env(servers.media_root), "REDIS_URL": private.url}
    server = start_server("redis-restart", servers.log_dir, servers.media_root, {"REDIS_URL": private.url})
    identity = "REDIS-RESTART-1"
    await orm(lambda: ChargePointFactory(identity=identity, organisation=OrganisationFactory()))()
    charger = Charger(
        ChargerOptions(identity=identity, url=server.url, key=KEY, reconnect_base_s=0.2, reconnect_max_s=1.0)
    )
    running = asyncio.create_task(charger.run())
    try:
        await eventually(lambda: _value(charger.accepted), what="the charger booted")
        code, output = await asyncio.to_thread(_ocpp_call, env, identity, "ClearCache", {})
        assert code == 0 and '"Accepted"' in output, output

        private.stop()
        code, output = await asyncio.to_thread(_ocpp_call, env, identity, "ClearCache", {})
        assert code != 0, "no command can go out while Redis is down"
        ready = await asyncio.to_thread(_status, f"http://127.0.0.1:{server.port}/readyz")
        assert ready == 503
        private.start()

        async def command_answered() -> bool:
            code, output = await asyncio.to_thread(_ocpp_call, env, identity, "ClearCache", {})
            return code == 0 and '"Accepted"' in output

        await eventually(
            command_answered, what="a command answered after Redis came back", timeout=90, interval=1
        )
        ready = await asyncio.to_thread(_status, f"http://127.0.0.1:{server.port}/readyz")
        assert ready == 200
        assert server.process.poll() is None, "the server process kept running throughout"
    finally:
        charger.stop()
        with contextlib.suppress(Exception):
            await running
        server.stop()
        private.stop()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
