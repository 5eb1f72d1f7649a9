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
matching prefix applies, and CPO_HTTP_MAX_BODY_BYTES for every other path. The 413 is the API's JSON
error shape for /api/ paths and a short plain-text answer elsewhere. WebSocket and lifespan traffic pass
through untouched (OCPP frames have their own size limit).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation.trans_real import parse_accept_lang_header

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/api/"
DEFAULT_MAX_BODY_BYTES = 64 * 1024


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


class BodyLimitMiddleware:
    """ASGI middleware: per-route request body limits (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Iterable[tuple[str, int]] | None = None,
        default: int | None = None,
    ) -> None:
        self.app = app
        if limits is None:
            limits = getattr(settings, "CPO_HTTP_BODY_LIMITS", ())
        if default is None:
            default = int(getattr(settings, "CPO_HTTP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
        # longest prefix first, so that the most specific route wins
        self.limits = sorted(
            ((str(p), int(n)) for p, n in limits), key=lambda item: len(item[0]), reverse=True
        )
        self.default = default

    def limit_for(self, path: str) -> int:
        """The body limit in bytes for a request to `path`."""
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._reject(scope, send, limit)
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
                        await self._reject(scope, send, limit)
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

    async def _reject(self, scope: Scope, send: Send, limit: int) -> None:
        """Answer 413 and ask the server to close the connection (the rest of the body is never read)."""
        with translation.override(_language(scope)):
            detail = request_too_large_detail(limit)
        if scope.get("path", "").startswith(API_PREFIX):
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
