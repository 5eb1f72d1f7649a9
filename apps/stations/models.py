"""The station registry: locations, charge points, EVSEs and connectors (the OCPP 2.0.1 model).

An OCPP 1.6 connector n is EVSE n with connector 1; 1.6 connector 0 is the charge point itself, whose
availability and status live on ChargePoint, never as a connector row.
"""

from __future__ import annotations

import zoneinfo
from typing import ClassVar

from django.contrib.gis.db import models as gis_models
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Organisation, country_code_validator
from apps.accounts.tenancy import TenantQuerySet
from apps.stations.choices import (
    Availability,
    ConnectorFormat,
    ConnectorStandard,
    ConnectorStatus,
    OcppProtocol,
    PowerType,
    RegistrationStatus,
    SecurityProfile,
)
from apps.stations.hours import ALWAYS_OPEN, validate_opening_hours
from cpo.models import TimeStampedModel

IDENTITY_MAX_LENGTH = 48
identity_validator = RegexValidator(
    r"^[A-Za-z0-9._~\-]{1,48}$",
    _(
        "An OCPP identity has 1 to 48 characters: letters, digits and . _ ~ - (it is part of the URL and "
        "the Basic-auth user name)."
    ),
)


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("{tz} is not an IANA time zone (e.g. Europe/Berlin).").format(tz=value))


def default_opening_hours() -> dict:
    return dict(ALWAYS_OPEN)


