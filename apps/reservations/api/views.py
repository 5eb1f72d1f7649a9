"""Driver reservations: reserve a connector (idempotent; the charger's answer decides), list, read,
cancel."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.reservations import services
from apps.reservations.api.serializers import ReservationInput, ReservationOutput, reservation_json
from apps.reservations.choices import ReservationStatus
from apps.reservations.selectors import reservation_get, reservation_list
from cpo.api import THROTTLES, CursorPagination, error_responses, validated
from cpo.exceptions import Conflict

TAGS = ["reservations"]
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="A key the app makes per reservation attempt (e.g. a UUID). Repeating it returns the same "
    "reservation instead of making another.",
)
_CODES_409 = (
    "409: connector_reserved (held for someone else), reservation_exists (you hold one already), "
    "any_connector_unsupported (no connector given, and the charger cannot hold any of its connectors), "
    "no_free_connector (no connector given, and none is free), "
    "connector_occupied, connector_faulted, connector_unavailable, reservation_rejected (the charger's "
    "answer, or what we know of the connector), charger_offline, charger_no_answer, idempotency_key_reused. "
    "A refusal by the charger carries the FAILED reservation as `reservation`."
)


class ReservationListView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "start"
    throttle_methods = ("POST",)

    @extend_schema(
        tags=TAGS,
        summary="My reservations, newest first (cursor-paginated)",
        responses={200: ReservationOutput(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        paginator = CursorPagination()
        page = paginator.paginate_queryset(reservation_list(driver=request.user), request, view=self)
        return paginator.get_paginated_response([reservation_json(r) for r in page or []])

    @extend_schema(
        tags=TAGS,
        summary="Reserve a connector",
        description="Sends ReserveNow to the charger with your app token and waits for its answer: "
        "201 RESERVED with `expires_at` when it accepts. " + _CODES_409 + " 404: charger_not_found, "
        "connector_not_found. 400: idempotency_key_required, validation_failed (`minutes` or "
        "`expires_at` out of the operator's range, or both sent).",
        parameters=[IDEMPOTENCY_HEADER],
        request=ReservationInput,
        responses={
            201: ReservationOutput,
            200: OpenApiResponse(ReservationOutput, description="A replay of the same key"),
            202: OpenApiResponse(
                ReservationOutput, description="PENDING: the charger has not answered yet; poll GET"
            ),
            **error_responses(400, 401, 404, 409, 429),
        },
    )
    def post(self, request: Request) -> Response:
        data = validated(ReservationInput, request.data)
        reservation, created = services.reservation_create(
            driver=request.user,
            charge_point_id=data["charge_point"],
            evse_id=data.get("connector"),
            minutes=data.get("minutes"),
            expires_at=data.get("expires_at"),
            idempotency_key=request.headers.get("Idempotency-Key", "").strip(),
        )
        reservation = services.reservation_wait(reservation=reservation)
        body = reservation_json(reservation)
        headers = {} if created else {"Idempotent-Replayed": "true"}
        if reservation.status == ReservationStatus.FAILED:
            error = Conflict(_refusal_text(reservation.failure_code), code=reservation.failure_code)
            return Response(
                {**error.as_dict(), "reservation": body}, status=error.http_status, headers=headers
            )
        if reservation.status == ReservationStatus.PENDING:
            # The charger has not answered yet: the app polls GET reservations/{id}.
            return Response(body, status=status.HTTP_202_ACCEPTED, headers=headers)
        return Response(
            body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK, headers=headers
        )


def _refusal_text(code: str) -> str:
    texts = {
        "connector_occupied": _("The connector is in use."),
        "connector_faulted": _("The connector is faulted."),
        "connector_unavailable": _("The connector is unavailable."),
        "no_free_connector": _("The charger has no free connector."),
        "charger_offline": _("The charger is offline."),
        "charger_no_answer": _("The charger did not answer."),
    }
    return str(texts.get(code, _("The charger refused the reservation.")))


class ReservationDetailView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "stop"
    throttle_methods = ("DELETE",)

    @extend_schema(
        tags=TAGS,
        summary="One of my reservations",
        responses={200: ReservationOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(reservation_json(reservation_get(driver=request.user, pk=pk)))

    @extend_schema(
        tags=TAGS,
        summary="Cancel a reservation",
        description="Sends CancelReservation to the charger. Cancelling one that has ended (expired, "
        "consumed, cancelled) changes nothing and answers it as it is.",
        responses={200: ReservationOutput, **error_responses(401, 404, 429)},
    )
    def delete(self, request: Request, pk: int) -> Response:
        reservation = services.reservation_cancel(reservation=reservation_get(driver=request.user, pk=pk))
        return Response(reservation_json(reservation))
