"""Admin for the station registry: locations (map), charge points (with EVSEs), EVSEs (with connectors)
and connectors, plus CSV import/export of locations and charge points."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.gis.admin import GISModelAdmin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from apps.console import bulk
from apps.stations import keys
from apps.stations.models import ChargePoint, ChargerEvent, Connector, DeviceVariable, Evse, Location
from apps.stations.resources import ChargePointResource, LocationResource
from apps.stations.services import chargepoint_apply_auth_key, chargepoint_generate_auth_key, make_point
from apps.tariffs.admin import (
    TariffInForceListFilter,
    tariff_in_force_display,
    warn_charge_point_without_tariff,
    warn_charge_points_without_tariff,
)
from cpo.admin import BaseModelAdmin, BaseTabularInline, ReadOnlyAdminMixin, ScopedImportExportMixin
from cpo.exceptions import ValidationFailed

# --- locations -----------------------------------------------------------------------------------


class LocationAdminForm(forms.ModelForm):
    """Coordinates from the map, or typed as latitude/longitude (typed values win when changed)."""

    latitude = forms.FloatField(label=_("latitude"), required=False, help_text=_("e.g. 52.5219"))
    longitude = forms.FloatField(label=_("longitude"), required=False, help_text=_("e.g. 13.4132"))
    actor: Any = None

    class Meta:
        model = Location
        fields = (
            "organisation",
            "name",
            "is_published",
            "address",
            "postal_code",
            "city",
            "country",
            "time_zone",
            "point",
            "opening_hours",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.point is not None:
            self.initial.setdefault("latitude", self.instance.latitude)
            self.initial.setdefault("longitude", self.instance.longitude)
        if "point" in self.fields:
            # A missing point is reported once, by the model, in words an operator understands.
            self.fields["point"].required = False

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        typed = {"latitude", "longitude"} & set(self.changed_data)
        latitude, longitude = cleaned.get("latitude"), cleaned.get("longitude")
        if typed and (latitude is not None or longitude is not None):
            try:
                cleaned["point"] = make_point(latitude=latitude, longitude=longitude)
            except ValidationFailed as exc:
                missing = "latitude" if latitude is None else "longitude"
                field = next((name for name in exc.fields if name in ("latitude", "longitude")), missing)
                self.add_error(field, exc.detail)
        return cleaned


@admin.register(Location)
class LocationAdmin(ScopedImportExportMixin, BaseModelAdmin, GISModelAdmin):
    form = LocationAdminForm
    resource_classes = [LocationResource]
    gis_widget_kwargs = {"attrs": {"default_lat": 51.0, "default_lon": 10.0, "default_zoom": 5}}
    list_display = ("name", "city", "country", "organisation", "charge_point_count", "is_published")
    list_filter = ("country", "organisation", "is_published", "time_zone")
    search_fields = ("name", "address", "city", "postal_code")
    list_select_related = ("organisation",)
    readonly_fields = ("created_at", "updated_at", "tariff_in_force")
    fieldsets = (
        (None, {"fields": ("organisation", "name", "is_published")}),
        (_("Address"), {"fields": ("address", "postal_code", "city", "country", "time_zone")}),
        (_("Position"), {"fields": ("latitude", "longitude", "point")}),
        (_("Opening hours"), {"fields": ("opening_hours",)}),
        (_("Tariff"), {"fields": ("tariff_in_force",)}),
        (_("Record"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description=_("tariff in force"))
    def tariff_in_force(self, obj: Location) -> str:
        return tariff_in_force_display(obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super().get_queryset(request).annotate(charge_point_count=Count("charge_points", distinct=True))
        )

    @admin.display(description=_("charge points"), ordering="charge_point_count")
    def charge_point_count(self, obj: Location) -> str:
        url = reverse("admin:stations_chargepoint_changelist") + f"?location__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.charge_point_count)


# --- charge points -------------------------------------------------------------------------------


class ChargePointAdminForm(forms.ModelForm):
    """The authorisation key is write-only: typed here, validated, stored only as a salted hash."""

    set_auth_key = forms.CharField(
        label=_("set authorisation key"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=format_lazy(
            _(
                "{min} to {max} printable characters, no spaces. Stored only as a salted hash; leave "
                "empty to keep the current key. A key turns security profile 0 into 1."
            ),
            min=keys.MIN_KEY_LENGTH,
            max=keys.MAX_KEY_LENGTH,
        ),
    )
    actor: Any = None

    class Meta:
        model = ChargePoint
        fields = (
            "identity",
            "organisation",
            "location",
            "vendor",
            "model",
            "serial_number",
            "max_power_w",
            "ocpp_protocol",
            "registration_status",
            "availability",
            "security_profile",
        )

    def clean_set_auth_key(self) -> str:
        key = self.cleaned_data.get("set_auth_key") or ""
        if key:
            keys.validate_key(key)
        return key

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        key = cleaned.get("set_auth_key")
        profile = cleaned.get("security_profile", self.instance.security_profile)
        if key:
            self.instance.security_profile = profile
            chargepoint_apply_auth_key(charge_point=self.instance, key=key)
            if "security_profile" in cleaned:
                cleaned["security_profile"] = self.instance.security_profile
        elif profile and not self.instance.auth_key_hash and "set_auth_key" not in self.errors:
            self.add_error(
                "set_auth_key",
                ValidationError(
                    _(
                        "Security profiles 1 and 2 need an authorisation key: set one here, or choose "
                        "profile 0 and generate a key later with the action on the list."
                    ),
                    code="key_required",
                ),
            )
        return cleaned


class OnlineListFilter(admin.SimpleListFilter):
    """Connected chargers, as the gateway's presence records say (copied to `is_online` periodically)."""

    title = _("connected")
    parameter_name = "connected"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", _("Yes")), ("no", _("No")))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(is_online=True)
        if self.value() == "no":
            return queryset.filter(is_online=False)
        return queryset


