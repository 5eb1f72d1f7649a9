"""Admin: reservations of the staff member's organisations' chargers, and each organisation's hold
length. Operators reserve (a connector, or any connector, for a known card or token) and cancel through
the reservations service, as drivers do through the API: the reservation id is ours, never typed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.reservations.choices import ACTIVE_STATUSES
from apps.reservations.models import Reservation, ReservationSettings
from apps.reservations.services import reservation_cancel, reservation_create_for_token
from apps.stations.models import ChargePoint
from cpo import clock
from cpo.admin import BaseModelAdmin
from cpo.exceptions import ApplicationError


class ReservationAddForm(forms.Form):
    """What an operator reserves: a charger of theirs, a connector (empty: any connector, where the
    charger supports that), a known card or token, and until when."""

    charge_point = forms.ModelChoiceField(label=_("charge point"), queryset=ChargePoint.objects.none())
    connector = forms.IntegerField(
        label=_("connector"),
        required=False,
        min_value=1,
        max_value=255,
        help_text=_("Empty: any connector of the charger (only where the charger supports that)."),
    )
    id_tag = forms.CharField(
        label=_("card or token uid"), max_length=64, help_text=_("A card or token known to the system.")
    )
    expires_at = forms.SplitDateTimeField(label=_("reserved until"), widget=admin.widgets.AdminSplitDateTime)

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only chargers of the user's own organisations.
        self.fields["charge_point"].queryset = ChargePoint.objects.writable_by(user).order_by(  # type: ignore[attr-defined]
            "identity"
        )

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data["expires_at"]
        if value <= clock.now():
            raise forms.ValidationError(_("The reservation must end in the future."))
        return value


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

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """Reserve through the service (ReserveNow to the charger with our id); the charger's answer then
        decides the reservation's status, shown on its page."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ReservationAddForm(request.POST or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                reservation = reservation_create_for_token(
                    charge_point=data["charge_point"],
                    evse_id=data["connector"],
                    uid=data["id_tag"],
                    expires_at=data["expires_at"],
                    actor=request.user,
                    source="admin",
                )
            except ApplicationError as exc:
                form.add_error(None, str(exc.detail))
                for name, errors in (exc.fields or {}).items():
                    field = {"expiry_date": "expires_at"}.get(name, name)
                    if field in form.fields:
                        form.add_error(field, errors)
            else:
                self.message_user(
                    request,
                    _("Reservation {id} sent to the charger (ReserveNow); its answer decides it.").format(
                        id=reservation.pk
                    ),
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:reservations_reservation_change", args=[reservation.pk])
                )
        page = {
            **self.admin_site.each_context(request),
            "title": _("Reserve a connector"),
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/reservations/reservation/add.html", page)

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


@admin.register(ReservationSettings)
class ReservationSettingsAdmin(BaseModelAdmin):
    """An organisation's hold length: the default a driver gets and the longest one may ask for."""

    list_display = ("organisation", "default_minutes", "max_minutes")
    list_select_related = ("organisation",)
