"""Driver sessions: start (idempotent), list, read, stop, watch live (SSE), receipt; the driver's data
export."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import weakref
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken

from apps.accounts.api.authentication import DriverJWTAuthentication
from apps.charging import driver_services
from apps.charging import live as driver_live
from apps.charging.api.serializers import SessionOutput, SessionStartInput, session_json
from apps.charging.choices import DriverSessionFailure, DriverSessionStatus
from apps.charging.driver_selectors import driver_export, driver_session_get, driver_session_list
from apps.tariffs.receipts import receipt_html, receipt_pdf
from cpo.api import THROTTLES, CursorPagination, error_responses, validated
from cpo.exceptions import ApplicationError, Conflict, PermissionDenied, ServiceUnavailable, ValidationFailed
from cpo.live import StreamLease

TAGS = ["sessions"]
logger = logging.getLogger(__name__)
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="A key the app makes per start attempt (e.g. a UUID). Repeating it within 24 h returns the "
    "same session instead of starting another.",
)
# FAILED at once: the status and code the start request answers with.
_FAILED_AT_START = {
    DriverSessionFailure.CHARGER_OFFLINE: (
        Conflict,
        "charger_offline",
        gettext_lazy("The charger is offline."),
    ),
    DriverSessionFailure.NOT_AUTHORISED: (
        PermissionDenied,
        "not_authorised",
        gettext_lazy("Your app token is not accepted."),
    ),
}


class SessionListView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "start"
    throttle_methods = ("POST",)

    @extend_schema(
        tags=TAGS,
        summary="My sessions, newest first (cursor-paginated)",
        responses={200: SessionOutput(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        paginator = CursorPagination()
        page = paginator.paginate_queryset(
            # "payment": billing's card payment of each session (one join instead of a query per session)
            driver_session_list(driver=request.user)
            .select_related("payment")
            .prefetch_related("transitions"),
            request,
            view=self,
        )
        return paginator.get_paginated_response([session_json(s) for s in page or []])

    @extend_schema(
        tags=TAGS,
        summary="Start charging on a connector",
        description="409 codes: connector_occupied, connector_unavailable, connector_reserved (a reservation "
        "holds it for another driver; the holder may start there), charger_offline, idempotency_key_reused.",
        parameters=[IDEMPOTENCY_HEADER],
        request=SessionStartInput,
        responses={
            201: SessionOutput,
            200: OpenApiResponse(SessionOutput, description="A replay of the same key"),
            **error_responses(400, 401, 403, 404, 409, 429),
        },
    )
    def post(self, request: Request) -> Response:
        data = validated(SessionStartInput, request.data)
        session, created = driver_services.driver_session_start(
            driver=request.user,
            charge_point_id=data["charge_point"],
            evse_id=data["connector"],
            idempotency_key=request.headers.get("Idempotency-Key", "").strip(),
        )
        session = driver_session_get(driver=request.user, pk=session.pk)
        body = session_json(session)
        headers = {} if created else {"Idempotent-Replayed": "true"}
        failed = (
            _FAILED_AT_START.get(session.failure_reason)
            if session.status == DriverSessionStatus.FAILED
            else None
        )
        if failed is not None:
            error_class, code, detail = failed
            error = error_class(detail, code=code)
            return Response({**error.as_dict(), "session": body}, status=error.http_status, headers=headers)
        return Response(
            body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK, headers=headers
        )


class SessionDetailView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "stop"
    throttle_methods = ("DELETE",)

    @extend_schema(
        tags=TAGS,
        summary="One of my sessions: status, energy, duration, power, cost so far",
        responses={200: SessionOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(session_json(driver_session_get(driver=request.user, pk=pk)))

    @extend_schema(
        tags=TAGS,
        summary="Stop charging (same as POST .../stop)",
        responses={200: SessionOutput, 202: SessionOutput, **error_responses(401, 404, 409, 429)},
    )
    def delete(self, request: Request, pk: int) -> Response:
        return _stop(request, pk)


class SessionStopView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "stop"

    @extend_schema(
        tags=TAGS,
        request=None,
        summary="Stop charging",
        description="202 while the charger stops (STOPPING); 200 with the final energy and cost "
        "once the session is COMPLETED. Repeating it is harmless.",
        responses={200: SessionOutput, 202: SessionOutput, **error_responses(401, 404, 409, 429)},
    )
    def post(self, request: Request, pk: int) -> Response:
        return _stop(request, pk)


def _stop(request: Request, pk: Any) -> Response:
    session = driver_session_get(driver=request.user, pk=pk)
    driver_services.driver_session_stop(session=session)
    session = driver_session_get(driver=request.user, pk=pk)
    done = session.status == DriverSessionStatus.COMPLETED
    return Response(session_json(session), status=status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED)


class _AnyAccept(BaseContentNegotiation):
    """The receipt view chooses HTML or PDF itself; errors are JSON whatever the client accepts."""

    def select_parser(self, request: Any, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


class SessionReceiptView(APIView):
    content_negotiation_class = _AnyAccept

    @extend_schema(
        tags=TAGS,
        summary=(
            "The receipt of a completed session (HTML, or PDF with ?format=pdf or Accept: application/pdf)"
        ),
        parameters=[OpenApiParameter("format", str, enum=["html", "pdf"], required=False)],
        responses={
            (200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="HTML receipt"),
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="PDF receipt"),
            **error_responses(401, 404, 409),
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        session = driver_session_get(driver=request.user, pk=pk)
        wanted = request.query_params.get("format") or (
            "pdf" if "application/pdf" in request.headers.get("Accept", "") else "html"
        )
        if wanted not in ("html", "pdf"):
            raise ValidationFailed(
                _("Ask for format html or pdf."), fields={"format": [_("Use html or pdf.")]}
            )
        if wanted == "pdf":
            response = HttpResponse(receipt_pdf(session=session), content_type="application/pdf")
            response["Content-Disposition"] = f'inline; filename="receipt-{session.pk}.pdf"'
            return response
        return HttpResponse(
            receipt_html(session=session, request=request), content_type="text/html; charset=utf-8"
        )


class MeExportView(APIView):
    @extend_schema(
        tags=["me"],
        summary="Everything we keep about me, as JSON",
        responses={200: OpenApiResponse(description="The driver's data"), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        response = Response(driver_export(driver=request.user))
        response["Content-Disposition"] = 'attachment; filename="my-data.json"'
        return response


# --- live stream (Server-Sent Events) ----------------------------------------------------------------
# A stream holds no database connection while it waits. Authentication and every read run in the thread
# pool (never the request's thread-sensitive thread, whose connection Django gives back only when the
# response ends) and hand the connection back at once; changes arrive with their body over the channel
# layer (apps.charging.live). Open streams are capped per driver (over all processes, Redis leases that
# lapse when a process dies) and per process (this counter).
_open_streams = 0
_open_streams_lock = threading.Lock()


def _authenticate(request: HttpRequest) -> Any:
    """The JWT user of a plain Django request (the SSE view is not a DRF view: DRF has no async views)."""
    try:
        result = DriverJWTAuthentication().authenticate(Request(request))
    except (InvalidToken, AuthenticationFailed) as exc:
        raise ApplicationError(str(exc.detail), code="not_authenticated") from exc
    if result is None:
        raise ApplicationError(_("Authentication credentials were not provided."), code="not_authenticated")
    return result[0]


def _open(request: HttpRequest, pk: int) -> tuple[int, int]:
    """(driver id, session id) of the driver's own session; runs in the thread pool."""
    try:
        user = _authenticate(request)
        return user.pk, driver_session_get(driver=user, pk=pk).pk
    finally:
        close_old_connections()  # CONN_MAX_AGE is 0 with the pool: the connection goes back to it now


