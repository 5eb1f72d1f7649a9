"""Admin: disputes (read-only, for finance), as Stripe reported them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.billing.models import Dispute
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