class BulkFailedListFilter(admin.SimpleListFilter):
    """The chargers of the user's last bulk operation that did not end well (to run it again on them)."""

    title = _("last bulk operation")
    parameter_name = "bulk_failed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", _("Failed")),)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(pk__in=bulk.failed_ids(request.user))
        return queryset


class EvseInline(BaseTabularInline):
    model = Evse
    extra = 0
    fields = ("evse_id", "emi3_id", "availability", "connector_summary")
    readonly_fields = ("connector_summary",)
    show_change_link = True

    @admin.display(description=_("connectors"))
    def connector_summary(self, obj: Evse) -> str:
        if obj.pk is None:
            return "-"
        return (
            ", ".join(
                f"{c.connector_id}: {c.get_standard_display()} ({c.get_status_display()})"
                for c in obj.connectors.all()
            )
            or "-"
        )


# Fields the operator sets; every other field is reported by the charger and shown read-only.
CHARGE_POINT_SECTIONS: tuple[tuple[Any, tuple[str, ...]], ...] = (
    (None, ("identity", "organisation", "location")),
    (_("Hardware"), ("vendor", "model", "serial_number", "max_power_w")),
    (
        _("OCPP and security"),
        (
            "ocpp_protocol",
            "registration_status",
            "availability",
            "security_profile",
            "has_auth_key",
            "set_auth_key",
        ),
    ),
)
_NEVER_SHOWN = frozenset({"id", "auth_key_hash"})