def _read(pk: int) -> tuple[dict[str, Any], bool] | None:
    """A brief read of what the stream shows; runs in the thread pool."""
    try:
        return driver_live.session_body_read(pk)
    finally:
        close_old_connections()


def _error(exc: ApplicationError, status_code: int) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=status_code)


def _too_many(detail: Any) -> JsonResponse:
    return JsonResponse({"code": "too_many_streams", "detail": str(detail), "fields": {}}, status=429)


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n".encode()


def _take_process_slot() -> bool:
    global _open_streams
    with _open_streams_lock:
        if _open_streams >= int(getattr(settings, "CPO_DRIVER_LIVE_MAX_PER_PROCESS", 5000)):
            return False
        _open_streams += 1
        return True


def _give_process_slot() -> None:
    global _open_streams
    with _open_streams_lock:
        _open_streams -= 1


class _Slots:
    """A stream's process slot and Redis lease, given back exactly once: by the stream when it ends, by
    the response's closer if the stream never started, or (the process slot) when the response is
    collected without either."""

    def __init__(self, lease: StreamLease) -> None:
        self.lease = lease
        self._process = True
        self._lock = threading.Lock()

    def give_process(self) -> None:
        with self._lock:
            had, self._process = self._process, False
        if had:
            _give_process_slot()

    async def release(self) -> None:
        self.give_process()
        try:
            await self.lease.release()
        except Exception:  # the lease lapses by itself within its ttl
            logger.warning("live stream lease not released", exc_info=True)

    def release_sync(self) -> None:
        self.give_process()
        try:
            self.lease.release_sync()
        except Exception:
            logger.warning("live stream lease not released", exc_info=True)


