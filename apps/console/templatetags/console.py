"""The console's parts of admin pages: the operations dashboard (on the admin index) and the live panel
of a charge point page. Both read through the console's selectors, scoped to the requesting user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import template
from django.db.models import F
from django.urls import reverse

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.console.choices import ChargerState
from apps.console.selectors import charger_rows, dashboard_map, dashboard_snapshot, uptime_report
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.commands_catalog import catalogue_for
from apps.ocpp_gateway.models import OcppCommand
from apps.smartcharging.models import ChargerConfigurationKey
from apps.stations.models import ChargePoint, Connector, Evse
from cpo import clock

register = template.Library()

# The commands the charge point page offers as buttons (when the charger's version has them).
QUICK_ACTIONS = ("Reset", "ChangeAvailability", "TriggerMessage", "UnlockConnector", "GetConfiguration")


@register.inclusion_tag("admin/console/dashboard.html", takes_context=True)
def console_dashboard(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    snapshot = dashboard_snapshot(request.user)
    view = dashboard_map(snapshot)
    return {
        "snapshot": snapshot,
        "map": view,
        # fit() keeps the order of the locations it was given
        "markers": list(zip(view.markers, snapshot["locations"], strict=True)),
        "states": [state.value for state in ChargerState],
        "alerts_url": reverse("admin:console_alert_changelist") + "?state=open",
        "uptime_url": reverse("admin:console_uptime"),
        "charge_points_url": reverse("admin:stations_chargepoint_changelist"),
        "commands_url": reverse("admin:ocpp_gateway_ocppcommand_changelist"),
        "perms": context.get("perms"),
    }


@register.inclusion_tag("admin/console/chargepoint_panel.html", takes_context=True)
def charge_point_console(context: dict[str, Any], charge_point: ChargePoint | None) -> dict[str, Any]:
    if charge_point is None or charge_point.pk is None:
        return {"charge_point": None}
    request = context["request"]
    user = request.user
    row = charger_rows(user, charge_points=ChargePoint.objects.filter(pk=charge_point.pk))[0]
    holder = presence.lookup(charge_point.identity)
    may_send = user.has_perm("ocpp_gateway.add_ocppcommand")
    catalogue = catalogue_for(charge_point) if may_send else {}
    send_url = reverse("admin:ocpp_gateway_ocppcommand_send", args=[charge_point.pk])
    now = clock.now()
    uptime_rows = [
        row
        for row in uptime_report(
            user, year=now.year, month=now.month, now=now, charge_point_id=charge_point.pk
        )
        if row.identity
    ]
    return {
        "charge_point": charge_point,
        "state": row.state,
        "holder": holder,
        "connected_at": datetime.fromtimestamp(holder.connected_at, tz=UTC) if holder else None,
        "last_frame_at": datetime.fromtimestamp(holder.last_frame_at, tz=UTC) if holder else None,
        "connectors": Connector.objects.filter(evse__charge_point=charge_point)
        .select_related("evse")
        .order_by("evse__evse_id", "connector_id"),
        "evses": Evse.objects.filter(charge_point=charge_point).order_by("evse_id"),
        "active_sessions": ChargingSession.objects.filter(
            charge_point=charge_point, status=SessionStatus.ACTIVE
        )
        .select_related("id_token")
        .order_by("-started_at"),
        "recent_sessions": ChargingSession.objects.filter(charge_point=charge_point)
        .annotate(energy_delivered_wh=F("meter_stop_wh") - F("meter_start_wh"))
        .order_by("-started_at")[:10],
        "configuration": ChargerConfigurationKey.objects.filter(charge_point=charge_point).order_by("key"),
        "commands": OcppCommand.objects.filter(charge_point=charge_point)
        .select_related("requested_by")
        .order_by("-created_at")[:15],
        "may_send": may_send,
        "may_view_commands": user.has_perm("ocpp_gateway.view_ocppcommand"),
        "may_view_messages": user.has_perm("ocpp_gateway.view_ocppmessage"),
        "quick_actions": [action for action in QUICK_ACTIONS if action in catalogue],
        "send_url": send_url,
        "live_url": reverse("admin:console_chargepoint_live", args=[charge_point.pk]),
        "messages_url": reverse("admin:ocpp_gateway_ocppmessage_changelist")
        + f"?charge_point__id__exact={charge_point.pk}",
        "commands_url": reverse("admin:ocpp_gateway_ocppcommand_changelist")
        + f"?charge_point__id__exact={charge_point.pk}",
        "uptime_rows": uptime_rows,
        "config_editable": may_send and "ChangeConfiguration" in catalogue,
    }


@register.filter
def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}"
