"""Admin: tariffs with their elements and assignments, a "price this example session" preview, VAT
rates (deployment-wide), and charge detail records (read-only; corrected by credit records)."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.stations.models import ChargePoint, Location
from apps.tariffs import pricing, selectors
from apps.tariffs.choices import CdrKind, DayOfWeek
from apps.tariffs.models import ChargeDetailRecord, Tariff, TariffAssignment, TariffElement, VatRate
from apps.tariffs.services import cdr_credit, cdr_reissue
from cpo import clock
from cpo.admin import BaseModelAdmin, BaseStackedInline, BaseTabularInline, ReadOnlyAdminMixin
from cpo.exceptions import ApplicationError


class TariffElementForm(forms.ModelForm):
    day_of_week = forms.MultipleChoiceField(
        label=_("days"),
        choices=DayOfWeek.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every day."),
    )

    class Meta:
        model = TariffElement
        fields = (
            "position",
            "energy_price",
            "energy_vat",
            "energy_step_wh",
            "time_price",
            "time_vat",
            "time_step_s",
            "parking_price",
            "parking_vat",
            "parking_step_s",
            "flat_price",
            "flat_vat",
            "start_time",
            "end_time",
            "start_date",
            "end_date",
            "day_of_week",
            "min_kwh",
            "max_kwh",
            "min_duration_s",
            "max_duration_s",
            "min_power",
            "max_power",
            "min_current",
            "max_current",
            "reservation",
        )


class TariffElementInline(BaseStackedInline):
    model = TariffElement
    form = TariffElementForm
    extra = 0
    fieldsets = (
        (None, {"fields": ("position",)}),
        (
            _("Prices (excluding VAT)"),
            {
                "fields": (
                    ("energy_price", "energy_vat", "energy_step_wh"),
                    ("time_price", "time_vat", "time_step_s"),
                    ("parking_price", "parking_vat", "parking_step_s"),
                    ("flat_price", "flat_vat"),
                )
            },
        ),
        (
            _("Applies when (local time of the location)"),
            {
                "fields": (
                    ("start_time", "end_time"),
                    ("start_date", "end_date"),
                    "day_of_week",
                    ("min_kwh", "max_kwh"),
                    ("min_duration_s", "max_duration_s"),
                    ("min_power", "max_power"),
                    ("min_current", "max_current"),
                    "reservation",
                )
            },
        ),
    )


class TariffAssignmentInline(BaseTabularInline):
    """Where a tariff applies. On a tariff: all its places; on a location or charge point: the tariffs
    assigned to it."""

    model = TariffAssignment
    extra = 0
    fields = ("tariff", "location", "charge_point", "connector", "customer_account", "token_group_id")
    autocomplete_fields = ("location", "charge_point", "connector", "customer_account")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        if self.fk_name in fields:
            fields.remove(self.fk_name)
        return fields


class TariffAssignmentsOfTariffInline(TariffAssignmentInline):
    fk_name = "tariff"
    fields = ("location", "charge_point", "connector", "customer_account", "token_group_id")


class PreviewForm(forms.Form):
    """An example session: start (local time), energy, minutes charging then minutes parked."""

    start = forms.DateTimeField(
        label=_("start (local time)"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    time_zone = forms.ChoiceField(label=_("time zone"), choices=[])
    country = forms.CharField(label=_("country (for VAT)"), max_length=2)
    energy_kwh = forms.DecimalField(
        label=_("energy (kWh)"), min_value=Decimal(0), max_digits=10, decimal_places=3
    )
    charging_minutes = forms.IntegerField(
        label=_("minutes drawing power"), min_value=0, max_value=60 * 24 * 7
    )
    idle_minutes = forms.IntegerField(
        label=_("minutes parked after that"), min_value=0, max_value=60 * 24 * 7, initial=0
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = [(tz, tz) for tz in sorted(zoneinfo.available_timezones())]

    def clean_country(self) -> str:
        return self.cleaned_data["country"].upper()

    def usage(self) -> tuple[pricing.SessionUsage, str]:
        data = self.cleaned_data
        tz = zoneinfo.ZoneInfo(data["time_zone"])
        start = data["start"].replace(tzinfo=None).replace(tzinfo=tz)
        stop = start + timedelta(minutes=data["charging_minutes"])
        end = stop + timedelta(minutes=data["idle_minutes"])
        wh = data["energy_kwh"] * 1000
        periods = pricing.periods_from_states(start=start, end=end, stopped_at=stop, changes=[])
        return pricing.SessionUsage(
            start=start, end=end, energy=(pricing.EnergyReading(stop, wh),), periods=periods
        ), data["time_zone"]


@admin.register(Tariff)
class TariffAdmin(BaseModelAdmin):
    list_display = (
        "name",
        "organisation",
        "currency",
        "tariff_type",
        "valid_from",
        "valid_until",
        "element_count",
        "assignment_count",
    )
    list_filter = ("organisation", "currency", "tariff_type")
    search_fields = ("name",)
    list_select_related = ("organisation",)
    readonly_fields = ("created_at", "updated_at", "preview_link")
    fieldsets = (
        (None, {"fields": ("organisation", "name", "currency", "tariff_type", "alt_text", "preview_link")}),
        (_("Limits and validity"), {"fields": (("min_price", "max_price"), ("valid_from", "valid_until"))}),
        (_("Record"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    inlines = [TariffElementInline, TariffAssignmentsOfTariffInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(
                element_count=Count("elements", distinct=True),
                assignment_count=Count("assignments", distinct=True),
            )
        )

    @admin.display(description=_("elements"), ordering="element_count")
    def element_count(self, obj: Tariff) -> int:
        return obj.element_count

    @admin.display(description=_("assigned to"), ordering="assignment_count")
    def assignment_count(self, obj: Tariff) -> int:
        return obj.assignment_count

    @admin.display(description=_("example session"))
    def preview_link(self, obj: Tariff) -> str:
        if obj.pk is None:
            return "-"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:tariffs_tariff_preview", args=[obj.pk]),
            _("Price an example session"),
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="tariffs_tariff_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Price an example session under this tariff as it is saved now."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        tariff = get_object_or_404(self.get_queryset(request), pk=object_id)
        location = (
            Location.objects.filter(tariff_assignments__tariff=tariff).first()
            or Location.objects.filter(organisation_id=tariff.organisation_id).first()
        )
        time_zone = location.time_zone if location else "UTC"
        country = location.country if location else tariff.organisation.country
        local_now = (
            clock.now().astimezone(zoneinfo.ZoneInfo(time_zone)).replace(second=0, microsecond=0, tzinfo=None)
        )
        form = PreviewForm(
            request.GET or None,
            initial={
                "start": local_now,
                "time_zone": time_zone,
                "country": country,
                "energy_kwh": Decimal(20),
                "charging_minutes": 60,
                "idle_minutes": 0,
            },
        )
        breakdown = spec = None
        if form.is_bound and form.is_valid():
            usage, tz = form.usage()
            vat = selectors.vat_rate_for(
                country=form.cleaned_data["country"], on=selectors.local_date(usage.start, tz)
            )
            spec = selectors.tariff_spec_build(
                tariff=tariff,
                elements=list(tariff.elements.order_by("position", "pk")),
                time_zone=tz,
                vat=vat,
            )
            breakdown = pricing.price_session(tariff=spec, usage=usage)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": tariff,
            "form": form,
            "breakdown": breakdown.as_dict() if breakdown else None,
            "spec": spec,
            "title": _("Price an example session: {tariff}").format(tariff=tariff),
        }
        return TemplateResponse(request, "admin/tariffs/tariff/preview.html", context)


@admin.register(TariffAssignment)
class TariffAssignmentAdmin(BaseModelAdmin):
    list_display = ("tariff", "place", "organisation", "customer_account", "token_group_id")
    list_filter = ("organisation", "tariff", "location", "charge_point")
    search_fields = ("tariff__name", "location__name", "charge_point__identity", "token_group_id")
    list_select_related = (
        "tariff",
        "organisation",
        "location",
        "charge_point",
        "connector__evse__charge_point",
        "customer_account",
    )
    autocomplete_fields = ("location", "charge_point", "connector", "customer_account")

    @admin.display(description=_("applies to"))
    def place(self, obj: TariffAssignment) -> str:
        return obj.place_display()


@admin.register(VatRate)
class VatRateAdmin(BaseModelAdmin):
    """VAT rates by country and date: the law of each country, the same for every operator."""

    list_display = ("country", "rate", "valid_from", "valid_until", "note")
    list_filter = ("country",)
    search_fields = ("country", "note")


@admin.register(ChargeDetailRecord)
class ChargeDetailRecordAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Issued CDRs: never edited. A wrong one is credited (and may be issued again, repriced)."""

    list_display = (
        "issued_at",
        "number",
        "kind",
        "revision",
        "session",
        "charge_point",
        "id_tag",
        "energy_wh",
        "net",
        "gross",
        "currency",
        "credited",
    )
    list_filter = ("kind", "organisation", "currency", "issued_at")
    search_fields = ("number", "id_tag", "charge_point__identity", "session__transaction_ref")
    list_select_related = ("charge_point", "session", "credited_by")
    date_hierarchy = "issued_at"
    actions = ["credit", "credit_and_reissue"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields] + ["lines"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # "change" is what the credit actions need (the mixin refuses it, so ask the base admin); the
        # record itself is never editable (all read-only)
        return obj is None and BaseModelAdmin.has_change_permission(self, request, obj)

    @admin.display(description=_("credited"), boolean=True)
    def credited(self, obj: ChargeDetailRecord) -> bool | None:
        if obj.kind != CdrKind.CDR:
            return None
        return hasattr(obj, "credited_by")

    @admin.display(description=_("lines"))
    def lines(self, obj: ChargeDetailRecord) -> str:
        head = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            _("component"),
            _("quantity"),
            _("price"),
            _("VAT"),
            _("net"),
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{} %</td><td>{}</td></tr>",
            (
                (line["component"], line["quantity"], line["unit"], line["price"], line["vat"], line["net"])
                for line in obj.breakdown.get("lines", [])
            ),
        )
        return format_html("<table>{}{}</table>", head, rows)

    def _each(self, request: HttpRequest, queryset: QuerySet, reissue: bool) -> None:
        done = 0
        for cdr in queryset.filter(kind=CdrKind.CDR).order_by("pk"):
            try:
                reason = _("Corrected in the admin") if reissue else _("Credited in the admin")
                if reissue:
                    cdr_reissue(cdr=cdr, reason=str(reason), actor=request.user)
                else:
                    cdr_credit(cdr=cdr, reason=str(reason), actor=request.user)
                done += 1
            except ApplicationError as exc:
                messages.error(request, _("CDR {id}: {error}").format(id=cdr.pk, error=exc.detail))
        if done:
            messages.success(request, _("{count} records credited.").format(count=done))

    @admin.action(description=_("Credit the selected records"), permissions=["change"])
    def credit(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, reissue=False)

    @admin.action(description=_("Credit and issue again, repriced"), permissions=["change"])
    def credit_and_reissue(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, reissue=True)


