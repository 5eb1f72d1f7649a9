"""Admin of charging sessions, meter samples and stops for unknown transactions. Everything here is
reported by chargers, so it is read-only; stops for unknown transactions are reviewed and marked
resolved; an active session whose stop never came can be force-closed, and a session flagged for
review (e.g. closed by reconciliation) marked reviewed (both audited). Meter samples are the biggest
table: their changelist never counts it in full."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from ocpp.v16.enums import Measurand

from apps.charging.charts import session_chart_svg
from apps.charging.choices import ClosedBy, SessionStatus
from apps.charging.intents import charger_control
from apps.charging.models import (
    ChargingSession,
    DriverSession,
    DriverSessionTransition,
    MeterSample,
    OrphanStop,
    TransactionEvent,
)
from apps.charging.reconcile import session_force_close, session_review_done
from apps.charging.services import orphan_stop_resolve
from apps.ocpp_gateway.admin import (
    CappedCountPaginator,
    ChargePointListFilter,
    charge_point_link,
    pretty_json,
)
from apps.stations.models import Location
from cpo.admin import BaseModelAdmin, ReadOnlyAdminMixin
from cpo.exceptions import ApplicationError


class NeedsReviewListFilter(admin.SimpleListFilter):
    title = _("needs review")
    parameter_name = "needs_review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", _("Yes")), ("no", _("No")))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(review_reason="")
        if self.value() == "no":
            return queryset.filter(review_reason="")
        return queryset


class LocationListFilter(admin.SimpleListFilter):
    """Sessions at one of the user's locations (chosen among theirs, not a DISTINCT over sessions)."""

    title = _("location")
    parameter_name = "location"
    MAX_LISTED = 100

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        places = Location.objects.for_actor(request.user).order_by("name").only("pk", "name")
        return [(place.pk, place.name) for place in places[: self.MAX_LISTED]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and str(value).isdigit():
            return queryset.filter(charge_point__location_id=int(value))
        return queryset


class ClosedByListFilter(admin.SimpleListFilter):
    """Sessions the product closed itself (reconciliation or an operator), by why."""

    title = _("closed by the product")
    parameter_name = "closed_by"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("any", _("Any reason")), *ClosedBy.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "any":
            return queryset.filter(stop_reason__in=ClosedBy.values)
        if self.value() in ClosedBy.values:
            return queryset.filter(stop_reason=self.value())
        return queryset


@admin.register(ChargingSession)
class ChargingSessionAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Charging sessions as chargers reported them. An active session whose stop never came can be
    force-closed (at its last known meter reading, priced like any other); a flagged one marked reviewed."""

    list_display = (
        "started_at",
        "charger",
        "evse_id",
        "transaction_ref",
        "id_tag",
        "status",
        "stopped_at",
        "energy",
        "review_reason",
    )
    list_filter = (
        "status",
        NeedsReviewListFilter,
        "review_reason",
        ClosedByListFilter,
        "protocol",
        "timestamps_clamped",
        "organisation",
        "started_at",
        LocationListFilter,
        ChargePointListFilter,
    )
    search_fields = ("transaction_ref", "id_tag", "charge_point__identity", "id_token__owner__email")
    search_help_text = _("transaction id, id tag, charger identity or driver's e-mail")
    list_select_related = ("charge_point", "organisation")
    date_hierarchy = "started_at"
    show_full_result_count = False
    paginator = CappedCountPaginator
    actions = ["remote_stop", "force_close", "mark_reviewed"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields if f.name != "id"] + [
            "energy",
            "chart",
            "meter_samples_link",
        ]

    @admin.action(description=_("Stop at the charger (remote stop)"), permissions=["operate"])
    def remote_stop(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Ask each active session's charger to stop it, through the command service (audited there, with
        its outcome on the command's page); a charger that is offline is reported, nothing is closed."""
        writable = queryset.writable_by(request.user)  # type: ignore[attr-defined]
        sessions = writable.filter(status=SessionStatus.ACTIVE).order_by("pk")
        sent = offline = 0
        control = charger_control.get()
        for session in sessions.select_related("charge_point"):
            try:
                intent = control.stop_transaction(session=session, actor=request.user, source="admin")
            except ApplicationError as exc:  # e.g. a 1.6 start the charger never gave a transaction id
                messages.error(request, f"{session}: {exc.detail}")
                continue
            offline += intent.offline
            sent += not intent.offline
        if sent:
            messages.success(
                request,
                ngettext(
                    "Stop sent to %(n)d charger; its answer is on the command's page.",
                    "Stop sent to %(n)d chargers; their answers are on the commands' pages.",
                    sent,
                )
                % {"n": sent},
            )
        if offline:
            messages.warning(
                request,
                ngettext(
                    "%(n)d charger is offline: nothing was stopped (force close if its stop never comes).",
                    "%(n)d chargers are offline: nothing was stopped (force close if no stop comes).",
                    offline,
                )
                % {"n": offline},
            )
        if not sent and not offline:
            messages.info(request, _("None of the selected sessions is active."))

    @admin.display(description=_("power and energy"))
    def chart(self, obj: ChargingSession) -> str:
        return session_chart_svg(obj)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description=_("Force close (the charger's stop never came)"), permissions=["operate"])
    def force_close(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Only the user's own organisations' sessions, whatever the changelist shows.
        sessions = queryset.writable_by(request.user).order_by("pk")  # type: ignore[attr-defined]
        closed = sum(session_force_close(session=session, actor=request.user) for session in sessions)
        messages.success(
            request,
            ngettext("%(n)d session closed.", "%(n)d sessions closed.", closed) % {"n": closed},
        )

    @admin.action(description=_("Mark as reviewed"), permissions=["operate"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet) -> None:
        sessions = queryset.writable_by(request.user).order_by("pk")  # type: ignore[attr-defined]
        reviewed = sum(session_review_done(session=session, actor=request.user) for session in sessions)
        messages.success(
            request,
            ngettext("%(n)d session marked reviewed.", "%(n)d sessions marked reviewed.", reviewed)
            % {"n": reviewed},
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: ChargingSession) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity)

    @admin.display(description=_("energy (Wh)"))
    def energy(self, obj: ChargingSession) -> int | None:
        return obj.energy_wh

    @admin.display(description=_("meter samples"))
    def meter_samples_link(self, obj: ChargingSession) -> str:
        url = reverse("admin:charging_metersample_changelist") + f"?session__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, _("Meter samples of this session"))


class MeasurandListFilter(admin.SimpleListFilter):
    """Measurands from the protocol's list (not a DISTINCT over the big table)."""

    title = _("measurand")
    parameter_name = "measurand"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return [(m.value, m.value) for m in Measurand]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(measurand=self.value()) if self.value() else queryset


class SessionListFilter(admin.SimpleListFilter):
    """Samples of one session (reached from the session page; no list of choices)."""

    title = _("session")
    parameter_name = "session__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        value = self.value()
        return [(value, _("Session {id}").format(id=value))] if value and str(value).isdigit() else []

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(session_id=int(value)) if value and str(value).isdigit() else queryset


@admin.register(MeterSample)
class MeterSampleAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Meter samples, normalised (Wh, W, A, V); signed meter data is kept verbatim."""

    list_display = (
        "sampled_at",
        "charger",
        "evse_id",
        "session",
        "measurand",
        "phase",
        "location",
        "context",
        "value",
        "unit",
        "signed",
    )
    list_filter = (
        MeasurandListFilter,
        "context",
        "location",
        "sampled_at",
        ChargePointListFilter,
        SessionListFilter,
    )
    list_select_related = ("charge_point", "session")
    ordering = ("-pk",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields if f.name != "id"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: MeterSample) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity)

    @admin.display(description=_("signed"), boolean=True)
    def signed(self, obj: MeterSample) -> bool:
        return bool(obj.signed_data)


@admin.register(OrphanStop)
class OrphanStopAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """StopTransactions for transactions we never saw start: answered normally, kept for review."""

    list_display = ("received_at", "charger", "transaction_ref", "session", "resolved")
    list_filter = ("resolved", "received_at", ChargePointListFilter)
    search_fields = ("transaction_ref", "charge_point__identity")
    list_select_related = ("charge_point", "session")
    actions = ["mark_resolved"]
    fields = ("charge_point", "transaction_ref", "session", "received_at", "resolved", "payload_pretty")
    readonly_fields = fields

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: OrphanStop) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity)

    @admin.display(description=_("message"))
    def payload_pretty(self, obj: OrphanStop) -> str:
        return pretty_json(obj.payload)

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description=_("Mark as resolved"), permissions=["resolve"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet) -> None:
        resolved = sum(
            orphan_stop_resolve(orphan_stop=stop, actor=request.user)
            for stop in queryset.select_related("charge_point").order_by("pk")
        )
        messages.success(
            request,
            ngettext("%(n)d stop marked resolved.", "%(n)d stops marked resolved.", resolved)
            % {"n": resolved},
        )


@admin.register(TransactionEvent)
class TransactionEventAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """OCPP 2.0.1 TransactionEvents as received (de-duplicated on charger, transaction and seqNo)."""

    list_display = (
        "timestamp",
        "charger",
        "transaction_ref",
        "seq_no",
        "event_type",
        "trigger_reason",
        "offline",
        "received_at",
    )
    list_filter = ("event_type", "trigger_reason", "offline", ChargePointListFilter, SessionListFilter)
    search_fields = ("transaction_ref", "charge_point__identity")
    list_select_related = ("charge_point",)
    ordering = ("-pk",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields if f.name != "id"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description=_("charge point"), ordering="charge_point__identity")
    def charger(self, obj: TransactionEvent) -> str:
        return charge_point_link(obj.charge_point_id, obj.charge_point.identity)


class DriverSessionTransitionInline(admin.TabularInline):
    model = DriverSessionTransition
    fields = ("at", "from_status", "to_status", "cause", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DriverSession)
class DriverSessionAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Charges drivers asked for in the app (and charges started with a driver's card), with every step
    of their state machine: what support looks at when a driver says "it did not start"."""

    list_display = (
        "created_at",
        "driver",
        "charger",
        "evse_id",
        "source",
        "status",
        "failure_reason",
        "charging_session",
    )
    list_filter = ("status", "failure_reason", "source", "organisation", "created_at", ChargePointListFilter)
    search_fields = ("driver__email", "charge_point__identity", "id_tag")
    search_help_text = _("driver e-mail, charger identity or id tag")
    list_select_related = ("driver", "charge_point", "charging_session")
    date_hierarchy = "created_at"
    inlines = [DriverSessionTransitionInline]
    exclude = ("idempotency_key", "request_hash")

    @admin.display(description=_("charger"), ordering="charge_point__identity")
    def charger(self, obj: DriverSession) -> Any:
        return charge_point_link(obj.charge_point_id, obj.charge_point)
