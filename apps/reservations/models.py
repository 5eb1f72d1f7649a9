"""A driver's reservation of an EVSE: our own int32 id is the OCPP reservation id."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import IdToken, Organisation
from apps.accounts.tenancy import TenantQuerySet
from apps.charging.models import ChargingSession
from apps.reservations.choices import ACTIVE_STATUSES, ReservationStatus
from apps.stations.models import ChargePoint

_ACTIVE = Q(status__in=ACTIVE_STATUSES)
# The longest hold any operator may offer (issue 15: a driver holds a connector for up to 30 minutes).
HOLD_LIMIT_MIN = 30
# `Reservation.evse_id` of a reservation for any connector of the charger (1.6 ReserveNow connectorId 0,
# 2.0.1 ReserveNow without evseId).
ANY_EVSE = 0


class Reservation(models.Model):
    """An EVSE held for a driver's token until `expires_at`. The primary key is an int32 (`AutoField`):
    it is the reservation id the charger knows (OCPP's reservationId / id are integers). At most one
    active (PENDING or RESERVED) reservation per EVSE and per driver, enforced by the database."""

    id = models.AutoField(primary_key=True)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="reservations", verbose_name=_("organisation")
    )
    driver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reservations",
        verbose_name=_("driver"),
    )
    charge_point = models.ForeignKey(
        ChargePoint, on_delete=models.CASCADE, related_name="reservations", verbose_name=_("charge point")
    )
    evse_id = models.PositiveIntegerField(
        _("EVSE / connector"), help_text=_("0: any connector of the charger (where it supports that).")
    )
    id_token = models.ForeignKey(
        IdToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("token")
    )
    id_tag = models.CharField(_("token uid"), max_length=64)
    status = models.CharField(
        _("status"), max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.PENDING
    )
    failure_code = models.CharField(_("failure"), max_length=64, blank=True)
    expires_at = models.DateTimeField(_("expires at"))
    reserve_command_id = models.BigIntegerField(_("ReserveNow command"), null=True, blank=True)
    cancel_command_id = models.BigIntegerField(_("CancelReservation command"), null=True, blank=True)
    charging_session = models.ForeignKey(
        ChargingSession,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("charging session"),
    )
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    fee_due = models.BooleanField(
        _("fee to price"),
        default=False,
        help_text=_("Ended without a charge (expired, or cancelled by its driver): not priced yet."),
    )
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(_("request fingerprint"), max_length=64, blank=True)
    created_by = models.CharField(_("created by"), max_length=16, default="api")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("reservation")
        verbose_name_plural = _("reservations")
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "evse_id"], condition=_ACTIVE, name="reservation_one_active_per_evse"
            ),
            models.UniqueConstraint(
                fields=["driver"], condition=_ACTIVE, name="reservation_one_active_per_driver"
            ),
            models.UniqueConstraint(
                fields=["driver", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="reservation_idempotency_key_per_driver",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="reservation_status_expiry")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.charge_point_id}/{self.evse_id} {self.status}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def any_connector(self) -> bool:
        return self.evse_id == ANY_EVSE


def _minutes_field(verbose: Any, default: int, help_text: Any) -> models.PositiveSmallIntegerField:
    return models.PositiveSmallIntegerField(
        verbose,
        default=default,
        validators=[MinValueValidator(1), MaxValueValidator(HOLD_LIMIT_MIN)],
        help_text=help_text,
    )


class ReservationSettings(models.Model):
    """How long an operator's chargers are held for a driver: the hold a driver gets when they do not
    say, and the longest they may ask for (never over HOLD_LIMIT_MIN). An operator without a row gets
    CPO_RESERVATION_DEFAULT_MIN and CPO_RESERVATION_MAX_MIN."""

    organisation = models.OneToOneField(
        Organisation,
        on_delete=models.CASCADE,
        related_name="reservation_settings",
        verbose_name=_("organisation"),
    )
    default_minutes = _minutes_field(
        _("default hold (minutes)"), 15, _("What a driver gets when they do not ask for a length.")
    )
    max_minutes = _minutes_field(
        _("longest hold (minutes)"), HOLD_LIMIT_MIN, _("The most a driver may ask for (30 at most).")
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("reservation settings")
        verbose_name_plural = _("reservation settings")
        constraints = [
            models.CheckConstraint(
                condition=Q(default_minutes__gte=1, max_minutes__lte=HOLD_LIMIT_MIN)
                & Q(default_minutes__lte=models.F("max_minutes")),
                name="reservationsettings_minutes_in_range",
                violation_error_message=_(
                    "The default hold must be 1 minute to the longest hold (30 at most)."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organisation_id}: {self.default_minutes}/{self.max_minutes} min"
