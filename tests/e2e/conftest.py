"""End-to-end fixtures: real uvicorn servers on loopback, a raw OCPP-J client, schema checks.

Servers run as subprocesses on the test database (pytest-django's `test_<name>`), so every test here
uses the transactional database: rows must be committed to be seen by the server, and the server's
rows by the test. Servers are started once per session and shared; Redis keys of the gateway are
cleared before every test. Every wait is bounded; nothing asserts on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import ocpp
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django import db
from django.conf import settings
from jsonschema import Draft4Validator, FormatChecker
from websockets.asyncio.client import ClientConnection, connect

from apps.ocpp_gateway import drain, presence
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.ocpp_gateway.services import command_send, command_wait
from apps.stations.models import ChargePoint
from cpo.clock import parse_iso8601
from tests.processes import database_url, free_port, tail, wait_for_status

KEY = "0123456789abcdef0123"
REPO = Path(settings.BASE_DIR)
SERVER_START_TIMEOUT_S = 60.0
OCPP16_ERROR_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)


# --- servers -----------------------------------------------------------------------------------------
@dataclass
class Server:
    """A uvicorn process serving config.asgi on 127.0.0.1:`port`."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        """The OCPP endpoint without the identity."""
        return f"ws://127.0.0.1:{self.port}/ocpp"

    @property
    def server_id(self) -> str:
        """How the presence records in Redis name this process (apps.ocpp_gateway.presence.SERVER_ID)."""
        return f"{socket.gethostname()}:{self.process.pid}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _server_env(media_root: Path) -> dict[str, str]:
    """The test process's environment, pointed at the test database (which exists by now) and at a media
    folder shared with the test process (diagnostics uploads, firmware files)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_MEDIA_ROOT": str(media_root),
        "PYTHONUNBUFFERED": "1",
        # A log batch landing while the test database is emptied between tests can deadlock the flush;
        # the message log is tested in-process (tests/ocpp_gateway/test_message_log.py).
        "CPO_OCPP_MESSAGE_LOG": os.environ.get("CPO_OCPP_MESSAGE_LOG", "0"),
    }


def start_server(name: str, log_dir: Path, media_root: Path, env: dict[str, str] | None = None) -> Server:
    """Start uvicorn on a free port and wait (bounded) until /livez answers; `env` adds to the environment."""
    port = free_port()
    log_path = log_dir / f"server-{name}-{port}.log"
    command = [
        str(Path(sys.executable).with_name("uvicorn")),
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ws",
        "websockets-sansio",
        "--lifespan",
        "off",
        "--ws-max-size",
        "1048576",
        "--timeout-graceful-shutdown",
        "5",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**_server_env(media_root), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name=name, port=port, process=process, log_path=log_path)
    if wait_for_status(
        f"http://127.0.0.1:{port}/livez",
        200,
        timeout=SERVER_START_TIMEOUT_S,
        alive=lambda: process.poll() is None,
    ):
        return server
    server.stop()
    raise RuntimeError(f"server {name} did not start (exit code {process.returncode}):\n{tail(log_path)}")


class ServerPool:
    """Servers by name, started on first use and stopped at the end of the session."""

    def __init__(self, log_dir: Path, media_root: Path) -> None:
        self.log_dir = log_dir
        self.media_root = media_root
        self.servers: dict[str, Server] = {}

    def get(self, name: str, env: dict[str, str] | None = None) -> Server:
        """The server `name`, started on first use (with `env` added to its environment)."""
        server = self.servers.get(name)
        if server is None or server.process.poll() is not None:
            server = self.servers[name] = start_server(name, self.log_dir, self.media_root, env)
        return server

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="session")
def servers(django_db_setup, tmp_path_factory) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path_factory.mktemp("servers"), tmp_path_factory.mktemp("media"))
    yield pool
    pool.stop_all()


