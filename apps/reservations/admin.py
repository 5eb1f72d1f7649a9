"""Admin: reservations of the staff member's organisations' chargers. They are made through the
reservations service (the driver API, or the charger's ReserveNow command form: our id, never typed) and
cancelled here through the same service."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.reservations.choices import ACTIVE_STATUSES
from apps.reservations.models import Reservation
from apps.reservations.services import reservation_cancel
from cpo.admin import BaseModelAdmin


@admin.register(Reservation)
class ReservationAdmin(BaseModelAdmin):
    """A driver's (or an operator's) hold on an EVSE; the id is the charger's reservation id."""

    list_display = (
        "id",
        "charge_point",
        "evse_id",
        "id_tag",
        "status",
        "expires_at",
        "failure_code",
        "driver",
    )
    list_filter = ("status", "created_by", "expires_at")
    search_fields = ("=id", "id_tag", "charge_point__identity")
    date_hierarchy = "created_at"
    list_select_related = ("charge_point", "driver")
    actions = ("cancel",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # reserve from the charger's ReserveNow command form (the id is ours)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]

    @admin.action(description=_("Cancel (CancelReservation to the charger)"), permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Only the user's own organisations' reservations, whatever the changelist shows.
        active = queryset.writable_by(request.user).filter(status__in=ACTIVE_STATUSES).order_by("pk")  # type: ignore[attr-defined]
        cancelled = 0
        for reservation in active.select_related("charge_point"):
            if (
                reservation_cancel(reservation=reservation, actor=request.user, source="admin").status
                == "CANCELLED"
            ):
                cancelled += 1
        messages.success(
            request,
            ngettext("%(n)d reservation cancelled.", "%(n)d reservations cancelled.", cancelled)
            % {"n": cancelled},
        )
