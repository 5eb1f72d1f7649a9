"""Commands sent to chargers, the OCPP message log, and messages that failed inside the product; files
exchanged with chargers (firmware images, diagnostics uploads) and local authorisation lists."""

from __future__ import annotations

import secrets
import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.db import models
from django.utils.text import get_valid_filename
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import IdToken, Organisation
from apps.accounts.tenancy import TenantQuerySet
from apps.ocpp_gateway.choices import CommandStatus, Direction
from apps.stations.models import ChargePoint
from cpo import clock
from cpo.models import TimeStampedModel


class OcppCommand(models.Model):
    """A CALL we send to a charger, with its outcome. Created by `command_send`; the consumer holding the
    charger's socket sends it; `command_record_outcome` makes it final. Its `unique_id` (the OCPP message
    id, a UUID) also names its outcome in Redis: unique for all time, unlike the sequence id."""

    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE, related_name="commands"
    )
    action = models.CharField(_("action"), max_length=64)
    payload = models.JSONField(_("payload"), default=dict)
    unique_id = models.CharField(_("message id"), max_length=36, unique=True)
    status = models.CharField(
        _("status"),
        max_length=20,
        choices=CommandStatus.choices,
        default=CommandStatus.PENDING,
        db_index=True,
    )
    response = models.JSONField(_("answer"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_description = models.CharField(_("error description"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created at"), db_index=True)
    deadline = models.DateTimeField(_("deadline"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    source = models.CharField(_("source"), max_length=16, default="service")
    new_key_hash = models.CharField(
        _("new authorisation key (hashed)"),
        max_length=128,
        blank=True,
        editable=False,
        help_text=_(
            "For a ChangeConfiguration of AuthorizationKey: applied to the charge point once it accepts."
        ),
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("command")
        verbose_name_plural = _("commands")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "deadline"], name="command_status_deadline_idx")]

    def __str__(self) -> str:
        return f"{self.action} → {self.charge_point_id} ({self.status})"

    def outcome(self) -> dict[str, Any]:
        """The command's outcome in the one shape waiters, the admin and ocpp_call read."""
        return command_outcome_shape(
            command_id=self.pk,
            action=self.action,
            status=self.status,
            response=self.response,
            error_code=self.error_code,
            error_description=self.error_description,
        )


def command_outcome_shape(
    *,
    command_id: int,
    action: str,
    status: str,
    response: dict[str, Any] | None,
    error_code: str,
    error_description: str,
) -> dict[str, Any]:
    """THE shape of a command's outcome (`OcppCommand.outcome()`, and what is published to waiters)."""
    return {
        "id": command_id,
        "action": action,
        "status": status,
        "response": response,
        "error_code": error_code,
        "error_description": error_description,
    }


class OcppMessage(models.Model):
    """One OCPP frame in or out, written in batches off the hot path. The table is partitioned by month of
    `at` (database key (id, at)); whole months are dropped after the retention period (cpo.partitions)."""

    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="messages",
    )
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
    """A charger's request kept for replay: it failed inside the product (answered InternalError), or its
    connection closed before it was handled (`error` says which). Replayed once by itself
    (`replay.kept_messages_replay`), and by operators."""

    charge_point = models.ForeignKey(
        ChargePoint, verbose_name=_("charge point"), on_delete=models.CASCADE, related_name="failed_messages"
    )
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


# --- files exchanged with chargers ---------------------------------------------------------------


def _safe_name(filename: str, fallback: str) -> str:
    """A storage-safe last path segment of a name a charger or operator chose ("..", "" → fallback)."""
    try:
        name = get_valid_filename(filename.rsplit("/", 1)[-1])
    except SuspiciousFileOperation:
        name = ""
    return (name or fallback)[:120]


def firmware_upload_to(instance: FirmwareFile, filename: str) -> str:
    return f"firmware/{instance.public_id}/{_safe_name(filename, 'firmware.bin')}"


def diagnostics_upload_to(instance: DiagnosticsUpload, filename: str) -> str:
    # A random directory per upload: the file is never reachable by guessing its name.
    return (
        f"diagnostics/{instance.charge_point_id}/{clock.now():%Y/%m}/{secrets.token_hex(8)}/"
        f"{_safe_name(filename, 'diagnostics.bin')}"
    )


class FirmwareFile(TimeStampedModel):
    """A firmware image an operator uploaded for its chargers. Chargers fetch it from an unguessable URL
    (/ocpp/firmware/<public_id>/<filename>) that UpdateFirmware names; size and SHA-256 are computed
    from the stored file, never typed."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="firmware_files"
    )
    vendor = models.CharField(
        _("charger vendor"),
        max_length=50,
        blank=True,
        help_text=_("As the charger reports it in BootNotification; empty for any."),
    )
    model = models.CharField(
        _("charger model"),
        max_length=50,
        blank=True,
        help_text=_("As the charger reports it in BootNotification; empty for any."),
    )
    version = models.CharField(_("firmware version"), max_length=50)
    file = models.FileField(_("file"), upload_to=firmware_upload_to, max_length=255)
    filename = models.CharField(_("file name"), max_length=255, editable=False)
    size = models.BigIntegerField(_("size (bytes)"), default=0, editable=False)
    sha256 = models.CharField(_("SHA-256"), max_length=64, editable=False)
    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True, editable=False)
    notes = models.TextField(_("notes"), blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("firmware file")
        verbose_name_plural = _("firmware files")
        ordering = ["vendor", "model", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "vendor", "model", "version"],
                name="firmwarefile_unique_version",
                violation_error_message=_(
                    "This operator already has this firmware version for this charger model."
                ),
            ),
        ]

    def __str__(self) -> str:
        target = " ".join(part for part in (self.vendor, self.model) if part) or _("any charger")
        return f"{target} {self.version} ({self.filename})"


class DiagnosticsUpload(models.Model):
    """Where a charger may upload one diagnostics file, issued with a GetDiagnostics command, and the file
    it uploaded. The upload URL carries a random token of which only the SHA-256 is stored; it is good
    for one upload and until `expires_at`."""

    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.CASCADE,
        related_name="diagnostics_uploads",
    )
    command = models.OneToOneField(
        OcppCommand,
        verbose_name=_("command"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="diagnostics_upload",
    )
    token_hash = models.CharField(_("token (hashed)"), max_length=64, unique=True, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created at"), db_index=True)
    expires_at = models.DateTimeField(_("upload allowed until"))
    announced_filename = models.CharField(_("file name announced by the charger"), max_length=255, blank=True)
    file = models.FileField(_("file"), upload_to=diagnostics_upload_to, max_length=255, blank=True)
    filename = models.CharField(_("file name"), max_length=255, blank=True)
    size = models.BigIntegerField(_("size (bytes)"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    uploaded_at = models.DateTimeField(_("uploaded at"), null=True, blank=True)
    uploaded_from = models.GenericIPAddressField(_("uploaded from"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "charge_point__organisation"

    class Meta:
        verbose_name = _("diagnostics upload")
        verbose_name_plural = _("diagnostics uploads")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        name = self.filename or self.announced_filename or "-"
        return f"{self.charge_point_id}: {name} ({self.created_at:%Y-%m-%d})"

    @property
    def is_uploaded(self) -> bool:
        return self.uploaded_at is not None


# --- local authorisation lists -------------------------------------------------------------------


class LocalAuthList(TimeStampedModel):
    """A local authorisation list (OCPP SendLocalList) kept for one charger or a group of chargers.
    `version` grows by one with every change of its entries; a charger belongs to at most one list."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="local_auth_lists"
    )
    name = models.CharField(_("name"), max_length=100)
    version = models.PositiveIntegerField(_("version"), default=1, editable=False)
    include_roaming = models.BooleanField(
        _("roaming tokens too"),
        default=False,
        help_text=_(
            "Also the tokens eMSPs pushed whose whitelist type allows it (ALWAYS, ALLOWED): their drivers "
            "can then start while the charger is offline. Never ALLOWED_OFFLINE or NEVER tokens."
        ),
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("local authorisation list")
        verbose_name_plural = _("local authorisation lists")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "name"],
                name="localauthlist_unique_name_per_org",
                violation_error_message=_(
                    "This operator already has a local authorisation list with this name."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class LocalAuthListEntry(models.Model):
    """An id token on a local list with what chargers were last told about it (`info`: status, group id,
    expiry, version-agnostic). A token taken off the list stays as a tombstone (`removed`) so that a
    differential update can tell chargers to delete it. `changed_version` is the list version that last
    changed the entry."""

    local_list = models.ForeignKey(
        LocalAuthList, verbose_name=_("local list"), on_delete=models.CASCADE, related_name="entries"
    )
    id_token = models.ForeignKey(
        IdToken,
        verbose_name=_("id token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="local_list_entries",
    )
    id_tag = models.CharField(_("id tag"), max_length=36)
    info: Any = models.JSONField(_("authorisation info"), default=dict, blank=True)
    changed_version = models.PositiveIntegerField(_("changed in version"))
    removed = models.BooleanField(_("removed"), default=False)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "local_list__organisation"

    class Meta:
        verbose_name = _("local list entry")
        verbose_name_plural = _("local list entries")
        ordering = ["id_tag"]
        constraints = [
            models.UniqueConstraint(fields=["local_list", "id_tag"], name="localauthlistentry_unique_tag"),
        ]
        indexes = [models.Index(fields=["local_list", "changed_version"], name="localentry_list_version_idx")]

    def __str__(self) -> str:
        return f"{self.id_tag}{' (removed)' if self.removed else ''}"


class LocalAuthListMember(models.Model):
    """A charge point on a local list, with what it holds of it: the version last sent, the version it
    last accepted (the base of a differential update; None when unknown) and the version it reported."""

    local_list = models.ForeignKey(
        LocalAuthList, verbose_name=_("local list"), on_delete=models.CASCADE, related_name="members"
    )
    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        on_delete=models.CASCADE,
        related_name="local_list_memberships",
    )
    sent_version = models.PositiveIntegerField(_("version sent"), null=True, blank=True)
    sent_update_type = models.CharField(_("update type sent"), max_length=12, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    sent_command = models.ForeignKey(
        OcppCommand,
        verbose_name=_("last SendLocalList"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    last_status = models.CharField(_("charger's last answer"), max_length=32, blank=True)
    accepted_version = models.PositiveIntegerField(_("version accepted"), null=True, blank=True)
    accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)
    reported_version = models.IntegerField(
        _("version reported"),
        null=True,
        blank=True,
        help_text=_("From GetLocalListVersion; -1: no local list support."),
    )
    reported_at = models.DateTimeField(_("reported at"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "local_list__organisation"

    class Meta:
        verbose_name = _("charge point on the list")
        verbose_name_plural = _("charge points on the list")
        ordering = ["charge_point__identity"]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point"],
                name="localauthlistmember_one_list_per_cp",
                violation_error_message=_("This charge point is already on a local authorisation list."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point_id} on {self.local_list_id}"

    def clean(self) -> None:
        super().clean()
        cp, local_list = getattr(self, "charge_point", None), getattr(self, "local_list", None)
        if (
            cp is not None
            and local_list is not None
            and local_list.organisation_id
            and cp.organisation_id != local_list.organisation_id
        ):
            raise ValidationError(
                {"charge_point": _("The charge point belongs to another operator than the list.")}
            )
