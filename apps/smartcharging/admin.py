"""Admin: sites (a grid connection's budget, editable), the profiles in force at their chargers and the
1.6 configuration keys chargers reported (read-only), within the staff member's organisations."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from apps.smartcharging import services
from apps.smartcharging.models import ChargerConfigurationKey, ChargingLimit, GridEvent, Site
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
    readonly_fields = ("budget_kw", "budget_now", "allocation")
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
        limits = obj.limits.order_by("charge_point__identity", "evse_id")
        total = sum((limit.limit_a for limit in limits), start=0)
        return _("{total} A of {budget} A in {count} profiles").format(
            total=total, budget=obj.max_current_a, count=len(limits)
        )


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
    readonly_fields = ("ended_at", "source", "reference")
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
