"""Tariffs (the OCPI 2.2.1 model), where they apply, the VAT table, the tariff snapshot each session
takes when it starts, what the car did during the session, and the charge detail records (CDRs).

Prices are stored excluding VAT. A component without its own VAT rate uses the rate of the location's
country on the day the session starts (VatRate). Drivers are always shown gross prices.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import CustomerAccount, Organisation, country_code_validator
from apps.accounts.tenancy import TenantQuerySet
from apps.charging.models import ChargingSession
from apps.stations.models import ChargePoint, Connector, Location
from apps.tariffs.choices import (
    ActivityState,
    CdrKind,
    DayOfWeek,
    PricingNote,
    ReservationRestriction,
    TariffType,
)
from cpo import clock
from cpo.models import TimeStampedModel
from cpo.units import minor_digits

currency_validator = RegexValidator(r"^[A-Z]{3}$", _("Use the ISO 4217 code, e.g. EUR."))
non_negative = MinValueValidator(Decimal(0))
vat_validators = [MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))]


def _price_field(verbose: Any, **kwargs: Any) -> models.DecimalField:
    return models.DecimalField(
        verbose, max_digits=14, decimal_places=6, null=True, blank=True, validators=[non_negative], **kwargs
    )


def _vat_field(verbose: Any) -> models.DecimalField:
    return models.DecimalField(
        verbose,
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=vat_validators,
        help_text=_("Empty: the VAT rate of the location's country."),
    )


class VatRate(models.Model):
    """A country's VAT rate (percent) from a date on. Deployment-wide: it is the law of the country,
    the same for every operator. The rate on a day is the row with the latest `valid_from` on or before
    it that has not ended (`valid_until` is exclusive)."""

    country = models.CharField(_("country"), max_length=2, validators=[country_code_validator])
    rate = models.DecimalField(_("rate (%)"), max_digits=5, decimal_places=2, validators=vat_validators)
    valid_from = models.DateField(_("valid from"))
    valid_until = models.DateField(
        _("valid until"), null=True, blank=True, help_text=_("Exclusive; empty: until further notice.")
    )
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("VAT rate")
        verbose_name_plural = _("VAT rates")
        ordering = ["country", "-valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["country", "valid_from"],
                name="vatrate_unique_country_from",
                violation_error_message=_("This country already has a rate from that day."),
            ),
            models.CheckConstraint(condition=models.Q(rate__gte=0, rate__lte=100), name="vatrate_rate_range"),
        ]

    def __str__(self) -> str:
        return f"{self.country} {self.rate}% ({self.valid_from})"

    def clean(self) -> None:
        super().clean()
        if (
            self.valid_until is not None
            and self.valid_from is not None
            and self.valid_until <= self.valid_from
        ):
            raise ValidationError({"valid_until": _("The end must be after the start.")})


class Tariff(TimeStampedModel):
    """An operator's tariff: currency, OCPI type, text for drivers in several languages, minimum and
    maximum price (excluding VAT) and a validity window, with its ordered elements."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="tariffs"
    )
    name = models.CharField(_("name"), max_length=100)
    currency = models.CharField(_("currency"), max_length=3, default="EUR", validators=[currency_validator])
    tariff_type = models.CharField(_("type"), max_length=20, choices=TariffType.choices, blank=True)
    alt_text = models.JSONField(
        _("text for drivers"),
        default=dict,
        blank=True,
        help_text=_('By language, e.g. {"en": "0.30/kWh, parking 3.00/h after 2 h", "de": "..."}.'),
    )
    min_price = _price_field(_("minimum price (excl. VAT)"))
    max_price = _price_field(_("maximum price (excl. VAT)"))
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("tariff")
        verbose_name_plural = _("tariffs")
        ordering = ["organisation", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "name"],
                name="tariff_unique_name_per_org",
                violation_error_message=_("This operator already has a tariff with this name."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    def clean(self) -> None:
        super().clean()
        errors: dict[str, Any] = {}
        try:
            digits = minor_digits(self.currency or "")
        except ValueError:
            errors["currency"] = _("Use the ISO 4217 code, e.g. EUR.")
            digits = None
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if (
                value is not None
                and digits is not None
                and value != value.quantize(Decimal(1).scaleb(-digits))
            ):
                errors[name] = _("{currency} has {digits} decimal places.").format(
                    currency=self.currency, digits=digits
                )
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            errors["max_price"] = _("The maximum price is below the minimum price.")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            errors["valid_until"] = _("The end must be after the start.")
        if not isinstance(self.alt_text, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.alt_text.items()
        ):
            errors["alt_text"] = _('Give the text as {"language": "text", ...}.')
        if errors:
            raise ValidationError(errors)

    def is_valid_at(self, at: Any) -> bool:
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_until is None or at < self.valid_until
        )


