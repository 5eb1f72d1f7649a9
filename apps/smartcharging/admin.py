"""Admin: sites (a grid connection's budget, editable), the profiles in force at their chargers, what
chargers reported (read-only), grid events and the utility systems that may declare them, within the staff
member's organisations."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from apps.smartcharging import integrations, services
from apps.smartcharging.choices import ProfilePurpose
from apps.smartcharging.models import (
    ChargerConfigurationKey,
    ChargingLimit,
    EvChargingNeeds,
    ExternalChargingLimit,
    GridEvent,
    GridIntegration,
    ReportedChargingProfile,
    Site,
)
from cpo.admin import BaseModelAdmin, ReadOnlyAdminMixin


class ChargingLimitInline(admin.TabularInline):
    model = ChargingLimit
    extra = 0
    can_delete = False
    fields = (
        "charge_point",
        "evse_id",
        "purpose",
        "limit_a",
        "limit",
        "unit",
        "status",
        "sent_at",
        "valid_to",
    )
    readonly_fields = fields
    verbose_name_plural = _("profiles in force")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Site)
class SiteAdmin(BaseModelAdmin):
    """A site's budget in amperes per phase (kW shown), its phases and fallback limit, and the profiles we
    keep in force at its chargers."""

    list_display = ("__str__", "organisation", "max_current_a", "phases", "budget_kw", "fallback_limit_a")
    list_filter = ("phases",)
    search_fields = ("name", "location__name")
    autocomplete_fields = ("location", "charge_points")
    readonly_fields = ("budget_kw", "budget_now", "budget_applied_a", "allocation", "grid_events_now")
    inlines = [ChargingLimitInline]

    @admin.display(description=_("budget (kW)"))
    def budget_kw(self, obj: Site) -> Any:
        return obj.max_power_kw if obj.max_current_a is not None else "-"

    @admin.display(description=_("budget now (A per phase)"))
    def budget_now(self, obj: Site) -> Any:
        """The budget less the deepest grid event in force."""
        return services.site_budget_a(site=obj) if obj.pk else "-"

    @admin.display(description=_("allocated (A per phase)"))
    def allocation(self, obj: Site) -> str:
        if not obj.pk:
            return "-"
        # The running sessions' profiles (the static ones at EVSE 0 cap chargers, they are not shares).
        limits = obj.limits.filter(purpose=ProfilePurpose.TX).order_by("charge_point__identity", "evse_id")
        total = sum((limit.limit_a for limit in limits), start=0)
        return _("{total} A of {budget} A in {count} profiles").format(
            total=total, budget=obj.max_current_a, count=len(limits)
        )

    @admin.display(description=_("grid events in force"))
    def grid_events_now(self, obj: Site) -> str:
        if not obj.pk:
            return "-"
        return ", ".join(str(event) for event in services.site_grid_events_now(site=obj)) or "-"


@admin.register(ChargingLimit)
class ChargingLimitAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """The profile of ours in force at each charger and EVSE: sent, accepted, rejected or not delivered."""

    list_display = (
        "charge_point",
        "evse_id",
        "purpose",
        "limit_a",
        "limit",
        "unit",
        "status",
        "sent_at",
        "valid_to",
    )
    list_filter = ("status", "purpose", "unit")
    search_fields = ("charge_point__identity",)
    list_select_related = ("charge_point",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]


@admin.register(ChargerConfigurationKey)
class ChargerConfigurationKeyAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """OCPP 1.6 configuration keys as the charger's last GetConfiguration answer said."""

    list_display = ("charge_point", "key", "value", "readonly", "reported_at")
    search_fields = ("charge_point__identity", "key")
    list_select_related = ("charge_point",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]