def _wait_until_connections_drained(server: Server, timeout_s: float = 20.0) -> None:
    """Before the test database is flushed: the servers outlive a test, and a connection its client
    closed still finishes the requests it had received (apps.ocpp_gateway.drain). Writing while the flush
    truncates deadlocks it, so wait (bounded) until the server holds no connection and none is draining.
    Presence records a test wrote itself (another server id) do not count."""
    r = sync_redis()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = [
            key
            for key in r.scan_iter(match=presence.PREFIX + "*", count=1000)
            if r.hget(key, "server") == server.server_id
        ]
        draining = next(r.scan_iter(match=drain.DRAINING_PREFIX + "*", count=1000), None)
        if not held and draining is None:
            return
        time.sleep(0.05)


@pytest.fixture
def server(servers, transactional_db, settings) -> Iterator[Server]:
    settings.MEDIA_ROOT = servers.media_root
    a = servers.get("a")
    yield a
    _wait_until_connections_drained(a)


@pytest.fixture
def server_b(servers, transactional_db, settings) -> Iterator[Server]:
    settings.MEDIA_ROOT = servers.media_root
    b = servers.get("b")
    yield b
    _wait_until_connections_drained(b)


@pytest.fixture(autouse=True)
def clean_gateway_redis() -> None:
    """Presence, epochs, command outcomes and failed-handshake counters from earlier tests."""
    r = sync_redis()
    for key in r.scan_iter(match="cpo:ocpp:*", count=1000):
        r.delete(key)


# --- schema checks -------------------------------------------------------------------------------------
_format_checker = FormatChecker(formats=())


@_format_checker.checks("date-time", raises=(ValueError, TypeError))
def _is_datetime(value: Any) -> bool:
    return not isinstance(value, str) or parse_iso8601(value) is not None


@cache
def _schema(action: str, kind: int) -> Draft4Validator:
    """The `ocpp` library's 1.6 JSON schema (floats read as Decimal, so multipleOf 0.1 is exact)."""
    name = f"{action}Response" if kind == 3 else action
    path = Path(ocpp.__file__).parent / "v16" / "schemas" / f"{name}.json"
    return Draft4Validator(
        json.loads(path.read_text(encoding="utf-8-sig"), parse_float=Decimal), format_checker=_format_checker
    )


def assert_schema_valid(action: str, payload: Any, *, kind: int = 3) -> None:
    """`payload` is a valid 1.6 CALL (kind 2) or CALLRESULT (kind 3) payload of `action`."""
    _schema(action, kind).validate(json.loads(json.dumps(payload), parse_float=Decimal))


def assert_call_error(frame: list, unique_id: str, code: str) -> None:
    """`frame` is a well-formed OCPP-J 1.6 CALLERROR for `unique_id` with error code `code`."""
    assert len(frame) == 5, frame
    assert frame[0] == 4 and frame[1] == unique_id, frame
    assert frame[2] in OCPP16_ERROR_CODES, frame
    assert frame[2] == code, frame
    assert isinstance(frame[3], str) and len(frame[3]) <= 255, frame
    assert isinstance(frame[4], dict), frame


