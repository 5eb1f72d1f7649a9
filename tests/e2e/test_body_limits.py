"""Request body limits on a real uvicorn server (the application `make run` serves): a body over its
route's limit gets 413 before the client has sent it, with Content-Length and chunked alike, and the
server goes on serving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import pytest
import requests
from django.conf import settings

from apps.accounts.models import User
from apps.ocpp_gateway.models import FirmwareFile
from tests.e2e.conftest import Server, orm
from tests.factories import OrganisationFactory
from tests.processes import http_get

PASSWORD = "a-long-admin-password-42"

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]


async def _open(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout=10)
    return int(status_line.split()[1]), headers, body


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed the connection (bounded wait)."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout=10) == b""
    except ConnectionResetError:
        return True


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_a_declared_gigabyte_gets_413_before_a_byte_of_it_is_sent(server):
    reader, writer = await _open(server)
    try:
        writer.write(
            (
                "POST /api/v1/auth/token HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {1024**3}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status, headers, body = await _read_response(reader)
        assert status == 413 and headers["content-type"] == "application/json"
        assert json.loads(body)["code"] == "request_too_large"
        assert await _closed_by_server(reader)
    finally:
        await _close(writer)
    assert http_get(f"http://127.0.0.1:{server.port}/livez")[0] == 200


async def test_a_chunked_body_gets_413_once_past_the_limit_without_its_end(server):
    limit = settings.CPO_HTTP_MAX_BODY_BYTES
    reader, writer = await _open(server)
    try:
        writer.write(
            (
                "POST /i18n/setlang/ HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = b"x" * 8192
        sent = 0
        while sent <= limit:  # past the limit, and never the terminating zero-length chunk
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        await writer.drain()
        status, headers, body = await _read_response(reader)
        assert status == 413 and headers["content-type"].startswith("text/plain")
        assert str(limit).encode() in body
        assert await _closed_by_server(reader)
    finally:
        await _close(writer)
    assert http_get(f"http://127.0.0.1:{server.port}/livez")[0] == 200


def _csrf(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=30)
    assert page.status_code == 200, page.status_code
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


def _staff_with_organisation() -> int:
    organisation = OrganisationFactory(name="Firmware Org", slug="fw-org")
    User.objects.create_superuser(email="fw-admin@example.com", password=PASSWORD)
    return organisation.pk


async def test_a_firmware_image_larger_than_the_admin_limit_needs_a_signed_in_session(server):
    """The firmware page takes images above the admin's limit from signed-in staff only."""
    organisation_id = await orm(_staff_with_organisation)()
    base = f"http://127.0.0.1:{server.port}"
    image = b"\x7fFW" * (settings.CPO_HTTP_MAX_BODY_ADMIN_BYTES // 3 + 1024)  # just over the admin limit
    add = f"{base}/admin/ocpp_gateway/firmwarefile/add/"

    def upload(session: requests.Session, token: str) -> requests.Response:
        return session.post(
            add,
            data={"csrfmiddlewaretoken": token, "organisation": organisation_id, "version": "9.9.9"},
            files={"file": ("fw.bin", image, "application/octet-stream")},
            headers={"Referer": add},
            allow_redirects=False,
            timeout=60,
        )

    def run() -> tuple[int, int, int]:
        anonymous = requests.Session()
        refused = upload(anonymous, "not-checked").status_code
        staff = requests.Session()
        token = _csrf(staff, f"{base}/admin/login/")
        signed_in = staff.post(
            f"{base}/admin/login/",
            data={"csrfmiddlewaretoken": token, "username": "fw-admin@example.com", "password": PASSWORD},
            headers={"Referer": f"{base}/admin/login/"},
            allow_redirects=False,
            timeout=30,
        ).status_code
        stored = upload(staff, _csrf(staff, add)).status_code
        return refused, signed_in, stored

    refused, signed_in, stored = await asyncio.to_thread(run)
    assert refused == 413
    assert signed_in == 302
    assert stored == 302  # saved, back to the list
    firmware = await orm(lambda: FirmwareFile.objects.get(version="9.9.9"))()
    assert firmware.size == len(image)
