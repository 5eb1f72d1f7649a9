"""Commands sent to chargers, the OCPP message log, and messages that failed inside the product."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.accounts.tenancy import TenantQuerySet
from apps.ocpp_gateway.choices import CommandStatus, Direction
from apps.stations.models import ChargePoint


class OcppCommand(models.Model):
    """A CALL we send to a charger, with its outcome. Created by `command_send`; the consumer holding the
    charger's socket sends it and records the answer."""

    charge_point = models.ForeignKey(ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE,
                                     related_name="commands")
    action = models.CharField(_("action"), max_length=64)
    payload = models.JSONField(_("payload"), default=dict)
    unique_id = models.CharField(_("message id"), max_length=36, unique=True)
    status = models.CharField(_("status"), max_length=20, choices=CommandStatus.choices,
                              default=CommandStatus.PENDING, db_index=True)
    response = models.JSONField(_("answer"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_description = models.CharField(_("error description"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created at"), db_index=True)
    deadline = models.DateTimeField(_("deadline"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("requested by"), null=True,
                                     blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(_("source"), max_length=16, default="service")

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("command")
        verbose_name_plural = _("commands")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "deadline"], name="command_status_deadline_idx")]

    def __str__(self) -> str:
        return f"{self.action} → {self.charge_point_id} ({self.status})"

    def outcome(self) -> dict:
        return {
            "id": self.pk, "action": self.action, "status": self.status, "response": self.response,
            "error_code": self.error_code, "error_description": self.error_description,
        }


class OcppMessage(models.Model):
    """One OCPP frame in or out, written in batches off the hot path; purged after the retention period."""

    charge_point = models.ForeignKey(ChargePoint, verbose_name=_("charge point"), null=True, blank=True,
                                     on_delete=models.CASCADE, related_name="messages")
    identity = models.CharField(_("identity"), max_length=48, db_index=True)
    direction = models.CharField(_("direction"), max_length=3, choices=Direction.choices)
    message_type = models.PositiveSmallIntegerField(_("type"), null=True, blank=True)
    action = models.CharField(_("action"), max_length=64, blank=True, db_index=True)
    unique_id = models.CharField(_("message id"), max_length=64, blank=True)
    frame = models.TextField(_("frame"))
    at = models.DateTimeField(_("at"), db_index=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("OCPP message")
        verbose_name_plural = _("OCPP messages")
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["charge_point", "-at"], name="ocppmessage_cp_at_idx")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.identity} {self.direction} {self.action}"


class OcppFailedMessage(models.Model):
    """A charger's request that failed inside the product (answered InternalError), kept for replay."""

    charge_point = models.ForeignKey(ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE,
                                     related_name="failed_messages")
    protocol = models.CharField(_("protocol"), max_length=10)
    action = models.CharField(_("action"), max_length=64)
    unique_id = models.CharField(_("message id"), max_length=64)
    payload = models.JSONField(_("payload"))
    error = models.TextField(_("error"))
    received_at = models.DateTimeField(_("received at"))
    replayed_at = models.DateTimeField(_("replayed at"), null=True, blank=True)
    replay_error = models.TextField(_("replay error"), blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("failed message")
        verbose_name_plural = _("failed messages")
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.action} from {self.charge_point_id} at {self.received_at:%Y-%m-%d %H:%M:%S}"