class Location(TimeStampedModel):
    """A site with chargers: address, coordinates, local time zone and opening hours."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="locations"
    )
    name = models.CharField(_("name"), max_length=200)
    address = models.CharField(_("street address"), max_length=200)
    postal_code = models.CharField(_("postal code"), max_length=20, blank=True)
    city = models.CharField(_("city"), max_length=100)
    country = models.CharField(_("country"), max_length=2, validators=[country_code_validator])
    point = gis_models.PointField(_("coordinates"), geography=True, srid=4326, spatial_index=True)
    time_zone = models.CharField(_("time zone"), max_length=64, validators=[validate_time_zone])
    opening_hours = models.JSONField(
        _("opening hours"),
        default=default_opening_hours,
        validators=[validate_opening_hours],
        help_text=_('OCPI Hours object, e.g. {"twentyfourseven": true}.'),
    )
    is_published = models.BooleanField(_("published to drivers"), default=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("location")
        verbose_name_plural = _("locations")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "name"],
                name="location_unique_name_per_org",
                violation_error_message=_("This operator already has a location with this name."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}, {self.city}"

    @property
    def latitude(self) -> float | None:
        return self.point.y if self.point else None

    @property
    def longitude(self) -> float | None:
        return self.point.x if self.point else None

    def clean(self) -> None:
        super().clean()
        if self.point is None:
            raise ValidationError({"point": _("A location needs coordinates (latitude and longitude).")})
        if not (-90 <= self.point.y <= 90 and -180 <= self.point.x <= 180):
            raise ValidationError({"point": _("Latitude must be within ±90 and longitude within ±180.")})
        if self.point.x == 0 and self.point.y == 0:
            raise ValidationError(
                {"point": _("Coordinates 0, 0 are in the ocean; set the real coordinates.")}
            )


class ChargePoint(TimeStampedModel):
    """A charging station as it speaks OCPP: its identity, protocol, credentials and charger-level state."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="charge_points"
    )
    location = models.ForeignKey(
        Location,
        verbose_name=_("location"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="charge_points",
    )
    identity = models.CharField(
        _("OCPP identity"),
        max_length=IDENTITY_MAX_LENGTH,
        validators=[identity_validator],
        help_text=_("As the charger uses it in its URL: /ocpp/<identity>."),
    )
    vendor = models.CharField(_("vendor"), max_length=50, blank=True)
    model = models.CharField(_("model"), max_length=50, blank=True)
    serial_number = models.CharField(_("serial number"), max_length=50, blank=True)
    firmware_version = models.CharField(_("firmware version"), max_length=50, blank=True)
    ocpp_protocol = models.CharField(
        _("OCPP protocol"), max_length=10, choices=OcppProtocol.choices, blank=True
    )
    registration_status = models.CharField(
        _("registration status"),
        max_length=8,
        choices=RegistrationStatus.choices,
        default=RegistrationStatus.ACCEPTED,
    )
    security_profile = models.PositiveSmallIntegerField(
        _("security profile"), choices=SecurityProfile.choices, default=SecurityProfile.BASIC
    )
    auth_key_hash = models.CharField(
        _("authorisation key (hashed)"), max_length=128, blank=True, editable=False
    )
    max_power_w = models.PositiveIntegerField(_("max power (W)"), null=True, blank=True)
    availability = models.CharField(
        _("availability"), max_length=11, choices=Availability.choices, default=Availability.OPERATIVE
    )
    status = models.CharField(
        _("status"), max_length=13, choices=ConnectorStatus.choices, default=ConnectorStatus.UNKNOWN
    )
    status_error_code = models.CharField(_("error code"), max_length=50, blank=True)
    status_info = models.CharField(_("status info"), max_length=500, blank=True)
    status_charger_at = models.DateTimeField(_("status time (charger clock)"), null=True, blank=True)
    status_received_at = models.DateTimeField(_("status received at"), null=True, blank=True)
    last_seen_at = models.DateTimeField(_("last seen"), null=True, blank=True, db_index=True)
    last_boot_at = models.DateTimeField(_("last boot"), null=True, blank=True)
    is_online = models.BooleanField(
        _("online"), default=False, help_text=_("Copied periodically from the live presence record in Redis.")
    )
    clock_skew_s = models.IntegerField(
        _("clock skew (s)"),
        null=True,
        blank=True,
        help_text=_("Charger clock minus our clock, from its latest timestamped status message."),
    )
    firmware_status = models.CharField(_("firmware status"), max_length=32, blank=True)
    firmware_status_at = models.DateTimeField(_("firmware status at"), null=True, blank=True)
    diagnostics_status = models.CharField(_("diagnostics status"), max_length=32, blank=True)
    diagnostics_status_at = models.DateTimeField(_("diagnostics status at"), null=True, blank=True)
    iccid = models.CharField(_("ICCID"), max_length=20, blank=True)
    imsi = models.CharField(_("IMSI"), max_length=20, blank=True)
    meter_serial_number = models.CharField(_("meter serial number"), max_length=25, blank=True)
    meter_type = models.CharField(_("meter type"), max_length=25, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("charge point")
        verbose_name_plural = _("charge points")
        ordering = ["identity"]
        indexes = [
            # The presence flush's safety net (online in PostgreSQL, silent for longer than presence lives):
            # only online chargers in the index, so the lookup costs what is stale, not every offline one.
            models.Index(
                fields=["last_seen_at"],
                condition=models.Q(is_online=True),
                name="chargepoint_online_seen",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                Lower("identity"),
                name="chargepoint_identity_unique_ci",
                violation_error_message=_("A charge point with this OCPP identity already exists."),
            ),
            models.CheckConstraint(
                condition=models.Q(security_profile__in=[0, 1, 2]), name="chargepoint_security_profile_range"
            ),
            models.CheckConstraint(
                condition=models.Q(security_profile=0) | ~models.Q(auth_key_hash=""),
                name="chargepoint_key_for_basic_auth",
                violation_error_message=_("Security profiles 1 and 2 need an authorisation key."),
            ),
        ]

    def __str__(self) -> str:
        return self.identity

    def clean(self) -> None:
        super().clean()
        if (
            self.location_id
            and self.organisation_id
            and self.location.organisation_id != self.organisation_id
        ):
            raise ValidationError({"location": _("The location belongs to another operator.")})

    @property
    def has_auth_key(self) -> bool:
        return bool(self.auth_key_hash)


class Evse(models.Model):
    """An EVSE: the part of a charge point that charges one vehicle at a time (OCPP 2.0.1 evseId)."""

    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE, related_name="evses"
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    emi3_id = models.CharField(
        _("EVSE id (eMI3)"),
        max_length=48,
        blank=True,
        help_text=_("e.g. DE*ABC*E123456*1, shown to roaming partners."),
    )
    availability = models.CharField(
        _("availability"), max_length=11, choices=Availability.choices, default=Availability.OPERATIVE
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("EVSE")
        verbose_name_plural = _("EVSEs")
        ordering = ["charge_point", "evse_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "evse_id"],
                name="evse_unique_number_per_chargepoint",
                violation_error_message=_("This charge point already has an EVSE with this number."),
            ),
            models.CheckConstraint(
                condition=models.Q(evse_id__gte=1),
                name="evse_number_positive",
                violation_error_message=_("EVSE numbers start at 1."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point.identity} / EVSE {self.evse_id}"


class Connector(models.Model):
    """A plug or socket of an EVSE, with what it can deliver and its last reported status."""

    evse = models.ForeignKey(
        Evse, verbose_name=_("EVSE"), on_delete=models.CASCADE, related_name="connectors"
    )
    connector_id = models.PositiveSmallIntegerField(_("connector number"))
    standard = models.CharField(
        _("standard"),
        max_length=20,
        choices=ConnectorStandard.choices,
        default=ConnectorStandard.IEC_62196_T2,
    )
    format = models.CharField(
        _("format"), max_length=6, choices=ConnectorFormat.choices, default=ConnectorFormat.SOCKET
    )
    power_type = models.CharField(
        _("power type"), max_length=10, choices=PowerType.choices, default=PowerType.AC_3_PHASE
    )
    max_voltage_v = models.PositiveIntegerField(_("max voltage (V)"), default=400)
    max_current_a = models.PositiveIntegerField(_("max current (A)"), default=32)
    max_power_w = models.PositiveIntegerField(_("max power (W)"), default=22000)
    status = models.CharField(
        _("status"), max_length=13, choices=ConnectorStatus.choices, default=ConnectorStatus.UNKNOWN
    )
    error_code = models.CharField(_("error code"), max_length=50, blank=True)
    status_info = models.CharField(_("status info"), max_length=500, blank=True)
    status_charger_at = models.DateTimeField(_("status time (charger clock)"), null=True, blank=True)
    status_received_at = models.DateTimeField(_("status received at"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "evse__charge_point__organisation"

    class Meta:
        verbose_name = _("connector")
        verbose_name_plural = _("connectors")
        ordering = ["evse", "connector_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["evse", "connector_id"],
                name="connector_unique_number_per_evse",
                violation_error_message=_("This EVSE already has a connector with this number."),
            ),
            models.CheckConstraint(
                condition=models.Q(connector_id__gte=1),
                name="connector_number_positive",
                violation_error_message=_("Connector numbers start at 1."),
            ),
            models.CheckConstraint(
                condition=models.Q(max_power_w__gt=0, max_current_a__gt=0, max_voltage_v__gt=0),
                name="connector_ratings_positive",
                violation_error_message=_("Voltage, current and power ratings must be positive."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.evse} / {self.connector_id}"


class DeviceVariable(models.Model):
    """One attribute of one variable of the charger's OCPP 2.0.1 device model, as NotifyReport (or a
    GetVariables answer) last told us. Shown to operators; the charger stays the source of truth."""

    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE, related_name="device_variables"
    )
    component = models.CharField(_("component"), max_length=50)
    component_instance = models.CharField(_("component instance"), max_length=50, blank=True)
    evse_id = models.PositiveSmallIntegerField(_("EVSE"), null=True, blank=True)
    connector_id = models.PositiveSmallIntegerField(_("connector"), null=True, blank=True)
    variable = models.CharField(_("variable"), max_length=50)
    variable_instance = models.CharField(_("variable instance"), max_length=50, blank=True)
    attribute_type = models.CharField(_("attribute"), max_length=8, default="Actual")
    value = models.CharField(_("value"), max_length=2500, blank=True)
    mutability = models.CharField(_("mutability"), max_length=10, blank=True)
    data_type = models.CharField(_("data type"), max_length=20, blank=True)
    unit = models.CharField(_("unit"), max_length=16, blank=True)
    values_list = models.CharField(_("allowed values"), max_length=1000, blank=True)
    reported_at = models.DateTimeField(_("reported at"))

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("device model variable")
        verbose_name_plural = _("device model variables")
        ordering = ["charge_point", "component", "evse_id", "connector_id", "variable", "attribute_type"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "charge_point",
                    "component",
                    "component_instance",
                    "evse_id",
                    "connector_id",
                    "variable",
                    "variable_instance",
                    "attribute_type",
                ],
                name="devicevariable_natural_key",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.component}.{self.variable}[{self.attribute_type}]={self.value}"


class ChargerEvent(models.Model):
    """A notable event a charger reported: OCPP 2.0.1 NotifyEvent data or a SecurityEventNotification."""

    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE, related_name="events"
    )
    kind = models.CharField(
        _("kind"), max_length=10, choices=[("event", _("Event")), ("security", _("Security"))]
    )
    event_id = models.IntegerField(_("event id"), null=True, blank=True)
    occurred_at = models.DateTimeField(_("occurred at (charger clock)"))
    received_at = models.DateTimeField(_("received at"))
    trigger = models.CharField(_("trigger / type"), max_length=50)
    component = models.CharField(_("component"), max_length=50, blank=True)
    variable = models.CharField(_("variable"), max_length=50, blank=True)
    actual_value = models.CharField(_("value"), max_length=2500, blank=True)
    tech_info = models.CharField(_("details"), max_length=255, blank=True)
    payload = models.JSONField(_("message"), default=dict)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("charger event")
        verbose_name_plural = _("charger events")
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "kind", "event_id", "occurred_at", "trigger"],
                name="chargerevent_natural_key",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point_id} {self.kind} {self.trigger} {self.occurred_at:%Y-%m-%d %H:%M:%S}"
