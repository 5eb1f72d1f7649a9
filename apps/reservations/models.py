"""A driver's reservation of an EVSE: our own int32 id is the OCPP reservation id."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import IdToken, Organisation
from apps.accounts.tenancy import TenantQuerySet
from apps.charging.models import ChargingSession
from apps.reservations.choices import ACTIVE_STATUSES, ReservationStatus
from apps.stations.models import ChargePoint

_ACTIVE = Q(status__in=ACTIVE_STATUSES)


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
    evse_id = models.PositiveIntegerField(_("EVSE / connector"))
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
