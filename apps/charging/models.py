"""Charging sessions and their meter samples, fed by OCPP 1.6 and 2.0.1 alike.

A charger's timestamps are kept as it sent them (`*_charger`) next to our receive time (`*_received_at`);
`started_at` / `stopped_at` are the charger's times clamped so that none lies in the future.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.accounts.choices import IdTokenType
from apps.accounts.models import IdToken, Organisation, User
from apps.accounts.tenancy import TenantQuerySet
from apps.charging.choices import (
    AuthorizationStatus,
    CardLinkStatus,
    DriverSessionFailure,
    DriverSessionSource,
    DriverSessionStatus,
    ProbeOutcome,
    ReviewReason,
    SessionStatus,
)
from apps.stations.choices import OcppProtocol
from apps.stations.models import ChargePoint, Connector
from cpo import clock
from cpo.models import TimeStampedModel

OCPP16_TRANSACTION_SEQUENCE = "charging_ocpp16_transaction_id_seq"


class ChargingSession(TimeStampedModel):
    """One charging transaction on one EVSE, whichever OCPP version reported it."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="charging_sessions"
    )
    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.PROTECT,
        related_name="charging_sessions",
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    connector = models.ForeignKey(
        Connector,
        verbose_name=_("connector"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="charging_sessions",
    )
    protocol = models.CharField(_("protocol"), max_length=10, choices=OcppProtocol.choices)
    transaction_ref = models.CharField(
        _("transaction id"), max_length=64, help_text=_("The transaction id as the charger knows it.")
    )
    ocpp16_transaction_id = models.IntegerField(
        _("OCPP 1.6 transaction id"), null=True, blank=True, unique=True
    )
    status = models.CharField(
        _("status"), max_length=10, choices=SessionStatus.choices, default=SessionStatus.ACTIVE
    )
    id_tag = models.CharField(_("id tag"), max_length=36, blank=True)
    id_token = models.ForeignKey(
        IdToken,
        verbose_name=_("id token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="charging_sessions",
    )
    auth_status = models.CharField(
        _("authorisation"), max_length=12, choices=AuthorizationStatus.choices, blank=True
    )
    reservation_id = models.IntegerField(_("reservation id"), null=True, blank=True)
    meter_start_wh = models.BigIntegerField(_("meter start (Wh)"))
    meter_stop_wh = models.BigIntegerField(_("meter stop (Wh)"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"), db_index=True)
    started_at_charger = models.DateTimeField(_("start time (charger clock)"))
    start_received_at = models.DateTimeField(_("start received at"))
    stopped_at = models.DateTimeField(_("stopped at"), null=True, blank=True)
    stopped_at_charger = models.DateTimeField(_("stop time (charger clock)"), null=True, blank=True)
    stop_received_at = models.DateTimeField(_("stop received at"), null=True, blank=True)
    stop_reason = models.CharField(_("stop reason"), max_length=32, blank=True)
    stop_id_tag = models.CharField(_("stopped by id tag"), max_length=36, blank=True)
    timestamps_clamped = models.BooleanField(_("charger clock in the future"), default=False)
    charging_state = models.CharField(
        _("charging state"),
        max_length=16,
        blank=True,
        help_text=_("OCPP 2.0.1 chargingState from the latest transaction event."),
    )
    remote_start_id = models.IntegerField(_("remote start id"), null=True, blank=True)
    last_seq_no = models.IntegerField(_("last event sequence number"), null=True, blank=True)
    missing_seq_nos = models.JSONField(_("missing event sequence numbers"), default=list, blank=True)
    review_reason = models.CharField(
        _("needs review"), max_length=20, choices=ReviewReason.choices, blank=True
    )
    # Reconciliation of a session whose stop may have been lost (apps.charging.reconcile).
    probe_sent_at = models.DateTimeField(
        _("charger asked at"),
        null=True,
        blank=True,
        help_text=_("When reconciliation last asked the charger whether the transaction still runs."),
    )
    probe_command_id = models.BigIntegerField(_("question command"), null=True, blank=True)
    probe_outcome = models.CharField(
        _("charger's answer"), max_length=12, choices=ProbeOutcome.choices, blank=True
    )
    alive_confirmed_at = models.DateTimeField(_("charger confirmed it runs at"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("charging session")
        verbose_name_plural = _("charging sessions")
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "transaction_ref"], name="session_unique_tx_per_cp"
            ),
            # OCPP 1.6 StartTransaction replayed after a reconnect must find the same session.
            models.UniqueConstraint(
                fields=["charge_point", "evse_id", "id_tag", "started_at_charger", "meter_start_wh"],
                condition=models.Q(protocol="ocpp1.6"),
                name="session_unique_ocpp16_start",
            ),
            models.CheckConstraint(condition=models.Q(evse_id__gte=1), name="session_evse_positive"),
        ]
        indexes = [
            models.Index(fields=["id_tag", "status"], name="session_idtag_status_idx"),
            models.Index(fields=["charge_point", "status"], name="session_cp_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point_id}/{self.evse_id} tx {self.transaction_ref}"

    @property
    def energy_wh(self) -> int | None:
        if self.meter_stop_wh is None:
            return None
        return max(0, self.meter_stop_wh - self.meter_start_wh)


class MeterSample(models.Model):
    """One sampled value, normalised: energy in Wh, power in W, current in A, voltage in V.
    Signed meter data (OCPP format SignedData) is kept verbatim in `signed_data`. The table is partitioned
    by month of `sampled_at` (database key (id, sampled_at); migration 0008 says why)."""

    charge_point = models.ForeignKey(ChargePoint, on_delete=models.CASCADE, related_name="meter_samples")
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"), help_text=_("0 for the whole charge point."))
    session = models.ForeignKey(
        ChargingSession, null=True, blank=True, on_delete=models.CASCADE, related_name="meter_samples"
    )
    sampled_at = models.DateTimeField(_("sampled at (charger clock)"))
    received_at = models.DateTimeField(_("received at"))
    measurand = models.CharField(_("measurand"), max_length=64)
    phase = models.CharField(_("phase"), max_length=8, blank=True)
    location = models.CharField(_("location"), max_length=8, blank=True)
    context = models.CharField(_("context"), max_length=24, blank=True)
    unit = models.CharField(_("unit"), max_length=16)
    value = models.DecimalField(_("value"), max_digits=20, decimal_places=4, null=True, blank=True)
    raw_value = models.CharField(_("value as sent"), max_length=64, blank=True)
    raw_unit = models.CharField(_("unit as sent"), max_length=16, blank=True)
    signed_data = models.TextField(_("signed data"), blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("meter sample")
        verbose_name_plural = _("meter samples")
        ordering = ["sampled_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "evse_id", "session", "sampled_at", "measurand", "phase", "location"],
                name="metersample_natural_key",
                nulls_distinct=False,
            ),
        ]
        indexes = [
            models.Index(fields=["session", "measurand", "sampled_at"], name="metersample_session_idx")
        ]

    def __str__(self) -> str:
        return f"{self.measurand}{'.' + self.phase if self.phase else ''}={self.value}{self.unit}"


class TransactionEvent(models.Model):
    """One OCPP 2.0.1 TransactionEvent as received: de-duplicated on (charge point, transaction, seqNo)
    and used to detect gaps. The message id is never part of the key (it resets on reboot)."""

    charge_point = models.ForeignKey(ChargePoint, on_delete=models.CASCADE, related_name="transaction_events")
    session = models.ForeignKey(ChargingSession, on_delete=models.CASCADE, related_name="events")
    transaction_ref = models.CharField(_("transaction id"), max_length=64)
    seq_no = models.IntegerField(_("sequence number"))
    event_type = models.CharField(_("event type"), max_length=8)
    trigger_reason = models.CharField(_("trigger reason"), max_length=32)
    timestamp = models.DateTimeField(_("time (charger clock)"))
    received_at = models.DateTimeField(_("received at"))
    offline = models.BooleanField(_("queued while offline"), default=False)
    payload = models.JSONField(_("message"))

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("transaction event")
        verbose_name_plural = _("transaction events")
        ordering = ["session", "seq_no"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "transaction_ref", "seq_no"], name="transactionevent_natural_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.transaction_ref} #{self.seq_no} {self.event_type}"


class OrphanStop(models.Model):
    """A StopTransaction (or 2.0.1 Ended event) for a transaction we never saw start, or one that came
    after the product had closed the session itself (`session` then names it): answered normally, kept
    for review. It never changes the session nor its charge detail record."""

    charge_point = models.ForeignKey(ChargePoint, on_delete=models.CASCADE, related_name="orphan_stops")
    session = models.ForeignKey(
        ChargingSession,
        verbose_name=_("session closed before"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="late_stops",
    )
    transaction_ref = models.CharField(_("transaction id"), max_length=64)
    payload = models.JSONField(_("message"))
    received_at = models.DateTimeField(_("received at"))
    resolved = models.BooleanField(_("resolved"), default=False)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("stop for an unknown transaction")
        verbose_name_plural = _("stops for unknown transactions")
        constraints = [
            models.UniqueConstraint(fields=["charge_point", "transaction_ref"], name="orphanstop_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point_id} tx {self.transaction_ref}"


class DriverSession(TimeStampedModel):
    """A driver's charge as the mobile API sees it, from the request in the app to the completed
    charging session (or its failure before the charger started). One per ChargingSession at most;
    a charge started at the charger with the driver's own token gets one too, so the app shows it.
    `idempotency_key` is the app's Idempotency-Key header, unique per driver while it is kept (24 h)."""

    driver = models.ForeignKey(
        User, verbose_name=_("driver"), on_delete=models.PROTECT, related_name="driver_sessions"
    )
    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="driver_sessions"
    )
    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.PROTECT, related_name="driver_sessions"
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    connector = models.ForeignKey(
        Connector,
        verbose_name=_("connector"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    id_token = models.ForeignKey(
        IdToken,
        verbose_name=_("id token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="driver_sessions",
    )
    id_tag = models.CharField(_("id tag"), max_length=36, blank=True)
    source = models.CharField(
        _("source"), max_length=8, choices=DriverSessionSource.choices, default=DriverSessionSource.APP
    )
    status = models.CharField(
        _("status"), max_length=12, choices=DriverSessionStatus.choices, default=DriverSessionStatus.INITIATED
    )
    failure_reason = models.CharField(
        _("failure reason"), max_length=20, choices=DriverSessionFailure.choices, blank=True
    )
    charging_session = models.OneToOneField(
        ChargingSession,
        verbose_name=_("charging session"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="driver_session",
    )
    # OcppCommand ids (plain integers: the gateway app depends on this one, not the other way round).
    start_command_id = models.BigIntegerField(_("start command"), null=True, blank=True)
    stop_command_id = models.BigIntegerField(_("stop command"), null=True, blank=True)
    start_deadline = models.DateTimeField(_("start deadline"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    # NULL once forgotten (after 24 h; the partial unique constraint below then skips the row): a key
    # that is kept is never empty, so "" would be a second way to say "no key".
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(_("request fingerprint"), max_length=64, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("driver session")
        verbose_name_plural = _("driver sessions")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["driver", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="driversession_unique_idempotency_key",
            ),
            models.CheckConstraint(condition=models.Q(evse_id__gte=1), name="driversession_evse_positive"),
        ]
        indexes = [
            models.Index(fields=["driver", "-created_at"], name="driversession_driver_idx"),
            models.Index(fields=["charge_point", "status"], name="driversession_cp_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.driver_id} @ {self.charge_point_id}/{self.evse_id} ({self.status})"


class DriverSessionTransition(models.Model):
    """One step of a driver session's state machine, with its time and cause (append-only)."""

    session = models.ForeignKey(DriverSession, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(_("from"), max_length=12, blank=True)
    to_status = models.CharField(_("to"), max_length=12)
    at = models.DateTimeField(_("at"))
    cause = models.CharField(_("cause"), max_length=64)
    detail = models.JSONField(_("detail"), default=dict, blank=True)

    class Meta:
        verbose_name = _("driver session transition")
        verbose_name_plural = _("driver session transitions")
        ordering = ["session", "at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} → {self.to_status} ({self.cause})"


class CardLinkRequest(TimeStampedModel):
    """A driver's request to link a card (or contract id, key code) to their account, proven by presenting
    it at the charger the driver picked within `expires_at`: the card's Authorize (or transaction start)
    there links it (LINKED, `token` set) or refuses it neutrally (REFUSED: another driver's, an operator's
    or a blocked card). `uid` is what the driver typed, normalised, or empty: then the first card of `type`
    presented at the charger is the one. At most one PENDING request per charger and one per driver;
    a PENDING row past `expires_at` counts as expired (see `current_status`)."""

    driver = models.ForeignKey(
        User, verbose_name=_("driver"), on_delete=models.CASCADE, related_name="card_link_requests"
    )
    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.CASCADE,
        related_name="card_link_requests",
    )
    uid = models.CharField(_("uid"), max_length=36, blank=True)
    type = models.CharField(_("type"), max_length=16, choices=IdTokenType.choices)
    label = models.CharField(_("label"), max_length=100, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=CardLinkStatus.choices, default=CardLinkStatus.PENDING
    )
    expires_at = models.DateTimeField(_("expires at"))
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    token = models.ForeignKey(
        IdToken,
        verbose_name=_("id token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("card link request")
        verbose_name_plural = _("card link requests")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point"],
                condition=models.Q(status="pending"),
                name="cardlinkrequest_one_pending_per_charger",
            ),
            models.UniqueConstraint(
                fields=["driver"],
                condition=models.Q(status="pending"),
                name="cardlinkrequest_one_pending_per_driver",
            ),
        ]
        indexes = [models.Index(fields=["driver", "status", "decided_at"], name="cardlink_driver_idx")]

    def __str__(self) -> str:
        return f"{self.driver_id} @ {self.charge_point_id} ({self.status})"

    def current_status(self, at: datetime | None = None) -> str:
        """The status as the driver sees it at `at`: a PENDING request past its window is EXPIRED."""
        if self.status == CardLinkStatus.PENDING and self.expires_at <= (at or clock.now()):
            return CardLinkStatus.EXPIRED
        return self.status
