"""The console's records: alerts (and their e-mail and webhook deliveries), where each organisation's
alerts are sent, and the compact status and connection history that uptime is computed from."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Organisation
from apps.accounts.tenancy import TenantQuerySet
from apps.console.choices import AlertKind, DeliveryChannel, DeliveryStatus
from apps.stations.models import ChargePoint
from cpo.models import TimeStampedModel


class Alert(models.Model):
    """Something staff must look at: a charger offline for too long, a faulted connector, a boot loop, a
    rejected charging profile, a failed payment capture. One open alert per kind and subject; it is
    resolved when the condition ends (where the product can tell) and acknowledged by staff."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="alerts"
    )
    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alerts",
    )
    kind = models.CharField(_("kind"), max_length=20, choices=AlertKind.choices)
    subject = models.CharField(
        _("subject"), max_length=64, blank=True, help_text=_("What within the charger, e.g. evse 1/1.")
    )
    message = models.CharField(_("message"), max_length=500)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    opened_at = models.DateTimeField(_("opened at"), db_index=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("acknowledged by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "kind", "charge_point", "subject"],
                condition=Q(resolved_at__isnull=True),
                name="alert_one_open_per_subject",
                nulls_distinct=False,
            ),
        ]
        indexes = [models.Index(fields=["organisation", "resolved_at"], name="alert_org_open")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class AlertDelivery(models.Model):
    """One alert sent through one channel (e-mail, the organisation's webhook): attempts and outcome."""

    alert = models.ForeignKey(
        Alert, verbose_name=_("alert"), on_delete=models.CASCADE, related_name="deliveries"
    )
    channel = models.CharField(_("channel"), max_length=8, choices=DeliveryChannel.choices)
    status = models.CharField(
        _("status"), max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "alert__organisation"

    class Meta:
        verbose_name = _("alert delivery")
        verbose_name_plural = _("alert deliveries")
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel"], name="alertdelivery_one_per_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.channel}: {self.status}"


class AlertChannels(TimeStampedModel):
    """Where an organisation's alerts go: e-mail addresses and an outbound webhook (a JSON POST signed with
    HMAC-SHA256 of the secret: header X-CPO-Signature "t=<unix time>,v1=<hex of t.body>")."""

    organisation = models.OneToOneField(
        Organisation, verbose_name=_("operator"), on_delete=models.CASCADE, related_name="alert_channels"
    )
    emails = models.TextField(
        _("e-mail addresses"), blank=True, help_text=_("One address per line (or separated by commas).")
    )
    webhook_url = models.URLField(_("webhook URL"), blank=True, max_length=500)
    webhook_secret = models.CharField(
        _("webhook secret"),
        max_length=128,
        blank=True,
        help_text=_("Signs each webhook request (HMAC-SHA256). Required with a webhook URL."),
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("alert channels")
        verbose_name_plural = _("alert channels")

    def __str__(self) -> str:
        return str(self.organisation)

    def email_list(self) -> list[str]:
        return [part.strip() for part in self.emails.replace(",", "\n").splitlines() if part.strip()]


class StatusInterval(models.Model):
    """How long a connector (or the charge point as a whole: EVSE 0, connector 0) stayed in one status:
    one row per change of status, never per report. The open interval has no end."""

    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE, related_name="status_intervals"
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"))
    connector_id = models.PositiveSmallIntegerField(_("connector number"))
    status = models.CharField(_("status"), max_length=13)
    error_code = models.CharField(_("error code"), max_length=50, blank=True)
    started_at = models.DateTimeField(_("from"))
    ended_at = models.DateTimeField(_("until"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("status interval")
        verbose_name_plural = _("status intervals")
        ordering = ["charge_point", "evse_id", "connector_id", "started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "evse_id", "connector_id"],
                condition=Q(ended_at__isnull=True),
                name="statusinterval_one_open",
            ),
        ]
        indexes = [
            models.Index(
                fields=["charge_point", "evse_id", "connector_id", "started_at"], name="statusinterval_lookup"
            )
        ]

    def __str__(self) -> str:
        return f"{self.charge_point_id} {self.evse_id}/{self.connector_id} {self.status}"


class ConnectionInterval(models.Model):
    """How long a charger stayed connected (from the presence records, at the flush's resolution)."""

    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.CASCADE,
        related_name="connection_intervals",
    )
    started_at = models.DateTimeField(_("from"))
    ended_at = models.DateTimeField(_("until"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("connection interval")
        verbose_name_plural = _("connection intervals")
        ordering = ["charge_point", "started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point"],
                condition=Q(ended_at__isnull=True),
                name="connectioninterval_one_open",
            ),
        ]
        indexes = [models.Index(fields=["charge_point", "started_at"], name="connectioninterval_lookup")]

    def __str__(self) -> str:
        return f"{self.charge_point_id} {self.started_at:%Y-%m-%d %H:%M}"
