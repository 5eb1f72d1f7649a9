"""Admin of the operations console: alerts (acknowledged by staff), where alerts are sent, the status
history and the monthly uptime report (with its CSV export), and the charge point page's live panel
(its JSON feed). The dashboard itself is the admin index (templates/admin/index.html,
templatetags/console.py)."""

from __future__ import annotations

import csv
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.console.models import Alert, AlertChannels, AlertDelivery, StatusInterval
from apps.console.selectors import charger_rows, uptime_report
from apps.console.services import alert_acknowledge
from apps.ocpp_gateway.admin import charge_point_link
from apps.ocpp_gateway.presence import lookup
from apps.stations.models import ChargePoint, Connector
from cpo import clock
from cpo.admin import BaseModelAdmin, BaseTabularInline, ReadOnlyAdminMixin


class AlertStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (
            ("open", _("Open")),
            ("unacknowledged", _("Open, not acknowledged")),
            ("resolved", _("Resolved")),
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "unacknowledged":
            return queryset.filter(resolved_at__isnull=True, acknowledged_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class AlertDeliveryInline(ReadOnlyAdminMixin, BaseTabularInline):
    model = AlertDelivery
    extra = 0
    fields = ("channel", "status", "attempts", "last_error", "delivered_at")
    readonly_fields = fields


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Alerts of the user's organisations; staff acknowledge them (audited)."""

    list_display = (
        "opened_at",
        "kind",
        "charger",
        "message",
        "is_open",
        "acknowledged",
        "resolved_at",
        "organisation",
    )
    list_filter = (AlertStateFilter, "kind", "opened_at", "organisation")
    search_fields = ("message", "charge_point__identity", "subject")
    list_select_related = ("charge_point", "organisation", "acknowledged_by")
    actions = ["acknowledge"]
    inlines = [AlertDeliveryInline]
    fields = (
        "organisation",
        "charge_point",
        "kind",
        "subject",
        "message",
        "detail",
        "opened_at",
        "resolved_at",
        "acknowledged_at",
        "acknowledged_by",
    )
    readonly_fields = fields

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: Alert) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity if obj.charge_point else None)

    @admin.display(description=_("open"), boolean=True)
    def is_open(self, obj: Alert) -> bool:
        return obj.resolved_at is None

    @admin.display(description=_("acknowledged"), boolean=True)
    def acknowledged(self, obj: Alert) -> bool:
        return obj.acknowledged_at is not None

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("console.change_alert")

    @admin.action(description=_("Acknowledge the selected alerts"), permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for alert in queryset.order_by("pk"):
            alert_acknowledge(alert=alert, actor=request.user, source="admin")
            count += 1
        messages.success(
            request,
            ngettext("%(n)d alert acknowledged.", "%(n)d alerts acknowledged.", count) % {"n": count},
        )


class AlertChannelsForm(forms.ModelForm):
    webhook_url = forms.URLField(
        label=_("webhook URL"), required=False, max_length=500, assume_scheme="https"
    )

    class Meta:
        model = AlertChannels
        fields = ("organisation", "emails", "webhook_url", "webhook_secret")
        widgets = {"webhook_secret": forms.PasswordInput(render_value=True)}

    def clean_emails(self) -> str:
        value = self.cleaned_data.get("emails") or ""
        validator = forms.EmailField()
        bad = []
        for part in value.replace(",", "\n").splitlines():
            if part.strip():
                try:
                    validator.clean(part.strip())
                except forms.ValidationError:
                    bad.append(part.strip())
        if bad:
            raise forms.ValidationError(
                _("Not e-mail addresses: {addresses}").format(addresses=", ".join(bad)), code="invalid_email"
            )
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("webhook_url") and len(cleaned.get("webhook_secret") or "") < 16:
            self.add_error(
                "webhook_secret",
                forms.ValidationError(
                    _("A webhook needs a secret of at least 16 characters to sign its requests."),
                    code="secret_required",
                ),
            )
        return cleaned


@admin.register(AlertChannels)
class AlertChannelsAdmin(BaseModelAdmin):
    form = AlertChannelsForm
    list_display = ("organisation", "emails", "webhook_url", "updated_at")
    list_select_related = ("organisation",)


# --- status history and uptime ---------------------------------------------------------------------


class UptimeMonthForm(forms.Form):
    month = forms.RegexField(
        label=_("month"),
        regex=r"^\d{4}-(0[1-9]|1[0-2])$",
        error_messages={"invalid": _("Give the month as YYYY-MM, e.g. 2026-11.")},
    )


def _seconds_as_hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


@admin.register(StatusInterval)
class StatusIntervalAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Status history per connector as intervals, and the monthly uptime report (…/uptime/)."""

    list_display = ("charger", "evse_id", "connector_id", "status", "error_code", "started_at", "ended_at")
    list_filter = ("status", "started_at")
    search_fields = ("charge_point__identity",)
    list_select_related = ("charge_point",)

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: StatusInterval) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity)

    def get_urls(self) -> list[Any]:
        return [
            path("uptime/", self.admin_site.admin_view(self.uptime_view), name="console_uptime"),
            path(
                "chargepoint/<int:charge_point_id>/live/",
                self.admin_site.admin_view(self.charge_point_live_view),
                name="console_chargepoint_live",
            ),
            *super().get_urls(),
        ]

    def uptime_view(self, request: HttpRequest) -> HttpResponse:
        """Uptime per connector and location for a month (?month=YYYY-MM, default this month);
        &format=csv downloads it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = clock.now()
        form = UptimeMonthForm(request.GET or {"month": f"{now:%Y-%m}"})
        rows = []
        if form.is_valid():
            year, month = (int(part) for part in form.cleaned_data["month"].split("-"))
            rows = uptime_report(request.user, year=year, month=month, now=now)
            if request.GET.get("format") == "csv":
                return self._csv(rows, form.cleaned_data["month"])
        reasons = sorted({reason for row in rows for reason in row.uptime.excluded_s})
        page = {
            **self.admin_site.each_context(request),
            "title": _("Uptime"),
            "opts": self.opts,
            "form": form,
            "rows": rows,
            "reasons": reasons,
            "csv_url": f"{request.path}?month={form.data.get('month', '')}&format=csv",
        }
        return TemplateResponse(request, "admin/console/uptime.html", page)

    def _csv(self, rows: list[Any], month: str) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="uptime-{month}.csv"'
        reasons = sorted({reason for row in rows for reason in row.uptime.excluded_s})
        writer = csv.writer(response)
        writer.writerow(
            [
                "location",
                "charge_point",
                "evse",
                "connector",
                "uptime_percent",
                "up_h",
                "down_h",
                *[f"excluded_h: {reason}" for reason in reasons],
            ]
        )
        for row in rows:
            percent = row.uptime.percent
            writer.writerow(
                [
                    row.location,
                    row.identity or "(location total)",
                    row.evse_id or "",
                    row.connector_id or "",
                    "" if percent is None else str(percent),
                    _seconds_as_hours(row.uptime.up_s),
                    _seconds_as_hours(row.uptime.down_s),
                    *[_seconds_as_hours(row.uptime.excluded_s.get(reason, 0.0)) for reason in reasons],
                ]
            )
        return response

    def charge_point_live_view(self, request: HttpRequest, charge_point_id: int) -> JsonResponse:
        """The charge point page's live panel: connection and connector statuses (JSON)."""
        charge_point = ChargePoint.objects.for_actor(request.user).filter(pk=charge_point_id).first()
        if charge_point is None:
            raise Http404(_("No charge point with id {id} that you may see.").format(id=charge_point_id))
        if not request.user.has_perm("stations.view_chargepoint"):
            raise PermissionDenied
        row = charger_rows(request.user, charge_points=ChargePoint.objects.filter(pk=charge_point.pk))[0]
        holder = lookup(charge_point.identity)
        connectors = [
            {
                "evse_id": c.evse.evse_id,
                "connector_id": c.connector_id,
                "status": c.status,
                "error_code": c.error_code,
                "since": c.status_received_at.isoformat() if c.status_received_at else None,
            }
            for c in Connector.objects.filter(evse__charge_point=charge_point)
            .select_related("evse")
            .order_by("evse__evse_id", "connector_id")
        ]
        return JsonResponse(
            {
                "identity": charge_point.identity,
                "state": row.state,
                "online": holder is not None,
                "status": charge_point.status,
                "availability": charge_point.availability,
                "connectors": connectors,
                "url": reverse("admin:stations_chargepoint_change", args=[charge_point.pk]),
            }
        )
