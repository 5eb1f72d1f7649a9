"""Charger discovery for drivers: nearby search (PostGIS ST_DWithin on geography) and one charger.
An interface on top of the apps (docs/architecture.md): it shows the gateway's presence and the tariffs'
prices with the stations."""

from __future__ import annotations

from typing import Any

from django.contrib.gis.geos import Point
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.choices import IdTokenType
from apps.accounts.models import IdToken
from apps.charging.driver_services import APP_TOKEN_PREFIX
from apps.ocpp_gateway import presence
from apps.stations.api.serializers import ChargerOutput, NearbyQuery, charger_data
from apps.stations.models import ChargePoint
from apps.stations.selectors import chargepoint_get_for_driver, chargepoint_list_nearby
from apps.tariffs.selectors import price_summary_for_connectors
from cpo import clock
from cpo.api import error_responses, validated
from cpo.exceptions import NotFound

TAGS = ["chargers"]


def _charger_list_data(chargers: list[ChargePoint], request: Request) -> list[dict[str, Any]]:
    now = clock.now()
    connected = presence.online([cp.identity for cp in chargers])
    connector_ids = [c.pk for cp in chargers for e in cp.evses.all() for c in e.connectors.all()]
    # Priced for the token an app start uses (the driver's app token): the price shown is the price charged.
    token = (
        IdToken.objects.filter(owner=request.user, type=IdTokenType.CENTRAL, uid__startswith=APP_TOKEN_PREFIX)
        .order_by("pk")
        .first()
        if request.user.is_authenticated
        else None
    )
    prices = (
        price_summary_for_connectors(connector_ids=connector_ids, id_token=token, at=now)
        if connector_ids
        else {}
    )
    return [charger_data(cp, online=cp.identity in connected, prices=prices, now=now) for cp in chargers]


class NearbyView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="Chargers near a point, nearest first (at most 50)",
        parameters=[
            NearbyQuery,
            OpenApiParameter("available", bool, description="Only chargers available now."),
        ],
        responses={200: ChargerOutput(many=True), **error_responses(400, 401)},
    )
    def get(self, request: Request) -> Response:
        q = validated(NearbyQuery, request.query_params)
        min_power_w = int(q["min_power_kw"] * 1000) if q.get("min_power_kw") else None
        chargers = chargepoint_list_nearby(
            point=Point(q["lng"], q["lat"], srid=4326),
            radius_m=q["radius"],
            connector_type=q.get("connector_type") or None,
            min_power_w=min_power_w,
            available=q["available"],
            online=presence.online,
        )
        return Response(_charger_list_data(chargers, request))


class ChargerDetailView(APIView):
    @extend_schema(
        tags=TAGS,
        summary="One charger with its connectors, live status and prices",
        responses={200: ChargerOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        cp = chargepoint_get_for_driver(pk=pk)
        if cp is None:
            raise NotFound(_("No charger with id {id}.").format(id=pk), code="charger_not_found")
        return Response(_charger_list_data([cp], request)[0])