@admin.register(ChargePoint)
class ChargePointAdmin(ScopedImportExportMixin, BaseModelAdmin):
    form = ChargePointAdminForm
    resource_classes = [ChargePointResource]
    list_display = (
        "identity",
        "location",
        "organisation",
        "vendor_model",
        "firmware_version",
        "ocpp_protocol",
        "registration_status",
        "status",
        "last_seen_at",
        "connected",
    )
    list_filter = (
        OnlineListFilter,
        BulkFailedListFilter,
        TariffInForceListFilter,
        "status",
        "registration_status",
        "ocpp_protocol",
        "organisation",
        "location",
    )
    search_fields = ("identity", "serial_number", "vendor", "model", "location__name")
    search_help_text = _("identity, serial number, vendor, model or location name")
    list_select_related = ("organisation", "location")
    inlines = [EvseInline]
    actions = [
        "generate_auth_key",
        "accept_pending",
        "bulk_reset",
        "bulk_inoperative",
        "bulk_operative",
        "bulk_status",
    ]

    def reported_fields(self) -> list[str]:
        placed = {name for _title, names in CHARGE_POINT_SECTIONS for name in names}
        return [f.name for f in self.model._meta.concrete_fields if f.name not in placed | _NEVER_SHOWN]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets: list[Any] = [(title, {"fields": names}) for title, names in CHARGE_POINT_SECTIONS]
        if obj is not None:
            fieldsets.append((_("Tariff"), {"fields": ("tariff_in_force",)}))
            fieldsets.append((_("Reported by the charger"), {"fields": self.reported_fields()}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [
            *super().get_readonly_fields(request, obj),
            "has_auth_key",
            "tariff_in_force",
            *self.reported_fields(),
        ]

    @admin.display(description=_("tariff in force"))
    def tariff_in_force(self, obj: ChargePoint) -> str:
        return tariff_in_force_display(obj)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if request.method == "GET":
            warn_charge_points_without_tariff(request, self.get_queryset(request))
        return super().changelist_view(request, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        if request.method == "GET":
            charge_point = self.get_object(request, object_id)
            if charge_point is not None:
                warn_charge_point_without_tariff(request, charge_point)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("vendor / model"), ordering="vendor")
    def vendor_model(self, obj: ChargePoint) -> str:
        return " / ".join(part for part in (obj.vendor, obj.model) if part) or "-"

    @admin.display(description=_("connected"), boolean=True, ordering="is_online")
    def connected(self, obj: ChargePoint) -> bool:
        return obj.is_online

    @admin.display(description=_("authorisation key set"), boolean=True)
    def has_auth_key(self, obj: ChargePoint) -> bool:
        return obj.has_auth_key

    @admin.action(description=_("Generate a new authorisation key"), permissions=["change"])
    def generate_auth_key(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Give each selected charger a new random key and show it once; only its hash is kept."""
        for charge_point in queryset.order_by("pk"):
            key = chargepoint_generate_auth_key(charge_point=charge_point, actor=request.user)
            messages.warning(
                request,
                format_html(
                    _(
                        "New authorisation key for {identity}: <code>{key}</code> Copy it now and "
                        "configure the charger with it; it is not shown again."
                    ),
                    identity=charge_point.identity,
                    key=key,
                ),
            )

    # --- bulk operations (apps.console.bulk): one command per charger, one outcome per charger ---------

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ocpp_gateway.add_ocppcommand")

    def _bulk(self, request: HttpRequest, queryset: QuerySet, operation: str) -> None:
        results = bulk.bulk_run(
            operation=operation, charge_points=queryset.order_by("identity"), actor=request.user
        )
        for result in results:
            level = messages.SUCCESS if result.ok else messages.ERROR
            messages.add_message(
                request,
                level,
                _("{identity}: {outcome}").format(
                    identity=result.charge_point.identity, outcome=result.summary
                ),
            )
        failed = sum(1 for result in results if not result.ok)
        if failed:
            url = (
                reverse("admin:stations_chargepoint_changelist")
                + f"?{BulkFailedListFilter.parameter_name}=yes"
            )
            messages.warning(
                request,
                format_html(
                    _('{n} failed: <a href="{url}">select them</a> and run the action again.'),
                    n=failed,
                    url=url,
                ),
            )

    @admin.action(description=_("Reset (soft, or when idle)"), permissions=["send"])
    def bulk_reset(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "reset")

    @admin.action(description=_("Make inoperative (ChangeAvailability)"), permissions=["send"])
    def bulk_inoperative(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "inoperative")

    @admin.action(description=_("Make operative (ChangeAvailability)"), permissions=["send"])
    def bulk_operative(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "operative")

    @admin.action(description=_("Ask for their status (TriggerMessage)"), permissions=["send"])
    def bulk_status(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._bulk(request, queryset, "status")

    @admin.action(description=_("Accept (registration) and give a new key"), permissions=["change"])
    def accept_pending(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Accept a charger that registered itself (Pending): the gateway's accept page shows the connection
        that will get the new key (address, its BootNotification) and sends it only there. One at a time."""
        if queryset.count() != 1:
            messages.error(
                request,
                _(
                    "Accept one charge point at a time: the next page shows the connection "
                    "that will receive its key."
                ),
            )
            return None
        page = reverse("admin:ocpp_gateway_ocppcommand_accept", args=[queryset.get().pk])
        return HttpResponseRedirect(page)


# --- device model and events ---------------------------------------------------------------------


@admin.register(DeviceVariable)
class DeviceVariableAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """The OCPP 2.0.1 device model as the charger last reported it (read-only)."""

    list_display = (
        "charge_point",
        "component",
        "component_instance",
        "evse_id",
        "connector_id",
        "variable",
        "variable_instance",
        "attribute_type",
        "value",
        "mutability",
        "reported_at",
    )
    list_filter = ("component", "attribute_type", "mutability")
    search_fields = ("charge_point__identity", "component", "variable", "value")
    list_select_related = ("charge_point",)


@admin.register(ChargerEvent)
class ChargerEventAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Events and security events chargers reported (read-only)."""

    list_display = (
        "occurred_at",
        "charge_point",
        "kind",
        "trigger",
        "component",
        "variable",
        "actual_value",
        "tech_info",
        "received_at",
    )
    list_filter = ("kind", "trigger")
    search_fields = ("charge_point__identity", "trigger", "component", "variable", "tech_info")
    date_hierarchy = "occurred_at"
    list_select_related = ("charge_point",)


# --- EVSEs and connectors ------------------------------------------------------------------------


class ConnectorInline(BaseTabularInline):
    model = Connector
    extra = 0
    fields = (
        "connector_id",
        "standard",
        "format",
        "power_type",
        "max_voltage_v",
        "max_current_a",
        "max_power_w",
        "status",
        "status_received_at",
    )
    readonly_fields = ("status", "status_received_at")


@admin.register(Evse)
class EvseAdmin(BaseModelAdmin):
    list_display = ("__str__", "charge_point", "evse_id", "emi3_id", "availability", "connector_count")
    list_filter = ("availability", "charge_point__organisation")
    search_fields = ("charge_point__identity", "emi3_id")
    list_select_related = ("charge_point",)
    autocomplete_fields = ("charge_point",)
    inlines = [ConnectorInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(connector_count=Count("connectors", distinct=True))

    @admin.display(description=_("connectors"), ordering="connector_count")
    def connector_count(self, obj: Evse) -> int:
        return obj.connector_count


@admin.register(Connector)
class ConnectorAdmin(BaseModelAdmin):
    list_display = (
        "__str__",
        "standard",
        "format",
        "power_type",
        "max_power_w",
        "status",
        "status_received_at",
    )
    list_filter = ("status", "standard", "power_type", "format", "evse__charge_point__organisation")
    search_fields = ("evse__charge_point__identity", "evse__emi3_id")
    list_select_related = ("evse__charge_point",)
    autocomplete_fields = ("evse",)
    readonly_fields = ("status", "error_code", "status_info", "status_charger_at", "status_received_at")