def _lease_refresh_s() -> float:
    """How often a stream refreshes its lease: every fourth keep-alive (a minute by default)."""
    return 4 * float(getattr(settings, "CPO_DRIVER_LIVE_POLL_S", 15))


def _lease_ttl_s() -> float:
    """A dead process's leases lapse after this (three missed refreshes)."""
    return 3 * _lease_refresh_s() + 1


async def session_live(request: HttpRequest, pk: int) -> HttpResponse:
    """GET /api/v1/sessions/{id}/live: `session` events (status, energy, power, cost) whenever the session
    changes, `end` when it is COMPLETED or FAILED, a comment line as keep-alive. Fed by the channel layer
    group driver_session.<id> (messages carry the session's body); the state is re-read briefly about every
    CPO_DRIVER_LIVE_REREAD_S seconds, so a lost message only delays an update. 429 too_many_streams beyond
    CPO_DRIVER_LIVE_MAX_PER_DRIVER open streams of one driver or CPO_DRIVER_LIVE_MAX_PER_PROCESS of one
    process."""
    if request.method != "GET":
        return JsonResponse(
            {"code": "method_not_allowed", "detail": _("Only GET."), "fields": {}}, status=405
        )
    try:
        driver_id, session_id = await sync_to_async(_open, thread_sensitive=False)(request, pk)
    except ApplicationError as exc:
        return _error(exc, 401 if exc.code == "not_authenticated" else exc.http_status)
    if not _take_process_slot():
        return _too_many(_("This server watches as many sessions as it can; try again in a minute."))
    lease = StreamLease(
        capped_key=driver_live.driver_key(driver_id),
        cap=int(getattr(settings, "CPO_DRIVER_LIVE_MAX_PER_DRIVER", 5)),
        watch_keys=(driver_live.watch_key(session_id),),
        ttl_s=_lease_ttl_s(),
    )
    slots = _Slots(lease)
    try:
        taken = await lease.acquire()
    except BaseException as exc:  # also a cancellation: give back what may have been taken
        await asyncio.shield(slots.release())
        if isinstance(exc, Exception):
            logger.warning("live stream of session %s: Redis did not answer: %r", session_id, exc)
            failed = ServiceUnavailable(_("Live updates are unavailable right now; try again in a minute."))
            return _error(failed, failed.http_status)
        raise
    if not taken:
        slots.give_process()
        return _too_many(_("You are watching too many sessions at once; close one and try again."))
    response = StreamingHttpResponse(
        _live_events(slots, session_id),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # Django closes the response (running its resource closers) even when the stream never started...
    response._resource_closers.append(slots.release_sync)
    # ...except when the request is cancelled between this return and the response being sent: then
    # neither close() nor the stream runs, and the process slot (a counter that never expires) would be
    # lost for good. Reserving here keeps the 429 decision exact; the backstop gives the slot back when
    # the response is collected (no Redis call from a collector: the driver's lease lapses in its ttl).
    weakref.finalize(response, slots.give_process)
    return response


async def _live_events(slots: _Slots, pk: int) -> AsyncIterator[bytes]:
    """The stream. Never raises (Django would skip closing the response): a failure ends it, logged."""
    layer = get_channel_layer()
    group = driver_live.group_name(pk)
    channel = ""
    poll_s = float(getattr(settings, "CPO_DRIVER_LIVE_POLL_S", 15))
    reread_s = float(getattr(settings, "CPO_DRIVER_LIVE_REREAD_S", 300))
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + float(getattr(settings, "CPO_DRIVER_LIVE_MAX_S", 3600))
    # Spread the re-reads of streams opened together (a reconnect wave) over the interval.
    reread_at = loop.time() + reread_s * random.uniform(0.5, 1.0)
    refresh_s = _lease_refresh_s()
    refresh_at = loop.time() + refresh_s
    receiving: asyncio.Future[Any] | None = None
    try:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)  # before the first read: no change falls in between
        read = await sync_to_async(_read, thread_sensitive=False)(pk)
        if read is None:
            return
        body, final = read
        last: dict[str, Any] | None = None
        reread_due = False
        while True:
            if body != last:
                yield _sse("session", body)
                last = body
            if final:
                yield _sse("end", {"id": pk, "status": body["status"]})
                return
            now = loop.time()
            if now >= ends_at:  # the app reconnects for more
                yield _sse("timeout", {"id": pk, "status": body["status"]})
                return
            if now >= refresh_at:
                refresh_at = now + refresh_s
                with contextlib.suppress(Exception):  # a lapsed lease only loosens the cap for a while
                    await slots.lease.refresh()
            if reread_due or now >= reread_at:
                # a message without a body (from an older process), a lost message, or no channel layer
                reread_due, reread_at = False, now + reread_s
                try:
                    read = await sync_to_async(_read, thread_sensitive=False)(pk)
                except Exception as exc:  # e.g. the pool timed out: try again at the next re-read
                    logger.warning("live stream of session %s: re-read failed: %r", pk, exc)
                    continue
                if read is None:
                    return
                body, final = read
                continue
            if receiving is None:
                receiving = asyncio.ensure_future(layer.receive(channel))
            wait_s = max(0.0, min(now + poll_s, refresh_at, reread_at, ends_at) - now)
            done, _pending = await asyncio.wait({receiving}, timeout=wait_s)
            if not done:
                yield b": keep-alive\n\n"
                continue
            failed = receiving.exception()
            message = receiving.result() if failed is None else None
            receiving = None
            if failed is not None:  # the channel layer is down: keep going by re-reading, without spinning
                logger.warning("live stream of session %s: channel layer receive failed: %r", pk, failed)
                await asyncio.sleep(poll_s)
                yield b": keep-alive\n\n"
                reread_due = True
            elif isinstance(message.get("session"), dict):
                body = message["session"]
                final = bool(body.get("final"))
            else:
                reread_due = True
    except Exception:
        logger.exception("live stream of session %s failed", pk)
    finally:
        if receiving is not None:
            receiving.cancel()
        await slots.release()
        if channel:
            try:
                await layer.group_discard(group, channel)
            except Exception:
                logger.warning("live stream of session %s: could not leave %s", pk, group, exc_info=True)
