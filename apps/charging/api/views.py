"""Driver sessions: start (idempotent), list, read, stop, watch live (SSE), receipt; the driver's data export."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.db import close_old_connections
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
from apps.charging.api.serializers import SessionOutput, SessionStartInput, session_json
from apps.charging.choices import DriverSessionFailure, DriverSessionStatus
from apps.charging.driver_selectors import driver_export, driver_session_get, driver_session_list, is_final
from apps.charging.receipts import receipt_html, receipt_pdf
from cpo.api import THROTTLES, CursorPagination, error_responses, validated
from cpo.exceptions import ApplicationError, Conflict, PermissionDenied, ValidationFailed

TAGS = ["sessions"]
logger = logging.getLogger(__name__)
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=True,
    description="A key the app makes per start attempt (e.g. a UUID). Repeating it within 24 h returns the "
                "same session instead of starting another.",
)
# FAILED at once: the status and code the start request answers with.
_FAILED_AT_START = {
    DriverSessionFailure.CHARGER_OFFLINE: (Conflict, "charger_offline", gettext_lazy("The charger is offline.")),
    DriverSessionFailure.NOT_AUTHORISED: (PermissionDenied, "not_authorised",
                                          gettext_lazy("Your app token is not accepted.")),
}


class SessionListView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "start"
    throttle_methods = ("POST",)

    @extend_schema(tags=TAGS, summary="My sessions, newest first (cursor-paginated)",
                   responses={200: SessionOutput(many=True), **error_responses(401)})
    def get(self, request: Request) -> Response:
        paginator = CursorPagination()
        page = paginator.paginate_queryset(driver_session_list(driver=request.user).prefetch_related("transitions"),
                                           request, view=self)
        return paginator.get_paginated_response([session_json(s) for s in page or []])

    @extend_schema(
        tags=TAGS, summary="Start charging on a connector",
        parameters=[IDEMPOTENCY_HEADER], request=SessionStartInput,
        responses={201: SessionOutput, 200: OpenApiResponse(SessionOutput, description="A replay of the same key"),
                   **error_responses(400, 401, 403, 404, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        data = validated(SessionStartInput, request.data)
        session, created = driver_services.driver_session_start(
            driver=request.user, charge_point_id=data["charge_point"], evse_id=data["connector"],
            idempotency_key=request.headers.get("Idempotency-Key", "").strip(),
        )
        session = driver_session_get(driver=request.user, pk=session.pk)
        body = session_json(session)
        headers = {} if created else {"Idempotent-Replayed": "true"}
        failed = _FAILED_AT_START.get(session.failure_reason) if session.status == DriverSessionStatus.FAILED else None
        if failed is not None:
            error_class, code, detail = failed
            error = error_class(detail, code=code)
            return Response({**error.as_dict(), "session": body}, status=error.http_status, headers=headers)
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK, headers=headers)


class SessionDetailView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "stop"
    throttle_methods = ("DELETE",)

    @extend_schema(tags=TAGS, summary="One of my sessions: status, energy, duration, power, cost so far",
                   responses={200: SessionOutput, **error_responses(401, 404)})
    def get(self, request: Request, pk: int) -> Response:
        return Response(session_json(driver_session_get(driver=request.user, pk=pk)))

    @extend_schema(tags=TAGS, summary="Stop charging (same as POST .../stop)",
                   responses={200: SessionOutput, 202: SessionOutput, **error_responses(401, 404, 409, 429)})
    def delete(self, request: Request, pk: int) -> Response:
        return _stop(request, pk)


class SessionStopView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "stop"

    @extend_schema(tags=TAGS, request=None, summary="Stop charging",
                   description="202 while the charger stops (STOPPING); 200 with the final energy and cost "
                               "once the session is COMPLETED. Repeating it is harmless.",
                   responses={200: SessionOutput, 202: SessionOutput, **error_responses(401, 404, 409, 429)})
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
        tags=TAGS, summary="The receipt of a completed session (HTML, or PDF with ?format=pdf or Accept: application/pdf)",
        parameters=[OpenApiParameter("format", str, enum=["html", "pdf"], required=False)],
        responses={(200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="HTML receipt"),
                   (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="PDF receipt"),
                   **error_responses(401, 404, 409)},
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        session = driver_session_get(driver=request.user, pk=pk)
        wanted = request.query_params.get("format") or (
            "pdf" if "application/pdf" in request.headers.get("Accept", "") else "html")
        if wanted not in ("html", "pdf"):
            raise ValidationFailed(_("Ask for format html or pdf."), fields={"format": [_("Use html or pdf.")]})
        if wanted == "pdf":
            response = HttpResponse(receipt_pdf(session=session), content_type="application/pdf")
            response["Content-Disposition"] = f'inline; filename="receipt-{session.pk}.pdf"'
            return response
        return HttpResponse(receipt_html(session=session, request=request), content_type="text/html; charset=utf-8")


class MeExportView(APIView):
    @extend_schema(tags=["me"], summary="Everything we keep about me, as JSON",
                   responses={200: OpenApiResponse(description="The driver's data"), **error_responses(401)})
    def get(self, request: Request) -> Response:
        response = Response(driver_export(driver=request.user))
        response["Content-Disposition"] = 'attachment; filename="my-data.json"'
        return response


# --- live stream (Server-Sent Events) ----------------------------------------------------------------


def _authenticate(request: HttpRequest) -> Any:
    """The JWT user of a plain Django request (the SSE view is not a DRF view: DRF has no async views)."""
    try:
        result = DriverJWTAuthentication().authenticate(Request(request))
    except (InvalidToken, AuthenticationFailed) as exc:
        raise ApplicationError(str(exc.detail), code="not_authenticated") from exc
    if result is None:
        raise ApplicationError(_("Authentication credentials were not provided."), code="not_authenticated")
    return result[0]


def _error(exc: ApplicationError, status_code: int) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=status_code)


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n".encode()


async def session_live(request: HttpRequest, pk: int) -> HttpResponse:
    """GET /api/v1/sessions/{id}/live: `session` events (status, energy, power, cost) whenever the session
    changes, `end` when it is COMPLETED or FAILED, a comment line as keep-alive. Fed by the channel layer
    group driver_session.<id>; the state is re-read at least every CPO_DRIVER_LIVE_POLL_S seconds, so a
    lost message only delays an update."""
    if request.method != "GET":
        return JsonResponse({"code": "method_not_allowed", "detail": _("Only GET."), "fields": {}}, status=405)
    try:
        user = await sync_to_async(_authenticate)(request)
        session = await sync_to_async(driver_session_get)(driver=user, pk=pk)
    except ApplicationError as exc:
        return _error(exc, 401 if exc.code == "not_authenticated" else exc.http_status)
    return StreamingHttpResponse(_live_events(user, session.pk), content_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _snapshot(user: Any, pk: int) -> tuple[dict[str, Any], bool]:
    try:
        session = driver_session_get(driver=user, pk=pk)
        body = session_json(session, with_transitions=False)
        return body, is_final(session)
    finally:
        # A stream lasts as long as a charge: hand the connection back to the pool between reads.
        close_old_connections()


async def _live_events(user: Any, pk: int) -> AsyncIterator[bytes]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = driver_services.group_name(pk)
    await layer.group_add(group, channel)
    poll_s = float(getattr(settings, "CPO_DRIVER_LIVE_POLL_S", 15))
    ends_at = asyncio.get_running_loop().time() + float(getattr(settings, "CPO_DRIVER_LIVE_MAX_S", 3600))
    receiving: asyncio.Future[Any] | None = None
    try:
        last = None
        while True:
            body, final = await sync_to_async(_snapshot, thread_sensitive=False)(user, pk)
            if body != last:
                yield _sse("session", body)
                last = body
            if final:
                yield _sse("end", {"id": pk, "status": body["status"]})
                return
            if asyncio.get_running_loop().time() >= ends_at:  # the app reconnects for more
                yield _sse("timeout", {"id": pk, "status": body["status"]})
                return
            if receiving is None:
                receiving = asyncio.ensure_future(layer.receive(channel))
            done, _pending = await asyncio.wait({receiving}, timeout=poll_s)
            if not done:
                yield b": keep-alive\n\n"
                continue
            failed = receiving.exception()
            receiving = None
            if failed is not None:  # the channel layer is down: keep going by polling, without spinning
                logger.warning("live stream of session %s: channel layer receive failed: %r", pk, failed)
                await asyncio.sleep(poll_s)
    finally:
        if receiving is not None:
            receiving.cancel()
        try:
            await layer.group_discard(group, channel)
        except Exception:
            logger.warning("live stream of session %s: could not leave %s", pk, group, exc_info=True)
