"""Two server processes sharing Redis: commands from a third process (this one) reach chargers on either,
and a charger that moves from one server to the other keeps receiving them."""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from django.conf import settings
from websockets.exceptions import ConnectionClosed

from apps.ocpp_gateway import presence
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.services import presence_flush
from apps.stations.models import ChargePoint
from tests.e2e.conftest import KEY, RawCharger, command, eventually, orm
from tests.factories import ChargePointFactory, OrganisationFactory
from tools.simulator import Charger, ChargerOptions

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture
def charge_points(server, server_b, caplog):
    caplog.set_level(logging.WARNING, logger="ocpp")
    org = OrganisationFactory(slug="two-org")
    for identity in ("ON-A", "ON-B", "MOVER"):
        ChargePointFactory(identity=identity, organisation=org)


async def _value(value):
    return value


@contextlib.asynccontextmanager
async def redis_commands() -> AsyncIterator[list[str]]:
    """The commands the test's Redis database runs while the block is open (Redis MONITOR, filtered to
    that database): how the test sees what a server process did in Redis, e.g. its late presence release."""
    client = aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    seen: list[str] = []
    watching = asyncio.Event()

    async def watch() -> None:
        async with client.monitor() as monitor:
            watching.set()
            async for command in monitor.listen():
                if command.get("db") == db:
                    seen.append(command["command"])

    task = asyncio.create_task(watch())
    try:
        await eventually(lambda: _value(watching.is_set() or task.done()), what="Redis MONITOR started")
        if task.done():
            task.result()  # raises what stopped it
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


def _released(seen: list[str], identity: str, epoch: int) -> bool:
    """True once a connection ran presence.release for `identity` with `epoch` (a no-op unless it still
    held presence with that epoch)."""
    tail = f" {presence.PREFIX}{identity} {presence.SEEN_KEY} {epoch} {identity}"
    return any(c.startswith("EVAL") and c.endswith(tail) for c in seen)


async def test_a_command_from_a_third_process_reaches_chargers_on_both_servers(
    server, server_b, charge_points
):
    chargers = [
        Charger(ChargerOptions(identity="ON-A", url=server.url, key=KEY)),
        Charger(ChargerOptions(identity="ON-B", url=server_b.url, key=KEY)),
    ]
    tasks = [asyncio.create_task(c.run()) for c in chargers]
    try:
        await eventually(lambda: _value(all(c.accepted for c in chargers)), what="both chargers booted")
        on_a, on_b = await orm(presence.lookup)("ON-A"), await orm(presence.lookup)("ON-B")
        assert (on_a.server, on_b.server) == (server.server_id, server_b.server_id)

        outcomes = await asyncio.gather(
            command("ON-A", "GetConfiguration", {"key": ["NumberOfConnectors"]}),
            command("ON-B", "GetConfiguration", {"key": ["NumberOfConnectors"]}),
        )
        for outcome in outcomes:
            assert outcome["status"] == CommandStatus.ANSWERED, outcome
            assert outcome["response"]["configurationKey"] == [
                {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
            ]
    finally:
        for c in chargers:
            c.stop()
        await asyncio.gather(*tasks)


async def _answer_next_call(charger: RawCharger, action: str, response: dict) -> list:
    call = await charger.recv(timeout=15)
    assert call[0] == 2 and call[2] == action, call
    await charger.send(json.dumps([3, call[1], response]))
    return call


async def test_a_charger_moving_between_servers_keeps_receiving_commands(server, server_b, charge_points):
    old = await RawCharger.open(server, "MOVER")
    await old.boot()
    first = await orm(presence.lookup)("MOVER")
    assert first.server == server.server_id

    pending = asyncio.create_task(command("MOVER", "ClearCache", {}))
    await _answer_next_call(old, "ClearCache", {"status": "Accepted"})
    assert (await pending)["status"] == CommandStatus.ANSWERED

    async with redis_commands() as seen:
        # The charger's network moves: it connects to server B while its old socket to A still lingers.
        new = await RawCharger.open(server_b, "MOVER")
        await new.boot()
        moved = await orm(presence.lookup)("MOVER")
        assert moved.server == server_b.server_id and moved.epoch > first.epoch

        # Server A is told to drop the replaced socket; its late disconnect must not take presence away.
        with pytest.raises(ConnectionClosed) as closed:
            await old.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        # Releasing presence for its own (old) epoch is the last thing server A's disconnect does.
        await eventually(
            lambda: _value(_released(seen, "MOVER", first.epoch)), what="server A's disconnect handled"
        )
    still = await orm(presence.lookup)("MOVER")
    assert (still.server, still.epoch, still.channel) == (moved.server, moved.epoch, moved.channel)
    flushed = await orm(presence_flush)()
    assert flushed["online"] >= 1
    assert await orm(lambda: ChargePoint.objects.get(identity="MOVER").is_online)()

    pending = asyncio.create_task(command("MOVER", "Reset", {"type": "Soft"}))
    call = await _answer_next_call(new, "Reset", {"status": "Accepted"})
    outcome = await pending
    assert outcome["status"] == CommandStatus.ANSWERED and outcome["response"] == {"status": "Accepted"}
    assert call[3] == {"type": "Soft"}
    await new.close()


async def test_an_abrupt_drop_on_one_server_then_a_reconnect_to_the_other(server, server_b, charge_points):
    old = await RawCharger.open(server, "MOVER")
    await old.boot()
    first = await orm(presence.lookup)("MOVER")
    async with redis_commands() as seen:
        old.ws.transport.abort()  # the TCP connection dies without a closing handshake

        new = await RawCharger.open(server_b, "MOVER")
        await new.boot()
        moved = await orm(presence.lookup)("MOVER")

        # Whenever server A notices the dead socket (it releases presence for its own epoch), presence
        # stays with server B.
        await eventually(
            lambda: _value(_released(seen, "MOVER", first.epoch)), what="server A noticed the dead socket"
        )
    current = await orm(presence.lookup)("MOVER")
    assert (current.server, current.epoch) == (server_b.server_id, moved.epoch)

    pending = asyncio.create_task(command("MOVER", "GetLocalListVersion", {}))
    await _answer_next_call(new, "GetLocalListVersion", {"listVersion": 3})
    outcome = await pending
    assert outcome["status"] == CommandStatus.ANSWERED and outcome["response"] == {"listVersion": 3}
    await new.close()
