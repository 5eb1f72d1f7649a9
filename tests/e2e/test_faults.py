"""Fault tests: a server process killed (SIGKILL) while chargers run sessions. The chargers reach the
product through a small TCP balancer (as nginx would be in front of two processes), reconnect to the
survivor, and nothing a charger saw acknowledged is lost or duplicated: every acknowledged start, meter
value and stop is stored exactly once and every session ends with the energy its meter says."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession, MeterSample
from tests.e2e.conftest import KEY, eventually, orm
from tests.factories import ChargePointFactory, IdTokenFactory, OrganisationFactory
from tools.simulator import Fleet
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
