"""Grid events for utility systems: declare one for your operator's sites, list yours, read or cancel
one. Authenticated by the integration's API key (`X-API-Key`), issued in the admin."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.smartcharging import integrations, services
from apps.smartcharging.api.authentication import GridIntegrationKeyAuthentication, IsGridIntegration
from apps.smartcharging.api.serializers import GridEventInput, GridEventOutput, grid_event_json
from cpo.api import CursorPagination, error_responses, validated

TAGS = ["grid events"]
_AUTH = (
    "Authenticated by the `X-API-Key` header: the key issued to your integration in the operator's admin "
    "(401 not_authenticated without it, invalid_api_key for an unknown or revoked one)."
)


class GridIntegrationView(APIView):
    authentication_classes = [GridIntegrationKeyAuthentication]
    permission_classes = [IsGridIntegration]


class GridEventListView(GridIntegrationView):
    @extend_schema(
        tags=TAGS,
        summary="The grid events you declared, newest first (cursor-paginated)",
        description=_AUTH,
        responses={200: GridEventOutput(many=True), **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        paginator = CursorPagination()
        page = paginator.paginate_queryset(
            integrations.grid_event_list_for(integration=request.auth), request, view=self
        )
        return paginator.get_paginated_response([grid_event_json(e) for e in page or []])

    @extend_schema(
        tags=TAGS,
        summary="Declare a grid event (demand response)",
        description="The budgets of the sites named (by id, or every site of the locations named) drop by "
        "`reduce_percent` (default 20) from `starts_at` (default now) until `ends_at` (or for `minutes`); "
        "their chargers are rebalanced when it starts and when it ends. Where events overlap the deepest "
        "cut wins. " + _AUTH + " 400: validation_failed, no_sites, invalid_percent, invalid_window. "
        "403: site_not_allowed, location_not_allowed (another operator's). 404: site_not_found, "
        "location_not_found. A repeat with the same `reference` answers 200 with the event it made.",
        request=GridEventInput,
        responses={
            201: GridEventOutput,
            200: OpenApiResponse(GridEventOutput, description="A repeat of the same reference"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def post(self, request: Request) -> Response:
        data = validated(GridEventInput, request.data)
        event, created = integrations.grid_event_api_declare(
            integration=request.auth,
            site_ids=data.get("sites") or [],
            location_ids=data.get("locations") or [],
            reduce_percent=data["reduce_percent"],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            reference=data["reference"],
        )
        return Response(
            grid_event_json(event),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={} if created else {"Idempotent-Replayed": "true"},
        )


class GridEventDetailView(GridIntegrationView):
    @extend_schema(
        tags=TAGS,
        summary="One grid event you declared",
        description=_AUTH,
        responses={200: GridEventOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(grid_event_json(integrations.grid_event_get_for(integration=request.auth, pk=pk)))

    @extend_schema(
        tags=TAGS,
        summary="Cancel a grid event",
        description="Ends it now: the budgets are restored and the sites rebalanced. Cancelling one that "
        "has ended changes nothing and answers it as it is. " + _AUTH,
        responses={200: GridEventOutput, **error_responses(401, 404)},
    )
    def delete(self, request: Request, pk: int) -> Response:
        event = integrations.grid_event_get_for(integration=request.auth, pk=pk)
        event = services.grid_event_end(event=event, actor=request.auth, source="api")
        return Response(grid_event_json(event))
