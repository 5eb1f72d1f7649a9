"""Smart charging: sites (grid connections with a power budget) and the charging profiles we keep in
force at their chargers."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Organisation
from apps.accounts.tenancy import TenantQuerySet
from apps.smartcharging.choices import ProfilePurpose, ProfileStatus, RateUnit
from apps.stations.models import ChargePoint, Location
from cpo.models import TimeStampedModel


class Site(TimeStampedModel):
    """One grid connection: a location (all its charge points) or a group of charge points within one.
    Its budget is in amperes per phase; `fallback_limit_a` is what a charger may draw per connector when
    it loses us (the TxDefaultProfile fail-safe); none: the minimum, 6 A."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="sites"
    )
    location = models.ForeignKey(
        Location, verbose_name=_("location"), on_delete=models.PROTECT, related_name="sites"
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    charge_points = models.ManyToManyField(
        ChargePoint,
        verbose_name=_("charge points"),
        blank=True,
        related_name="sites",
        help_text=_("Leave empty for every charge point of the location."),
    )
    max_current_a = models.DecimalField(
        _("budget (A per phase)"),
        max_digits=7,
        decimal_places=1,
        validators=[MinValueValidator(Decimal("0"))],
    )
    phases = models.PositiveSmallIntegerField(
        _("phases"), default=3, validators=[MinValueValidator(1), MaxValueValidator(3)]
    )
    voltage_v = models.PositiveIntegerField(_("phase voltage (V)"), default=230)
    fallback_limit_a = models.DecimalField(
        _("fallback limit (A)"),
        max_digits=5,
        decimal_places=1,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("What a connector may draw when the charger loses contact with us."),
    )
    budget_applied_a = models.DecimalField(
        _("budget last applied (A per phase)"),
        max_digits=7,
        decimal_places=1,
        null=True,
        blank=True,
        editable=False,
        help_text=_("The budget the last rebalance shared out (less during a grid event)."),
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("site")
        verbose_name_plural = _("sites")
        ordering = ["location", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["location", "name"],
                name="site_unique_name_per_location",
                violation_error_message=_("This location already has a site with this name."),
            ),
            models.CheckConstraint(
                condition=models.Q(phases__gte=1, phases__lte=3), name="site_phases_range"
            ),
            models.CheckConstraint(condition=models.Q(max_current_a__gte=0), name="site_budget_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.location} / {self.name}" if self.name else str(self.location)

    @property
    def max_power_kw(self) -> Decimal:
        """The budget in kW, for people."""
        return (self.max_current_a * self.voltage_v * self.phases / 1000).quantize(Decimal("0.1"))


class ChargingLimit(models.Model):
    """The charging profile we keep in force at one charger (EVSE 0: the whole charger) for one purpose:
    the last one we sent, and what the charger said. Profile ids and stack levels are ours."""

    site = models.ForeignKey(Site, verbose_name=_("site"), on_delete=models.CASCADE, related_name="limits")
    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE, related_name="charging_limits"
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    purpose = models.CharField(_("purpose"), max_length=24, choices=ProfilePurpose.choices)
    profile_id = models.IntegerField(_("profile id"))
    stack_level = models.PositiveSmallIntegerField(_("stack level"))
    limit_a = models.DecimalField(_("limit (A per phase)"), max_digits=7, decimal_places=1)
    limit = models.DecimalField(_("limit as sent"), max_digits=10, decimal_places=1)
    unit = models.CharField(_("unit"), max_length=1, choices=RateUnit.choices)
    transaction_ref = models.CharField(_("transaction id"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=8, choices=ProfileStatus.choices)
    command_id = models.BigIntegerField(_("command"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"))
    answered_at = models.DateTimeField(_("answered at"), null=True, blank=True)
    valid_to = models.DateTimeField(_("valid to"))

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("charging limit")
        verbose_name_plural = _("charging limits")
        ordering = ["charge_point", "evse_id", "purpose"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "evse_id", "purpose"], name="charginglimit_unique_per_evse_purpose"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point} / {self.evse_id} {self.purpose}: {self.limit} {self.unit}"


class ChargerConfigurationKey(models.Model):
    """One OCPP 1.6 configuration key of a charger as its last GetConfiguration answer said (the 1.6
    counterpart of the 2.0.1 device model in stations). Smart charging reads
    ChargingScheduleAllowedChargingRateUnit from here; the charger stays the source of truth."""

    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.CASCADE,
        related_name="configuration_keys",
    )
    key = models.CharField(_("key"), max_length=50)
    value = models.CharField(_("value"), max_length=500, blank=True)
    readonly = models.BooleanField(_("read-only"), default=False)
    reported_at = models.DateTimeField(_("reported at"))

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("configuration key (OCPP 1.6)")
        verbose_name_plural = _("configuration keys (OCPP 1.6)")
        ordering = ["charge_point", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "key"], name="configurationkey_unique_per_charger"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point} / {self.key}"


class GridEvent(TimeStampedModel):
    """A demand-response event: the budgets of `sites` drop by `reduce_percent` from `starts_at` until
    `ends_at` (or until it is ended early). Where events overlap, the deepest cut wins."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="grid_events"
    )
    sites = models.ManyToManyField(Site, verbose_name=_("sites"), related_name="grid_events")
    reduce_percent = models.DecimalField(
        _("reduction (%)"),
        max_digits=5,
        decimal_places=2,
        default=Decimal("20"),
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("100"))],
    )
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"))
    ended_at = models.DateTimeField(_("ended early at"), null=True, blank=True)
    source = models.CharField(_("declared by"), max_length=100, blank=True)
    reference = models.CharField(_("reference"), max_length=100, blank=True)
    integration = models.ForeignKey(
        "GridIntegration",
        verbose_name=_("declared through"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="grid_events",
        help_text=_("The utility system that declared it through the API."),
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("grid event")
        verbose_name_plural = _("grid events")
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="gridevent_ends_after_start",
                violation_error_message=_("A grid event must end after it starts."),
            ),
            models.CheckConstraint(
                condition=models.Q(reduce_percent__gt=0, reduce_percent__lte=100),
                name="gridevent_percent_range",
                violation_error_message=_("The reduction is a percentage above 0 and at most 100."),
            ),
        ]

    def __str__(self) -> str:
        return f"-{self.reduce_percent}% {self.starts_at:%Y-%m-%d %H:%M} to {self.ends_at:%H:%M}"


class GridIntegration(TimeStampedModel):
    """A utility system (a grid operator, an aggregator) that may declare grid events for one operator's
    sites through `POST /api/v1/grid-events`, with the API key issued to it in the admin. The key is shown
    once; only its prefix (to find the row) and a salted hash of its secret are kept. Revoked: refused."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="grid_integrations"
    )
    name = models.CharField(_("name"), max_length=100)
    key_prefix = models.CharField(_("key prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(_("key hash"), max_length=200, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("grid integration")
        verbose_name_plural = _("grid integrations")
        ordering = ["organisation", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ExternalChargingLimit(models.Model):
    """A limit set at the charger by someone else (an energy management system, the grid operator: OCPP
    2.0.1 NotifyChargingLimit), until the charger says it is cleared (ClearedChargingLimit). It lowers
    that charger's share when its site is allocated. EVSE 0: the whole charger."""

    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.CASCADE,
        related_name="external_charging_limits",
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    source = models.CharField(_("source"), max_length=20)
    limit_a = models.DecimalField(
        _("limit (A per phase)"), max_digits=7, decimal_places=1, null=True, blank=True
    )
    limit = models.DecimalField(
        _("limit as reported"), max_digits=10, decimal_places=1, null=True, blank=True
    )
    unit = models.CharField(_("unit"), max_length=1, choices=RateUnit.choices, blank=True)
    is_grid_critical = models.BooleanField(_("grid critical"), null=True, blank=True)
    schedule = models.JSONField(_("schedule as reported"), default=list, blank=True)
    reported_at = models.DateTimeField(_("reported at"))

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("external charging limit")
        verbose_name_plural = _("external charging limits")
        ordering = ["charge_point", "evse_id", "source"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "evse_id", "source"], name="externallimit_unique_per_evse_source"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point} / {self.evse_id} {self.source}: {self.limit_a} A"


class ReportedChargingProfile(models.Model):
    """A charging profile a charger holds, as its last ReportChargingProfiles (2.0.1) said: ours or
    anyone's (`source`: CSO is us, EMS / SO / Other set elsewhere). A new report for an EVSE replaces
    what an earlier request reported there."""

    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.CASCADE,
        related_name="reported_charging_profiles",
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    profile_id = models.IntegerField(_("profile id"))
    request_id = models.IntegerField(_("request id"))
    source = models.CharField(_("source"), max_length=20)
    purpose = models.CharField(_("purpose"), max_length=40)
    stack_level = models.PositiveSmallIntegerField(_("stack level"))
    profile = models.JSONField(_("profile as reported"))
    reported_at = models.DateTimeField(_("reported at"))

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("reported charging profile")
        verbose_name_plural = _("reported charging profiles")
        ordering = ["charge_point", "evse_id", "purpose", "-stack_level"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "evse_id", "profile_id"], name="reportedprofile_unique_per_evse_id"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point} / {self.evse_id} #{self.profile_id} {self.purpose}"


class EvChargingNeeds(models.Model):
    """What the car on an EVSE said it needs (OCPP 2.0.1 NotifyEVChargingNeeds, from ISO 15118): the
    energy it asks for and when it leaves; its current range. The latest per EVSE; it counts for the
    session running there when it was reported after that session started."""

    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.CASCADE,
        related_name="ev_charging_needs",
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    energy_transfer = models.CharField(_("requested energy transfer"), max_length=40)
    energy_amount_wh = models.PositiveIntegerField(_("energy requested (Wh)"), null=True, blank=True)
    departure_at = models.DateTimeField(_("departure"), null=True, blank=True)
    ev_min_current_a = models.PositiveIntegerField(_("car's minimum current (A)"), null=True, blank=True)
    ev_max_current_a = models.PositiveIntegerField(_("car's maximum current (A)"), null=True, blank=True)
    needs = models.JSONField(_("needs as reported"), default=dict)
    reported_at = models.DateTimeField(_("reported at"))

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("EV charging needs")
        verbose_name_plural = _("EV charging needs")
        ordering = ["charge_point", "evse_id"]
        constraints = [
            models.UniqueConstraint(fields=["charge_point", "evse_id"], name="evneeds_unique_per_evse"),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point} / {self.evse_id}: {self.energy_amount_wh} Wh by {self.departure_at}"