@admin.register(GridEvent)
class GridEventAdmin(BaseModelAdmin):
    """Demand-response events: the sites' budgets drop by the percentage for the window (the deepest cut
    wins). Declared here, by manage.py grid_event or by a utility through the API; audited."""

    list_display = ("__str__", "organisation", "reduce_percent", "starts_at", "ends_at", "ended_at", "source")
    list_filter = ("source",)
    date_hierarchy = "starts_at"
    autocomplete_fields = ("sites",)
    readonly_fields = ("ended_at", "source", "reference", "integration")
    actions = ["end_now"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not change:
            # Rebalance at both ends, like every other way of declaring an event.
            services.grid_event_rebalance_schedule(event=form.instance)

    @admin.action(description=_("End the selected grid events now"))
    def end_now(self, request: HttpRequest, queryset: Any) -> None:
        for event in queryset:
            services.grid_event_end(event=event, actor=request.user, source="admin")


@admin.register(GridIntegration)
class GridIntegrationAdmin(BaseModelAdmin):
    """Utility systems that declare grid events through the API. Adding one issues its key, shown once
    (only a hash is kept); "Issue a new key" replaces it, "Revoke" refuses it from then on."""

    list_display = (
        "name",
        "organisation",
        "key_prefix",
        "active",
        "last_used_at",
        "revoked_at",
        "created_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "key_prefix")
    readonly_fields = ("key_prefix", "last_used_at", "revoked_at")
    actions = ["issue_new_key", "revoke"]

    @admin.display(description=_("active"), boolean=True)
    def active(self, obj: GridIntegration) -> bool:
        return obj.is_active

    def save_model(self, request: HttpRequest, obj: GridIntegration, form: Any, change: bool) -> None:
        key = None if change else integrations.grid_integration_key_prepare(integration=obj)
        super().save_model(request, obj, form, change)
        if key is not None:
            _show_key(request, obj, key)

    @admin.action(description=_("Issue a new key (the old one stops working)"), permissions=["change"])
    def issue_new_key(self, request: HttpRequest, queryset: QuerySet) -> None:
        for integration in queryset.order_by("pk"):
            key = integrations.grid_integration_new_key(
                integration=integration, actor=request.user, source="admin"
            )
            _show_key(request, integration, key)

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(
            integrations.grid_integration_revoke(integration=integration, actor=request.user, source="admin")
            for integration in queryset.order_by("pk")
        )
        messages.success(request, _("{count} key(s) revoked.").format(count=count))


def _show_key(request: HttpRequest, integration: GridIntegration, key: str) -> None:
    messages.warning(
        request,
        format_html(
            _(
                "API key for {name}: <code>{key}</code> Copy it now and give it to the utility system "
                "(header X-API-Key); it is not shown again."
            ),
            name=integration.name,
            key=key,
        ),
    )


class _ChargerReportAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_select_related = ("charge_point",)
    search_fields = ("charge_point__identity",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]


@admin.register(ExternalChargingLimit)
class ExternalChargingLimitAdmin(_ChargerReportAdmin):
    """Limits set at chargers by others (NotifyChargingLimit), until the charger clears them: they lower
    that charger's share of its site."""

    list_display = (
        "charge_point",
        "evse_id",
        "source",
        "limit_a",
        "limit",
        "unit",
        "is_grid_critical",
        "reported_at",
    )
    list_filter = ("source",)


@admin.register(ReportedChargingProfile)
class ReportedChargingProfileAdmin(_ChargerReportAdmin):
    """The profiles chargers hold, as their last ReportChargingProfiles said."""

    list_display = (
        "charge_point",
        "evse_id",
        "profile_id",
        "purpose",
        "stack_level",
        "source",
        "reported_at",
    )
    list_filter = ("purpose", "source")


@admin.register(EvChargingNeeds)
class EvChargingNeedsAdmin(_ChargerReportAdmin):
    """What cars said they need (NotifyEVChargingNeeds): their energy and departure set their priority."""

    list_display = (
        "charge_point",
        "evse_id",
        "energy_amount_wh",
        "departure_at",
        "ev_min_current_a",
        "ev_max_current_a",
        "reported_at",
    )
