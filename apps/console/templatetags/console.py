"""The console's parts of admin pages: the operations dashboard (on the admin index) and the live panel
of a charge point page. Both read through the console's selectors, scoped to the requesting user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import template
from django.db.models import F
from django.urls import reverse
from django.utils.http import urlencode

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.console.choices import ChargerState
from apps.console.selectors import charger_rows, dashboard_map, dashboard_snapshot, uptime_report
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.commands_catalog import catalogue_for
from apps.ocpp_gateway.models import OcppCommand, OcppMessage
from apps.smartcharging.models import ChargerConfigurationKey
from apps.stations.models import ChargePoint, Connector, DeviceVariable, Evse
from cpo import clock

register = template.Library()

# The commands the charge point page offers as buttons (when the charger's version has them).
WRITABLE = frozenset({"ReadWrite", "WriteOnly"})
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
    may_set_variables = may_send and "SetVariables" in catalogue
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
        # The last frames (the index on charge point and time), for those who may read the message log.
        "recent_messages": OcppMessage.objects.filter(charge_point=charge_point).order_by("-at")[:15]
        if user.has_perm("ocpp_gateway.view_ocppmessage")
        else [],
        "commands_url": reverse("admin:ocpp_gateway_ocppcommand_changelist")
        + f"?charge_point__id__exact={charge_point.pk}",
        "uptime_rows": uptime_rows,
        "config_editable": may_send and "ChangeConfiguration" in catalogue,
        # OCPP 2.x: the device model as last reported; writable values link to a pre-filled SetVariables.
        "device_variables": [
            (variable, _set_variables_link(send_url, variable) if may_set_variables else "")
            for variable in DeviceVariable.objects.filter(charge_point=charge_point).order_by(
                "component", "evse_id", "connector_id", "variable", "attribute_type"
            )[:100]
        ],
    }


def _set_variables_link(send_url: str, variable: DeviceVariable) -> str:
    """The send page's SetVariables form pre-filled with this variable (writable ones only)."""
    if variable.mutability not in WRITABLE:
        return ""
    query = {
        "action": "SetVariables",
        "assignments": f"{device_reference(variable)} = {variable.value}",
        "attribute_type": variable.attribute_type,
    }
    return f"{send_url}?{urlencode(query)}"


def device_reference(variable: DeviceVariable) -> str:
    """How the SetVariables form names a variable: Component:instance@evse/connector.Variable:instance."""
    component = variable.component + (
        f":{variable.component_instance}" if variable.component_instance else ""
    )
    if variable.evse_id is not None:
        component += f"@{variable.evse_id}" + (
            f"/{variable.connector_id}" if variable.connector_id is not None else ""
        )
    name = variable.variable + (f":{variable.variable_instance}" if variable.variable_instance else "")
    return f"{component}.{name}"


@register.filter
def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}"
