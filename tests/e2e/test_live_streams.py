"""Driver live streams (GET /api/v1/sessions/{id}/live) against real uvicorn servers.

A stream holds no database connection while it waits: with more streams open than the server's
database pool has connections, the driver API, the admin and an OCPP handshake still answer, and when
the clients leave every connection is back in the pool. Open streams are capped per driver over all
processes (the cap frees itself when a process dies) with 429 too_many_streams, and streams still
follow their session to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.charging import live as driver_live
from apps.charging.choices import DriverSessionStatus
from apps.charging.models import DriverSession
from apps.charging.services import session_stop
from apps.stations.choices import ConnectorStatus, OcppProtocol
from cpo import clock
from cpo.live import lease_count
from tests.charging.test_api import charger_starts, meter, online, start
from tests.e2e.conftest import RawCharger, Server, eventually, orm
from tests.factories import ChargePointFactory, ConnectorFactory, DriverFactory, EvseFactory, UserFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

POOL = 3
PER_DRIVER = 3
# Small pool with a short wait for a free connection; a keep-alive (and lease refresh) every second.
LIVE_ENV = {
    "DB_POOL_MAX_SIZE": str(POOL),
    "DB_POOL_TIMEOUT_S": "3",
    "CPO_DRIVER_LIVE_POLL_S": "1",
    "CPO_DRIVER_LIVE_MAX_PER_DRIVER": str(PER_DRIVER),
}
STAFF_PASSWORD = "correct-horse-battery"  # UserFactory's


@pytest.fixture
def live_a(servers, transactional_db) -> Server:
    return servers.get("live-a", env=LIVE_ENV)


@pytest.fixture
def live_b(servers, transactional_db) -> Server:
    return servers.get("live-b", env=LIVE_ENV)


# --- a raw SSE client ------------------------------------------------------------------------------
@dataclass
class Stream:
    """One open live stream: its status, and the events read so far."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    buffer: bytes = b""
    ended: bool = False

    async def next_event(self, timeout: float = 15.0) -> tuple[str, dict[str, Any]]:
        """The next `event:` block (keep-alive comments skipped), reading the chunked body as needed."""
        async with asyncio.timeout(timeout):
            while True:
                match = re.search(rb"event: (\w+)\ndata: (.*)\n\n", self.buffer)
                if match:
                    self.buffer = self.buffer[match.end() :]
                    event = (match.group(1).decode(), json.loads(match.group(2)))
                    self.events.append(event)
                    return event
                chunk = await self.reader.read(65536)
                if not chunk:
                    self.ended = True
                    raise EOFError("the server closed the stream")
                self.buffer += chunk

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def open_stream(server: Server, session_id: int, token: str) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        (
            f"GET /api/v1/sessions/{session_id}/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=15)
    status = int(head.split(b" ", 2)[1])
    stream = Stream(reader, writer, status)
    if status != 200:  # a JSON error with Content-Length
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        raw = await asyncio.wait_for(reader.readexactly(length), timeout=15)
        stream.body = json.loads(raw) if b"application/json" in head.lower() else {"raw": raw.decode()[:200]}
        await stream.close()
    return stream


# --- data ----------------------------------------------------------------------------------------------
def _charger_and_sessions(identity: str, drivers: int) -> tuple[Any, list[tuple[int, str]]]:
    """A charger and `drivers` drivers with an ACTIVE session each: [(session id, token)]."""
    cp = ChargePointFactory(identity=identity, ocpp_protocol=OcppProtocol.OCPP16)
    out = []
    for n in range(drivers):
        driver = DriverFactory()
        session = DriverSession.objects.create(
            driver=driver,
            organisation=cp.organisation,
            charge_point=cp,
            evse_id=n + 1,
            status=DriverSessionStatus.ACTIVE,
        )
        out.append((session.pk, str(AccessToken.for_user(driver))))
    return cp, out


def _sync_checks(server: Server, session_id: int, token: str, staff_email: str) -> dict[str, Any]:
    """The driver API and the admin (log in, then the index: both read the database)."""
    base = f"http://127.0.0.1:{server.port}"
    results: dict[str, Any] = {}
    api = requests.get(
        f"{base}/api/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    results["api"] = api.status_code
    http = requests.Session()
    login = http.get(f"{base}/admin/login/", timeout=20)
    results["admin_login_page"] = login.status_code
    posted = http.post(
        f"{base}/admin/login/?next=/admin/",
        data={
            "username": staff_email,
            "password": STAFF_PASSWORD,
            "csrfmiddlewaretoken": http.cookies.get("csrftoken", ""),
        },
        headers={"Referer": f"{base}/admin/login/"},
        timeout=20,
        allow_redirects=False,
    )
    results["admin_login"] = posted.status_code
    results["admin_index"] = http.get(f"{base}/admin/", timeout=20, allow_redirects=False).status_code
    return results


async def _everything_answers(
    server: Server, session_id: int, token: str, staff_email: str, identity: str
) -> None:
    results = await asyncio.to_thread(_sync_checks, server, session_id, token, staff_email)
    assert results == {"api": 200, "admin_login_page": 200, "admin_login": 302, "admin_index": 200}, results
    charger = await RawCharger.open(server, identity)
    try:
        await charger.boot()  # BootNotification: Accepted (the gateway writes the boot to the database)
    finally:
        await charger.close()


async def _pool(server: Server) -> dict[str, int]:
    def read() -> dict[str, int]:
        answer = requests.get(f"http://127.0.0.1:{server.port}/readyz", timeout=20)
        return answer.json()["database_pool"]

    return await asyncio.to_thread(read)


# --- the pool ------------------------------------------------------------------------------------------
async def test_more_streams_than_pool_connections_leave_api_admin_and_ocpp_answering(live_a):
    cp, sessions = await orm(lambda: _charger_and_sessions("LIVE-POOL-1", 2))()
    staff = await orm(lambda: UserFactory(email="ops@example.com", is_staff=True, is_superuser=True))()
    # twice the pool: PER_DRIVER streams for each of the two drivers
    streams = [await open_stream(live_a, pk, token) for pk, token in sessions for _ in range(PER_DRIVER)]
    assert len(streams) > POOL
    assert [s.status for s in streams] == [200] * len(streams), [s.body for s in streams]
    firsts = await asyncio.gather(*(s.next_event() for s in streams))
    assert all(e[0] == "session" and e[1]["status"] == "ACTIVE" for e in firsts), firsts

    # with every stream open: the API, the admin and an OCPP handshake answer, more than once
    for _ in range(2):
        await _everything_answers(live_a, sessions[0][0], sessions[0][1], staff.email, cp.identity)
    pool = await _pool(live_a)
    assert pool["waiting"] == 0 and pool["size"] <= POOL, pool

    for s in streams:
        await s.close()
    for pk, _token in sessions:
        driver_id = await orm(lambda pk=pk: DriverSession.objects.get(pk=pk).driver_id)()
        await eventually(
            lambda driver_id=driver_id: _is(lease_count(driver_live.driver_key(driver_id)), 0),
            what="the streams' leases given back",
        )
    # every connection is back in the pool (readyz reads the pool before its own check takes one)
    await eventually(lambda: _pool_idle(live_a), what="all pool connections free")
    await _everything_answers(live_a, sessions[1][0], sessions[1][1], staff.email, cp.identity)
    # and the streams can be opened again
    again = [await open_stream(live_a, sessions[0][0], sessions[0][1]) for _ in range(PER_DRIVER)]
    assert [s.status for s in again] == [200] * PER_DRIVER
    for s in again:
        assert (await s.next_event())[0] == "session"
        await s.close()


async def _is(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def _pool_idle(server: Server) -> bool:
    pool = await _pool(server)
    return pool["available"] == pool["size"] and pool["waiting"] == 0


# --- caps -----------------------------------------------------------------------------------------------
async def test_streams_per_driver_are_capped_over_processes_and_freed_when_a_process_dies(live_a, live_b):
    _cp, sessions = await orm(lambda: _charger_and_sessions("LIVE-CAP-1", 2))()
    (pk, token), (other_pk, other_token) = sessions
    on_a = [await open_stream(live_a, pk, token) for _ in range(PER_DRIVER - 1)]
    on_b = await open_stream(live_b, pk, token)
    assert [s.status for s in [*on_a, on_b]] == [200] * PER_DRIVER
    for s in [*on_a, on_b]:
        assert (await s.next_event())[0] == "session"

    for server in (live_a, live_b):
        refused = await open_stream(server, pk, token)
        assert refused.status == 429, refused.body
        assert refused.body["code"] == "too_many_streams" and refused.body["fields"] == {}, refused.body
        assert refused.body["detail"]
    # another driver is not affected
    other = await open_stream(live_a, other_pk, other_token)
    assert other.status == 200
    await other.close()

    # a stream that ends frees its place
    await on_a[0].close()
    reopened = await eventually(lambda: _opened(live_b, pk, token), what="a place freed by a closed stream")
    assert (await reopened.next_event())[0] == "session"

    # a process that dies: its places lapse (no counter drifts upward), the others stay
    live_b.process.send_signal(signal.SIGKILL)
    live_b.process.wait(timeout=10)
    driver_id = await orm(lambda: DriverSession.objects.get(pk=pk).driver_id)()
    await eventually(
        lambda: _is(lease_count(driver_live.driver_key(driver_id)), PER_DRIVER - 2),
        timeout=30,
        what="the dead process's leases lapsed",
    )
    again = await open_stream(live_a, pk, token)
    assert again.status == 200
    for s in [*on_a[1:], again]:
        await s.close()


async def _opened(server: Server, pk: int, token: str) -> Stream | None:
    stream = await open_stream(server, pk, token)
    return stream if stream.status == 200 else None


# --- what a stream shows ------------------------------------------------------------------------------
async def test_streams_follow_the_session_to_its_end(live_a):

    cp, token, session_id = await orm(_started_session)()
    streams = [await open_stream(live_a, session_id, token) for _ in range(2)]
    for s in streams:
        assert s.status == 200
        event, body = await s.next_event()
        assert event == "session" and body["status"] == "STARTING" and body["transitions"] == []
    charging = await orm(lambda: charger_starts(cp, session_id, meter_start=0))()
    await orm(lambda: meter(cp, charging, 1500, watts=7000))()
    await orm(
        lambda: session_stop(
            charge_point_id=cp.pk,
            transaction_ref=charging.transaction_ref,
            meter_stop_wh=2500,
            stopped_at_charger=clock.now(),
            received_at=clock.now(),
        )
    )()
    for s in streams:
        seen = []
        while True:
            event, body = await s.next_event()
            seen.append((event, body))
            if event != "session":
                break
        sessions = [b for e, b in seen if e == "session"]
        assert ("ACTIVE", 1500, 7000) in [(b["status"], b["energy_wh"], b["power_w"]) for b in sessions], seen
        assert sessions[-1]["status"] == "COMPLETED" and sessions[-1]["energy_wh"] == 2500, seen
        assert seen[-1] == ("end", {"id": session_id, "status": "COMPLETED"})
        with pytest.raises(EOFError):  # the server closes the stream after `end`
            await s.next_event(timeout=10)
        await s.close()


def _started_session() -> tuple[Any, str, int]:
    cp = ChargePointFactory(identity="LIVE-FOLLOW-1", ocpp_protocol=OcppProtocol.OCPP16)
    ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1), status=ConnectorStatus.AVAILABLE)
    online(cp)
    driver = DriverFactory()
    token = str(AccessToken.for_user(driver))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return cp, token, start(api, cp).json()["id"]
