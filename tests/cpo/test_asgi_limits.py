"""Request body limits in front of Django (cpo.asgi_limits.BodyLimitMiddleware), at the ASGI level.

A body over its route's limit is answered 413 before it is read (declared Content-Length) or as soon as
it passes the limit (chunked, no Content-Length); the application never receives the bytes past the
limit. The served application (config.asgi) has the middleware in front of Django."""

from __future__ import annotations

import json
from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import ApplicationCommunicator
from django import db
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone, translation
from django.utils.crypto import get_random_string

from cpo import asgi_limits
from cpo.asgi_limits import BodyLimitMiddleware
from tests.factories import StaffUserFactory

LIMIT = 1000
CHUNK = 400


class Recorder:
    """A downstream ASGI application that reads the whole body the way Django's handler does and
    records every message it received; it answers 200 once the body is complete."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.called = False

    @property
    def body_bytes(self) -> int:
        return sum(len(m.get("body", b"")) for m in self.messages if m["type"] == "http.request")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.called = True
        if scope["type"] != "http":
            self.messages.append(await receive())
            return
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def http_scope(path: str, *, content_length: int | None = None, method: str = "POST") -> dict[str, Any]:
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    else:
        headers.append((b"transfer-encoding", b"chunked"))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def response_of(communicator: ApplicationCommunicator) -> tuple[int, dict[bytes, bytes], bytes]:
    start = await communicator.receive_output(timeout=10)
    assert start["type"] == "http.response.start", start
    body = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return start["status"], dict(start["headers"]), body


async def feed(communicator: ApplicationCommunicator, total: int, *, chunk: int = CHUNK) -> int:
    """Put a body of `total` bytes in `chunk`-sized http.request messages; returns the number of messages."""
    sent, count = 0, 0
    while sent < total:
        size = min(chunk, total - sent)
        sent += size
        count += 1
        await communicator.send_input(
            {"type": "http.request", "body": b"x" * size, "more_body": sent < total}
        )
    return count


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def limited(recorder: Recorder) -> BodyLimitMiddleware:
    return BodyLimitMiddleware(recorder, limits=[("/api/", LIMIT), ("/big/", 10 * LIMIT)], default=LIMIT // 2)


# --- the middleware around a recording application ------------------------------------------------------
@pytest.mark.asyncio
async def test_a_declared_length_over_the_limit_is_refused_before_the_application_runs(limited, recorder):
    communicator = ApplicationCommunicator(limited, http_scope("/api/v1/x", content_length=10**9))
    status, headers, body = await response_of(communicator)
    assert status == 413
    assert headers[b"content-type"] == b"application/json" and headers[b"connection"] == b"close"
    answer = json.loads(body)
    assert answer["code"] == "request_too_large" and answer["fields"] == {}
    assert str(LIMIT) in answer["detail"]
    assert not recorder.called
    await communicator.wait(timeout=5)


@pytest.mark.asyncio
async def test_a_chunked_body_past_the_limit_is_cut_and_the_application_never_sees_the_rest(
    limited, recorder
):
    communicator = ApplicationCommunicator(limited, http_scope("/api/v1/x"))
    messages = await feed(communicator, 5 * LIMIT)
    status, _headers, body = await response_of(communicator)
    assert status == 413 and json.loads(body)["code"] == "request_too_large"
    await communicator.wait(timeout=5)
    # the application got at most the limit, then the client "left"; the rest was never read
    assert recorder.body_bytes <= LIMIT
    assert recorder.messages[-1] == {"type": "http.disconnect"}
    consumed = len(recorder.messages)  # the body messages it got, and the one that crossed the limit
    assert communicator.input_queue.qsize() == messages - consumed > 0


@pytest.mark.asyncio
async def test_a_body_within_the_limit_reaches_the_application_whole(limited, recorder):
    communicator = ApplicationCommunicator(limited, http_scope("/api/v1/x"))
    await feed(communicator, LIMIT)
    status, _headers, body = await response_of(communicator)
    assert (status, body) == (200, b"ok")
    assert recorder.body_bytes == LIMIT


@pytest.mark.asyncio
async def test_the_longest_matching_prefix_sets_the_limit(limited, recorder):
    assert limited.limit_for("/api/v1/auth/token") == LIMIT
    assert limited.limit_for("/big/upload/") == 10 * LIMIT
    assert limited.limit_for("/elsewhere") == LIMIT // 2
    communicator = ApplicationCommunicator(limited, http_scope("/big/upload/", content_length=5 * LIMIT))
    await feed(communicator, 5 * LIMIT)
    assert (await response_of(communicator))[0] == 200
    # outside /api/ the 413 is a short plain-text answer
    other = ApplicationCommunicator(limited, http_scope("/elsewhere", content_length=LIMIT))
    status, headers, body = await response_of(other)
    assert status == 413 and headers[b"content-type"].startswith(b"text/plain")
    assert str(LIMIT // 2).encode() in body


@pytest.mark.asyncio
async def test_under_a_root_path_the_routes_keep_their_limits(limited, recorder):
    # served under a root path (uvicorn --root-path /cpo): the ASGI path includes it
    def under_root(path: str, size: int) -> dict[str, Any]:
        scope = http_scope("/cpo" + path, content_length=size)
        scope["root_path"] = "/cpo"
        return scope

    communicator = ApplicationCommunicator(limited, under_root("/big/upload/", 5 * LIMIT))
    await feed(communicator, 5 * LIMIT)
    assert (await response_of(communicator))[0] == 200  # the route's limit, not the default
    status, headers, body = await response_of(
        ApplicationCommunicator(limited, under_root("/api/v1/x", 2 * LIMIT))
    )
    assert status == 413 and headers[b"content-type"] == b"application/json"  # the API's answer
    assert str(LIMIT).encode() in body and json.loads(body)["code"] == "request_too_large"
    # a path outside the root path is matched as it is
    assert asgi_limits._route({"path": "/cporx/api/", "root_path": "/cpo"}) == "/cporx/api/"
    assert asgi_limits._route({"path": "/cpo", "root_path": "/cpo/"}) == "/"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "header",
    [(b"accept-language", b"de-DE,de;q=0.9"), (b"cookie", b"django_language=de; csrftoken=abc")],
)
async def test_the_413_speaks_the_language_the_client_chose(limited, header):
    scope = http_scope("/elsewhere", content_length=LIMIT)
    scope["headers"].append(header)
    with translation.override("de"):
        expected = translation.gettext(
            "The request body is larger than the limit of {limit} bytes for this address."
        ).format(limit=LIMIT // 2)
    status, _headers, body = await response_of(ApplicationCommunicator(limited, scope))
    assert status == 413 and body.decode().strip() == expected
    assert asgi_limits._language(scope) == "de"


@pytest.mark.asyncio
async def test_websocket_traffic_passes_untouched(limited, recorder):
    communicator = ApplicationCommunicator(limited, {"type": "websocket", "path": "/api/x", "headers": []})
    await communicator.send_input({"type": "websocket.connect"})
    await communicator.wait(timeout=5)
    assert recorder.messages == [{"type": "websocket.connect"}]


def test_the_settings_give_each_route_its_limit():
    middleware = BodyLimitMiddleware(Recorder())
    assert middleware.limit_for("/api/v1/auth/token") == settings.CPO_HTTP_MAX_BODY_API_BYTES
    imports = "/admin/stations/chargepoint/import/"
    assert middleware.limit_for(imports, signed_in=True) == settings.CPO_HTTP_MAX_BODY_ADMIN_BYTES
    # anonymous admin requests (sign-in, password reset) are small forms: the default limit
    assert middleware.limit_for(imports) == settings.CPO_HTTP_MAX_BODY_BYTES
    assert middleware.limit_for("/admin/login/") == settings.CPO_HTTP_MAX_BODY_BYTES
    assert middleware.limit_for("/admin/password_reset/") == settings.CPO_HTTP_MAX_BODY_BYTES
    firmware = "/admin/ocpp_gateway/firmwarefile/add/"
    assert middleware.limit_for(firmware) == settings.CPO_HTTP_MAX_BODY_BYTES  # anonymous
    assert middleware.limit_for(firmware, signed_in=True) == settings.CPO_HTTP_MAX_BODY_FIRMWARE_BYTES
    assert middleware.limit_for("/ocpp/uploads/diagnostics/abc/") > settings.CPO_DIAGNOSTICS_MAX_BYTES
    assert middleware.limit_for("/i18n/setlang/") == settings.CPO_HTTP_MAX_BODY_BYTES
    # the diagnostics upload is larger than the admin, the admin larger than the API
    assert (
        settings.CPO_DIAGNOSTICS_MAX_BYTES
        > settings.CPO_HTTP_MAX_BODY_ADMIN_BYTES
        > settings.CPO_HTTP_MAX_BODY_API_BYTES
    )


def _signed_in_session_key() -> str:
    try:
        user = StaffUserFactory(email="fw@example.com", is_superuser=True)
        session = import_module(settings.SESSION_ENGINE).SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session.save()
        return session.session_key
    finally:
        db.connection.close()  # this thread's connection: the test database is dropped at the end


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_larger_firmware_limit_is_only_for_a_signed_in_session(recorder):
    middleware = BodyLimitMiddleware(
        recorder, limits=[("/admin/", LIMIT), ("/admin/fw/", 10 * LIMIT, "signed_in")], default=LIMIT // 2
    )
    key = await sync_to_async(_signed_in_session_key)()

    async def status_for(size: int, cookie: str | None, *, chunked: bool = False) -> int:
        scope = http_scope("/admin/fw/add/", content_length=None if chunked else size)
        if cookie is not None:
            scope["headers"].append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        communicator = ApplicationCommunicator(middleware, scope)
        await feed(communicator, size)
        status = (await response_of(communicator))[0]
        await communicator.wait(timeout=5)
        return status

    assert await status_for(5 * LIMIT, None) == 413  # anonymous: the admin limit
    assert await status_for(5 * LIMIT, "not-a-session") == 413
    assert await status_for(5 * LIMIT, None, chunked=True) == 413
    assert await status_for(5 * LIMIT, key) == 200
    assert await status_for(5 * LIMIT, key, chunked=True) == 200
    assert await status_for(11 * LIMIT, key) == 413  # the firmware limit holds for staff too


def _sign_in_session_key(session_key: str) -> None:
    """Store a signed-in session under `session_key` (as if someone had just signed in with it)."""
    try:
        user = StaffUserFactory(email="later@example.com", is_superuser=True)
        Session.objects.create(
            session_key=session_key,
            session_data=SessionStore().encode({SESSION_KEY: str(user.pk)}),
            expire_date=timezone.now() + timedelta(hours=1),
        )
    finally:
        db.connection.close()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_session_key_found_not_signed_in_is_not_looked_up_again_at_once(recorder):
    middleware = BodyLimitMiddleware(recorder, limits=[("/admin/", 10 * LIMIT, "signed_in")], default=LIMIT)
    key = get_random_string(32, VALID_KEY_CHARS)

    async def status_for(size: int) -> int:
        scope = http_scope("/admin/x/import/", content_length=size)
        scope["headers"].append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()))
        communicator = ApplicationCommunicator(middleware, scope)
        await feed(communicator, size)
        status = (await response_of(communicator))[0]
        await communicator.wait(timeout=5)
        return status

    assert await status_for(5 * LIMIT) == 413  # a made-up session: looked up, not signed in
    await sync_to_async(_sign_in_session_key)(key)
    # the same key a moment later is believed without a look-up (a flood of it takes no connections)
    assert await status_for(5 * LIMIT) == 413
    middleware.not_signed_in.clear()  # its few seconds are over, as time passing would do
    assert await status_for(5 * LIMIT) == 200


def test_the_not_signed_in_memory_is_bounded_and_forgets_after_its_time():
    memory = asgi_limits._NotSignedIn(ttl_s=3600, max_keys=3)
    for key in "abcd":
        memory.add(key)
    assert "a" not in memory and all(key in memory for key in "bcd")  # the oldest was forgotten
    expired = asgi_limits._NotSignedIn(ttl_s=0)
    expired.add("a")
    assert "a" not in expired


# --- the served application (config.asgi): the middleware is in front of Django ---------------------------
@pytest.fixture
def served_app() -> Any:
    from config.asgi import application

    return application


@pytest.mark.asyncio
async def test_the_served_application_refuses_an_oversized_api_body_before_django_reads_it(served_app):
    limit = settings.CPO_HTTP_MAX_BODY_API_BYTES
    communicator = ApplicationCommunicator(served_app, http_scope("/api/v1/auth/token", content_length=10**9))
    await communicator.send_input({"type": "http.request", "body": b"{", "more_body": True})
    status, headers, body = await response_of(communicator)
    assert status == 413 and headers[b"content-type"] == b"application/json"
    assert json.loads(body)["code"] == "request_too_large"
    await communicator.wait(timeout=5)
    assert communicator.input_queue.qsize() == 1  # not a byte of the body was read
    assert str(limit) in json.loads(body)["detail"]


@pytest.mark.asyncio
async def test_the_served_application_cuts_a_chunked_body_and_django_never_reads_the_rest(served_app):
    limit = settings.CPO_HTTP_MAX_BODY_BYTES
    communicator = ApplicationCommunicator(served_app, http_scope("/i18n/setlang/"))
    messages = await feed(communicator, 4 * limit, chunk=16 * 1024)
    status, headers, _body = await response_of(communicator)
    assert status == 413 and headers[b"content-type"].startswith(b"text/plain")
    await communicator.wait(timeout=5)
    consumed = limit // (16 * 1024) + 1  # up to the limit, and the message that crossed it
    assert communicator.input_queue.qsize() == messages - consumed > 0


@pytest.mark.asyncio
async def test_the_served_application_still_serves_a_body_within_the_limit(served_app):
    body = b"{not json"
    communicator = ApplicationCommunicator(
        served_app, http_scope("/api/v1/auth/token", content_length=len(body))
    )
    await communicator.send_input({"type": "http.request", "body": body})
    status, _headers, answer = await response_of(communicator)
    # Django read and parsed it: the API's own answer to malformed JSON
    assert status == 400 and json.loads(answer)["code"] == "parse_error"
    await communicator.wait(timeout=5)


@pytest.mark.asyncio
async def test_the_served_application_gives_anonymous_admin_posts_the_small_limit(served_app):
    size = settings.CPO_HTTP_MAX_BODY_BYTES + 1  # far under the signed-in admin limit
    communicator = ApplicationCommunicator(served_app, http_scope("/admin/login/", content_length=size))
    await communicator.send_input({"type": "http.request", "body": b"u", "more_body": True})
    status, headers, body = await response_of(communicator)
    assert status == 413 and headers[b"content-type"].startswith(b"text/plain")
    assert str(settings.CPO_HTTP_MAX_BODY_BYTES).encode() in body
    await communicator.wait(timeout=5)
    assert communicator.input_queue.qsize() == 1  # not a byte of the body was read