# --- raw OCPP-J client ---------------------------------------------------------------------------------
def basic_auth(identity: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{identity}:{key}".encode()).decode("ascii")


class RawCharger:
    """A charger reduced to its frames: sends exactly what it is given, checks every answer's shape and
    every CALLRESULT against the schema of the action it answers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.n = 0

    @classmethod
    async def open(
        cls,
        server: Server,
        identity: str,
        *,
        key: str | None = KEY,
        subprotocols: tuple[str, ...] = ("ocpp1.6",),
        trailing_slash: bool = False,
    ) -> RawCharger:
        headers = {"Authorization": basic_auth(identity, key)} if key else {}
        path = f"{server.url}/{identity}" + ("/" if trailing_slash else "")
        ws = await connect(
            path,
            subprotocols=list(subprotocols),
            additional_headers=headers,
            compression=None,
            proxy=None,
            open_timeout=10,
            ping_interval=None,
            close_timeout=2,
        )
        return cls(ws)

    def next_id(self) -> str:
        self.n += 1
        return f"m{self.n}"

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def recv(self, timeout: float = 10.0) -> list:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout=timeout))

    async def call(self, action: str, payload: Any, *, unique_id: str | None = None) -> list:
        """Send a CALL and return its answer (checked: same id; a CALLRESULT valid for `action`)."""
        unique_id = unique_id or self.next_id()
        await self.send(json.dumps([2, unique_id, action, payload]))
        answer = await self.recv()
        assert answer[1] == unique_id, answer
        if answer[0] == 3:
            assert len(answer) == 3, answer
            assert_schema_valid(action, answer[2])
        else:
            assert answer[0] == 4 and answer[2] in OCPP16_ERROR_CODES, answer
        return answer

    async def result(self, action: str, payload: Any) -> dict[str, Any]:
        """The CALLRESULT payload of a CALL that must succeed."""
        answer = await self.call(action, payload)
        assert answer[0] == 3, answer
        return answer[2]

    async def silent(self, timeout: float = 1.0) -> bool:
        """True when nothing arrives within `timeout`."""
        try:
            frame = await self.recv(timeout=timeout)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected frame {frame}")

    async def boot(self) -> dict[str, Any]:
        answer = await self.result(
            "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "AC22"}
        )
        assert answer["status"] == "Accepted", answer
        return answer

    async def close(self) -> None:
        await self.ws.close()


async def http_upgrade(
    port: int,
    path: str,
    *,
    subprotocols: tuple[str, ...] = ("ocpp1.6",),
    authorization: str | None = None,
    extra_headers: tuple[str, ...] = (),
) -> tuple[int, dict[str, str]]:
    """Send a WebSocket upgrade request by hand and return the status and headers of the raw answer."""
    status, headers, _body = await http_upgrade_answer(
        port, path, subprotocols=subprotocols, authorization=authorization, extra_headers=extra_headers
    )
    return status, headers


async def http_upgrade_answer(
    port: int,
    path: str,
    *,
    subprotocols: tuple[str, ...] = ("ocpp1.6",),
    authorization: str | None = None,
    extra_headers: tuple[str, ...] = (),
) -> tuple[int, dict[str, str], bytes]:
    """`http_upgrade`, also returning the body of a refusal (read by its Content-Length)."""
    body = b""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines.extend(extra_headers)
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        status_line, *header_lines = head.decode("latin-1").strip().split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if int(headers.get("content-length") or 0):
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout=10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return int(status_line.split()[1]), headers, body


# --- waiting and the command path from "another process" -----------------------------------------------
async def eventually(
    check: Callable[[], Awaitable[Any]],
    *,
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Await `check()` until it returns something truthy, at most `timeout` seconds; returns that value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s (last value: {value!r})")
        await asyncio.sleep(interval)


def in_thread(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run a blocking call (e.g. command_wait) in its own thread with its own database connection, as
    another process would, so it never holds the thread the async ORM calls share."""

    def run(**kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _send(identity: str, action: str, payload: dict[str, Any], timeout_s: float) -> int:
    charge_point = ChargePoint.objects.get(identity=identity)
    return command_send(charge_point=charge_point, action=action, payload=payload, timeout_s=timeout_s).pk


async def command(
    identity: str, action: str, payload: dict[str, Any], *, timeout_s: float = 15.0
) -> dict[str, Any]:
    """Issue a command through the product's command service (as admin or Celery would) and wait for it."""
    command_id = await database_sync_to_async(_send)(identity, action, payload, timeout_s)
    return await in_thread(command_wait)(command_id=command_id, timeout_s=timeout_s + 5)


def orm(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """An ORM read or write from an async test."""
    return database_sync_to_async(fn)
