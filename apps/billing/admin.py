"""Admin: card payments and disputes (read-only, for finance), within the staff member's organisations."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.billing.models import Dispute, Payment
from cpo.admin import BaseModelAdmin, ReadOnlyAdminMixin


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Disputes of card payments: recorded from Stripe's webhooks (charge.dispute.*), answered in Stripe's
    dashboard. Tenant-scoped: an operator's finance staff see the disputes of its sessions."""

    list_display = ("opened_at", "stripe_id", "amount", "currency", "reason", "status", "evidence_due_by")
    list_filter = ("status", "reason", "currency", "opened_at")
    search_fields = ("stripe_id", "charge_id", "payment_intent_id")
    date_hierarchy = "opened_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Card payments of drivers' sessions at the organisation's chargers: held, captured, released, failed
    or a debt. Amounts in minor units (cents)."""

    list_display = (
        "created_at",
        "stripe_id",
        "status",
        "amount_held",
        "amount_captured",
        "currency",
        "driver_session",
    )
    list_filter = ("status", "currency", "created_at")
    search_fields = ("stripe_id",)
    date_hierarchy = "created_at"
    list_select_related = ("driver_session",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]