def tariff_in_force_display(obj: Any) -> str:
    """For the location and charge point pages: the tariff a driver without an override gets now, and a
    link to the tariff assignments made there."""
    if obj is None or obj.pk is None:
        return "-"
    if isinstance(obj, ChargePoint):
        tariff = selectors.tariff_in_force(charge_point=obj)
        query = f"?charge_point__id__exact={obj.pk}"
    else:
        tariff = selectors.tariff_in_force(location=obj)
        query = f"?location__id__exact={obj.pk}"
    assignments = reverse("admin:tariffs_tariffassignment_changelist") + query
    if tariff is None:
        return format_html(
            '{} · <a href="{}">{}</a>',
            _("none: sessions here are free"),
            assignments,
            _("assignments here"),
        )
    return format_html(
        '<a href="{}">{}</a> · <a href="{}">{}</a>',
        reverse("admin:tariffs_tariff_change", args=[tariff.pk]),
        tariff,
        assignments,
        _("assignments here"),
    )


class TariffInForceListFilter(admin.SimpleListFilter):
    """For the charge point list: the charge points where a driver without an override would charge
    for free now (no tariff in force for the charge point or one of its connectors)."""

    title = _("tariff in force")
    parameter_name = "tariff"
    NONE = "none"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (("yes", _("Yes")), (self.NONE, _("None: sessions are free")))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == self.NONE:
            return selectors.charge_points_without_tariff(charge_points=queryset)
        if self.value() == "yes":
            return queryset.exclude(
                pk__in=selectors.charge_points_without_tariff(charge_points=queryset).values("pk")
            )
        return queryset


