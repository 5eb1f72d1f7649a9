"""Request body limits enforced in front of Django (ASGI middleware).

Django's ASGI handler reads a request's whole body (into memory, then a temporary file) before any
middleware or view sees the request, so without this a client could make a process hold a body of any
size. `BodyLimitMiddleware` wraps the "http" application in config/asgi.py (the app uvicorn serves in
`make run` and in production) and, per route:

- answers 413 at once when the declared Content-Length exceeds the route's limit, reading no body;
- counts the bytes of a chunked (or otherwise undeclared) body as they arrive and, past the limit,
  answers 413 and tells the application the client went away (`http.disconnect`), so the application
  never receives the rest; the 413 asks the server to close the connection.

The limits come from settings: CPO_HTTP_BODY_LIMITS, a list of (path prefix, bytes) where the longest
matching prefix applies (to the path without the root path the application is served under), and
CPO_HTTP_MAX_BODY_BYTES for every other path. An entry (path prefix, bytes, "signed_in") applies only to
requests that carry the session of a signed-in user (staff: only the admin has sessions), so that
anonymous clients cannot make the server spool the admin's larger uploads (import files, firmware
images); the session is looked up only for a body that may exceed the other limit, and a session key
found not signed in is remembered for NOT_SIGNED_IN_TTL_S seconds (in this process), so that a flood of
requests with a made-up session cookie does not take database connections.

The 413 is the API's JSON error shape for /api/ paths and a short plain-text answer elsewhere. WebSocket
and lifespan traffic pass through untouched (OCPP frames have their own size limit).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db import connections
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation.trans_real import parse_accept_lang_header

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
SIGNED_IN = "signed_in"  # the third element of a CPO_HTTP_BODY_LIMITS entry that only signed-in users get
DEFAULT_MAX_BODY_BYTES = 64 * 1024
NOT_SIGNED_IN_TTL_S = 5.0  # how long a session key found not signed in is believed without a look-up
NOT_SIGNED_IN_MAX_KEYS = 10_000  # the least recently found are forgotten first


def request_too_large_detail(limit: int) -> str:
    """The sentence of a 413 request_too_large (here and in cpo.api: one message to translate)."""
    return _("The request body is larger than the limit of {limit} bytes for this address.").format(
        limit=limit
    )


def _content_length(scope: Scope) -> int | None:
    """The declared Content-Length, or None when absent or not a plain number (the server rejects those)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return value.decode("latin-1")
    return ""


def _language(scope: Scope) -> str:
    """The language the client chose (the language cookie /i18n/setlang/ sets, else Accept-Language) among
    LANGUAGES; the default otherwise. (LocaleMiddleware has not run: this answer is given before Django
    sees the request.)"""
    cookies = SimpleCookie()
    with contextlib.suppress(CookieError):
        cookies.load(_header(scope, b"cookie"))
    chosen = cookies.get(settings.LANGUAGE_COOKIE_NAME)
    wanted = [chosen.value] if chosen is not None else []
    wanted += [code for code, _quality in parse_accept_lang_header(_header(scope, b"accept-language"))]
    for code in wanted:
        if code == "*":
            break
        try:
            return translation.get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


class _NotSignedIn:
    """Session keys recently found not signed in (an LRU with a time to live). Used from the event loop
    only: no lock."""

    def __init__(self, ttl_s: float = NOT_SIGNED_IN_TTL_S, max_keys: int = NOT_SIGNED_IN_MAX_KEYS) -> None:
        self.ttl_s, self.max_keys = ttl_s, max_keys
        self._until: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= time.monotonic():
            del self._until[key]
            return False
        return True

    def add(self, key: str) -> None:
        self._until[key] = time.monotonic() + self.ttl_s
        self._until.move_to_end(key)
        while len(self._until) > self.max_keys:
            self._until.popitem(last=False)

    def clear(self) -> None:
        self._until.clear()


def _route(scope: Scope) -> str:
    """The request's path within the application: without the root path it is mounted under (uvicorn
    --root-path; in ASGI the path includes it), as the route prefixes of the limits are written."""
    path = scope.get("path", "")
    root = scope.get("root_path", "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


async def _signed_in(scope: Scope, not_signed_in: _NotSignedIn) -> bool:
    """True when the request carries the session cookie of a signed-in user."""
    cookies = SimpleCookie()
    with contextlib.suppress(CookieError):
        cookies.load(_header(scope, b"cookie"))
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    if morsel is None or not morsel.value:
        return False
    key = morsel.value
    if key in not_signed_in:
        return False  # looked up a moment ago: no database look-up for a flood of the same made-up key
    try:
        user_id = await sync_to_async(_session_user_id, thread_sensitive=False)(key)
    except Exception:  # a session store that does not answer: the smaller limit applies
        logger.warning("body limits: the session store did not answer", exc_info=True)
        user_id = None
    if not user_id:
        not_signed_in.add(key)
        return False
    return True


def _session_user_id(session_key: str) -> Any:
    """The signed-in user's id in a session (None if none). Runs in a worker thread: a session not in the
    cache is read from the database, and that connection goes back to the pool at once, never held by a
    thread that no request cycle closes."""
    try:
        return import_module(settings.SESSION_ENGINE).SessionStore(session_key).get(SESSION_KEY)
    finally:
        connections.close_all()


class BodyLimitMiddleware:
    """ASGI middleware: per-route request body limits (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Iterable[tuple[Any, ...]] | None = None,
        default: int | None = None,
    ) -> None:
        self.app = app
        if limits is None:
            limits = getattr(settings, "CPO_HTTP_BODY_LIMITS", ())
        if default is None:
            default = int(getattr(settings, "CPO_HTTP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
        entries = [(str(p), int(n), SIGNED_IN in rest) for p, n, *rest in limits]
        # longest prefix first, so that the most specific route wins
        self.limits = sorted(entries, key=lambda item: len(item[0]), reverse=True)
        self.default = default
        self.not_signed_in = _NotSignedIn()

    def limit_for(self, path: str, *, signed_in: bool = False) -> int:
        """The body limit in bytes for a request to `path` (by a signed-in user, or not)."""
        for prefix, limit, needs_session in self.limits:
            if path.startswith(prefix) and (signed_in or not needs_session):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _route(scope)
        limit = self.limit_for(path)
        declared = _content_length(scope)
        chunked = declared is None and bool(_header(scope, b"transfer-encoding"))
        if chunked or (declared is not None and declared > limit):
            larger = self.limit_for(path, signed_in=True)
            if larger > limit and await _signed_in(scope, self.not_signed_in):
                limit = larger
        if declared is not None and declared > limit:
            await self._reject(scope, send, limit, path)
            return

        received = 0
        cut = False  # the body went past the limit
        response_started = False
        answered = False  # this middleware sent the 413

        async def limited_receive() -> Message:
            nonlocal received, cut, answered
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    cut = True
                    if not response_started:
                        await self._reject(scope, send, limit, path)
                        answered = True
                    # the application sees the client leave, never the bytes past the limit
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if answered:
                return  # this middleware has answered the request already
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, scope: Scope, send: Send, limit: int, path: str) -> None:
        """Answer 413 and ask the server to close the connection (the rest of the body is never read)."""
        with translation.override(_language(scope)):
            detail = request_too_large_detail(limit)
        if path.startswith(API_PREFIX):
            body = json.dumps({"code": "request_too_large", "detail": detail, "fields": {}}).encode()
            content_type = b"application/json"
        else:
            body = (detail + "\n").encode()
            content_type = b"text/plain; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