class TariffElement(models.Model):
    """One element of a tariff: up to four price components (excluding VAT) and the restrictions under
    which they apply. For each dimension the first element (by position) that matches and prices it
    is used."""

    tariff = models.ForeignKey(
        Tariff, verbose_name=_("tariff"), on_delete=models.CASCADE, related_name="elements"
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    energy_price = _price_field(_("price per kWh"))
    energy_vat = _vat_field(_("VAT on energy (%)"))
    energy_step_wh = models.PositiveIntegerField(_("energy step (Wh)"), default=0)
    time_price = _price_field(_("price per hour charging"))
    time_vat = _vat_field(_("VAT on charging time (%)"))
    time_step_s = models.PositiveIntegerField(_("charging time step (s)"), default=0)
    parking_price = _price_field(_("price per hour parking"))
    parking_vat = _vat_field(_("VAT on parking time (%)"))
    parking_step_s = models.PositiveIntegerField(_("parking time step (s)"), default=0)
    flat_price = _price_field(_("flat fee per session"))
    flat_vat = _vat_field(_("VAT on the flat fee (%)"))
    start_time = models.TimeField(
        _("from time of day"), null=True, blank=True, help_text=_("Local time of the location.")
    )
    end_time = models.TimeField(
        _("until time of day"),
        null=True,
        blank=True,
        help_text=_("Exclusive; before the start: the window wraps over midnight."),
    )
    start_date = models.DateField(_("from date"), null=True, blank=True)
    end_date = models.DateField(_("until date"), null=True, blank=True, help_text=_("Exclusive."))
    day_of_week = ArrayField(
        models.CharField(max_length=9, choices=DayOfWeek.choices),
        verbose_name=_("days"),
        default=list,
        blank=True,
    )
    min_kwh = models.DecimalField(
        _("from kWh"), max_digits=10, decimal_places=3, null=True, blank=True, validators=[non_negative]
    )
    max_kwh = models.DecimalField(
        _("until kWh"), max_digits=10, decimal_places=3, null=True, blank=True, validators=[non_negative]
    )
    min_current = models.DecimalField(
        _("from current (A)"),
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[non_negative],
    )
    max_current = models.DecimalField(
        _("until current (A)"),
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[non_negative],
    )
    min_power = models.DecimalField(
        _("from power (kW)"), max_digits=8, decimal_places=2, null=True, blank=True, validators=[non_negative]
    )
    max_power = models.DecimalField(
        _("until power (kW)"),
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[non_negative],
    )
    min_duration_s = models.PositiveIntegerField(_("from session duration (s)"), null=True, blank=True)
    max_duration_s = models.PositiveIntegerField(_("until session duration (s)"), null=True, blank=True)
    reservation = models.CharField(
        _("reservation"), max_length=20, choices=ReservationRestriction.choices, blank=True
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "tariff__organisation"

    class Meta:
        verbose_name = _("tariff element")
        verbose_name_plural = _("tariff elements")
        ordering = ["tariff", "position", "pk"]

    def __str__(self) -> str:
        return _("Element {position}").format(position=self.position)

    def clean(self) -> None:
        super().clean()
        if all(getattr(self, f"{c}_price") is None for c in ("energy", "time", "parking", "flat")):
            raise ValidationError(_("An element needs at least one price."))
        errors: dict[str, Any] = {}
        for low, high in (
            ("min_kwh", "max_kwh"),
            ("min_current", "max_current"),
            ("min_power", "max_power"),
            ("min_duration_s", "max_duration_s"),
            ("start_date", "end_date"),
        ):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and b <= a:
                errors[high] = _("The upper bound must be above the lower bound.")
        if errors:
            raise ValidationError(errors)


class TariffAssignment(TimeStampedModel):
    """Where a tariff applies: the operator's default (no place), a location, a charge point or a
    connector, optionally only for a customer account's or a token group's drivers (these override
    any place-only assignment). The most specific assignment whose tariff is valid wins."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.CASCADE, related_name="tariff_assignments"
    )
    tariff = models.ForeignKey(
        Tariff, verbose_name=_("tariff"), on_delete=models.CASCADE, related_name="assignments"
    )
    location = models.ForeignKey(
        Location,
        verbose_name=_("location"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tariff_assignments",
    )
    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tariff_assignments",
    )
    connector = models.ForeignKey(
        Connector,
        verbose_name=_("connector"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tariff_assignments",
    )
    customer_account = models.ForeignKey(
        CustomerAccount,
        verbose_name=_("customer account"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tariff_assignments",
    )
    token_group_id = models.CharField(
        _("token group"), max_length=36, blank=True, help_text=_("Only for tokens with this group id.")
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("tariff assignment")
        verbose_name_plural = _("tariff assignments")
        ordering = ["organisation", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(location__isnull=True, charge_point__isnull=True)
                    | models.Q(location__isnull=True, connector__isnull=True)
                    | models.Q(charge_point__isnull=True, connector__isnull=True)
                ),
                name="tariffassignment_one_place",
                violation_error_message=_("Choose at most one of location, charge point and connector."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tariff} → {self.place_display()}"

    def place_display(self) -> str:
        place = self.connector or self.charge_point or self.location
        text = str(place) if place is not None else str(_("operator default"))
        if self.customer_account_id:
            text += " · " + str(self.customer_account)
        if self.token_group_id:
            text += " · " + _("group {group}").format(group=self.token_group_id)
        return text

    def clean(self) -> None:
        super().clean()
        if self.organisation_id is None and self.tariff_id is not None:
            # added inline on a location or charge point page: the tariff's operator
            self.organisation_id = self.tariff.organisation_id
        if sum(x is not None for x in (self.location_id, self.charge_point_id, self.connector_id)) > 1:
            raise ValidationError(_("Choose at most one of location, charge point and connector."))
        org = self.organisation_id
        owners = {
            "tariff": self.tariff.organisation_id if self.tariff_id else org,
            "location": self.location.organisation_id if self.location_id else org,
            "charge_point": self.charge_point.organisation_id if self.charge_point_id else org,
            "connector": self.connector.evse.charge_point.organisation_id if self.connector_id else org,
            "customer_account": self.customer_account.organisation_id if self.customer_account_id else org,
        }
        errors = {
            name: _("This belongs to another operator.") for name, owner in owners.items() if owner != org
        }
        if errors and org is not None:
            raise ValidationError(errors)


class SessionTariff(models.Model):
    """The tariff a session runs under, frozen when it started (a later price change never reaches a
    running session), and when the car left (the end of any parking time)."""

    session = models.OneToOneField(
        ChargingSession,
        verbose_name=_("charging session"),
        on_delete=models.CASCADE,
        related_name="tariff_snapshot",
    )
    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="+"
    )
    tariff = models.ForeignKey(
        Tariff,
        verbose_name=_("tariff"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="session_snapshots",
    )
    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE, related_name="+"
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    currency = models.CharField(_("currency"), max_length=3)
    spec = models.JSONField(_("tariff as frozen"))
    created_at = models.DateTimeField(_("created at"), default=clock.now)
    departed_at = models.DateTimeField(_("car left at"), null=True, blank=True)
    prices_parking = models.BooleanField(
        _("prices parking"), default=False, help_text=_("The CDR waits for the car to leave.")
    )
    # The reservation the session started on (told by reservations when the start consumed it): the tariff's
    # reservation elements price it in the session's record.
    reservation_started_at = models.DateTimeField(_("reserved from"), null=True, blank=True)
    reservation_ended_at = models.DateTimeField(_("reserved until"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("session tariff")
        verbose_name_plural = _("session tariffs")
        indexes = [
            models.Index(
                fields=["charge_point", "evse_id"],
                condition=models.Q(departed_at__isnull=True),
                name="sessiontariff_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.tariff_id}"


class SessionActivity(models.Model):
    """From `at` on the car was drawing power (CHARGING) or not (PARKING), as a status report or a
    transaction event said. Kept as timestamped facts so that late or repeated reports still give the
    right periods; written only when the state changes."""

    session = models.ForeignKey(
        ChargingSession, verbose_name=_("charging session"), on_delete=models.CASCADE, related_name="activity"
    )
    at = models.DateTimeField(_("at"))
    state = models.CharField(_("state"), max_length=8, choices=ActivityState.choices)
    source = models.CharField(_("reported as"), max_length=32, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "session__organisation"

    class Meta:
        verbose_name = _("session activity")
        verbose_name_plural = _("session activity")
        ordering = ["session", "at"]
        constraints = [
            models.UniqueConstraint(fields=["session", "at", "state"], name="sessionactivity_natural_key"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} {self.at:%H:%M:%S} {self.state}"


class ChargeDetailRecord(models.Model):
    """A priced charge detail record. Immutable once issued: the database refuses UPDATE and DELETE
    (trigger in migration 0002). A correction is a CREDIT record (negative amounts) for the record it
    cancels, followed by a new record with the next revision. Most records are a charging session's; a
    reservation no charge followed (a no-show), where the tariff prices that, has a record of its own
    (`reservation_ref`, no session)."""

    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("operator"),
        on_delete=models.PROTECT,
        related_name="charge_detail_records",
    )
    session = models.ForeignKey(
        ChargingSession,
        verbose_name=_("charging session"),
        on_delete=models.PROTECT,
        related_name="charge_detail_records",
        null=True,
        blank=True,
    )
    reservation_ref = models.PositiveIntegerField(
        _("reservation"),
        null=True,
        blank=True,
        help_text=_("The reservation this record prices, when no charge followed it."),
    )
    kind = models.CharField(_("kind"), max_length=6, choices=CdrKind.choices, default=CdrKind.CDR)
    revision = models.PositiveSmallIntegerField(_("revision"), default=0)
    credits = models.OneToOneField(
        "self",
        verbose_name=_("credits record"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credited_by",
    )
    number = models.CharField(
        _("number"),
        max_length=40,
        blank=True,
        help_text=_("The receipt number: the operator's prefix, the year and its own sequence."),
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    pricing_note = models.CharField(
        _("pricing note"), max_length=16, choices=PricingNote.choices, blank=True, default=PricingNote.NONE
    )
    tariff = models.ForeignKey(
        Tariff,
        verbose_name=_("tariff"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="charge_detail_records",
    )
    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.PROTECT,
        related_name="charge_detail_records",
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    id_tag = models.CharField(_("id tag"), max_length=36, blank=True)
    currency = models.CharField(_("currency"), max_length=3)
    started_at = models.DateTimeField(_("started at"))
    stopped_at = models.DateTimeField(_("charging stopped at"))
    ended_at = models.DateTimeField(_("car left at"))
    energy_wh = models.BigIntegerField(_("energy (Wh)"))
    charging_seconds = models.PositiveIntegerField(_("charging time (s)"))
    parking_seconds = models.PositiveIntegerField(_("parking time (s)"))
    net = models.DecimalField(_("net"), max_digits=18, decimal_places=4)
    tax = models.DecimalField(_("VAT"), max_digits=18, decimal_places=4)
    gross = models.DecimalField(_("gross"), max_digits=18, decimal_places=4)
    breakdown = models.JSONField(_("breakdown"))
    tariff_spec = models.JSONField(_("tariff as applied"))
    issued_at = models.DateTimeField(_("issued at"), default=clock.now, db_index=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("charge detail record")
        verbose_name_plural = _("charge detail records")
        ordering = ["-issued_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["session", "kind", "revision"], name="cdr_unique_revision"),
            models.UniqueConstraint(
                fields=["reservation_ref", "kind", "revision"],
                condition=models.Q(session__isnull=True),
                name="cdr_unique_reservation_revision",
            ),
            models.CheckConstraint(
                condition=models.Q(session__isnull=False) | models.Q(reservation_ref__isnull=False),
                name="cdr_of_session_or_reservation",
            ),
            models.CheckConstraint(
                condition=models.Q(kind="CDR", credits__isnull=True, gross__gte=0)
                | models.Q(kind="CREDIT", credits__isnull=False, gross__lte=0),
                name="cdr_kind_consistent",
            ),
            models.UniqueConstraint(
                fields=["organisation", "number"],
                condition=~models.Q(number=""),
                name="cdr_unique_number_per_org",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.number or self.pk} · {self.gross} {self.currency}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValidationError(_("Charge detail records cannot be changed; issue a credit."))
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError(_("Charge detail records cannot be deleted; issue a credit."))


class ReceiptCounter(models.Model):
    """The last receipt number an operator issued in a year (UTC). Taken with a row lock in the
    transaction that issues the record, so numbers are per operator, in order, and a rolled-back issue
    gives its number back."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.CASCADE, related_name="receipt_counters"
    )
    year = models.PositiveSmallIntegerField(_("year"))
    last_number = models.PositiveIntegerField(_("last number"), default=0)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("receipt counter")
        verbose_name_plural = _("receipt counters")
        constraints = [
            models.UniqueConstraint(fields=["organisation", "year"], name="receiptcounter_unique_org_year"),
        ]

    def __str__(self) -> str:
        return f"{self.organisation_id} {self.year}: {self.last_number}"