def warn_charge_points_without_tariff(request: HttpRequest, charge_points: QuerySet[ChargePoint]) -> None:
    """A warning on the charge point list when some of the charge points the user sees (already scoped
    to their organisation) have no tariff in force, with a link to them."""
    count = selectors.charge_points_without_tariff(charge_points=charge_points).count()
    if not count:
        return
    link = (
        reverse("admin:stations_chargepoint_changelist")
        + f"?{TariffInForceListFilter.parameter_name}={TariffInForceListFilter.NONE}"
    )
    messages.warning(
        request,
        format_html(
            '{} <a href="{}">{}</a>',
            ngettext(
                "{count} charge point has no tariff in force: sessions there are free.",
                "{count} charge points have no tariff in force: sessions there are free.",
                count,
            ).format(count=count),
            link,
            _("Show them"),
        ),
    )


def warn_charge_point_without_tariff(request: HttpRequest, charge_point: ChargePoint) -> None:
    """A warning on a charge point's page when it has no tariff in force."""
    if selectors.charge_points_without_tariff(
        charge_points=ChargePoint.objects.filter(pk=charge_point.pk)
    ).exists():
        messages.warning(
            request,
            _(
                "This charge point has no tariff in force: sessions here are free. Assign a tariff to it, "
                "its location or the operator."
            ),
        )
