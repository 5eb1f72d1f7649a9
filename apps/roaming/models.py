"""Roaming (OCPI 2.2.1, CPO role): the parties we are connected with, the eMSPs' tokens they pushed to us,
the roaming sessions started with those tokens, every request we push to a party (with its delivery
state) and the commands parties sent us.

Credentials tokens: the ones a party uses to call us (token A we issued, token B they were given in
the handshake) are stored only as SHA-256 digests (they are 256-bit random secrets, so an unsalted digest
is enough to check them and useless to a reader of the database); the token we use to call them (token C)
must be sent, so it is stored as it is.
"""

from __future__ import annotations

from typing import ClassVar

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import Organisation, country_code_validator
from apps.accounts.tenancy import TenantQuerySet
from apps.charging.models import ChargingSession
from apps.roaming.choices import (
    AuthMethod,
    CommandResultType,
    CommandType,
    PartyStatus,
    PushStatus,
    SessionStatus,
    TokenType,
    WhitelistType,
)
from apps.stations.models import ChargePoint
from cpo import clock
from cpo.models import TimeStampedModel

party_id_validator = RegexValidator(
    r"^[A-Z0-9]{3}$", _("An OCPI party id has 3 letters or digits, e.g. EXA.")
)


class Party(TimeStampedModel):
    """Another OCPI platform (an eMSP, or a hub in front of many) connected to one of our operators:
    its identity (country code, party id, roles as its credentials listed them), its versions URL and the
    endpoints of the version both sides speak, and the credentials tokens of the connection."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("operator"), on_delete=models.PROTECT, related_name="roaming_parties"
    )
    name = models.CharField(_("name"), max_length=100)
    country_code = models.CharField(
        _("country code"), max_length=2, blank=True, validators=[country_code_validator]
    )
    party_id = models.CharField(_("party id"), max_length=3, blank=True, validators=[party_id_validator])
    roles = models.JSONField(
        _("roles"), default=list, blank=True, help_text=_("As its credentials list them.")
    )
    status = models.CharField(
        _("status"), max_length=12, choices=PartyStatus.choices, default=PartyStatus.PENDING
    )
    versions_url = models.URLField(_("versions URL"), max_length=255, blank=True)
    version = models.CharField(_("OCPI version"), max_length=10, blank=True)
    endpoints = models.JSONField(_("endpoints"), default=list, blank=True)
    token_a_hash = models.CharField(_("token A (hashed)"), max_length=64, blank=True, editable=False)
    incoming_token_hash = models.CharField(
        _("their token (hashed)"), max_length=64, blank=True, editable=False, db_index=True
    )
    outgoing_token = models.CharField(_("our token with them"), max_length=64, blank=True, editable=False)
    registered_at = models.DateTimeField(_("registered at"), null=True, blank=True)
    realtime_authorization = models.BooleanField(
        _("real-time authorisation"),
        default=True,
        help_text=_("Ask this eMSP about tokens whose whitelist type requires it."),
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("roaming party")
        verbose_name_plural = _("roaming parties")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "country_code", "party_id"],
                condition=~models.Q(party_id=""),
                name="party_unique_identity_per_org",
                violation_error_message=_("This operator is already connected with this party."),
            ),
            models.UniqueConstraint(
                fields=["token_a_hash"], condition=~models.Q(token_a_hash=""), name="party_unique_token_a"
            ),
        ]

    def __str__(self) -> str:
        ident = f"{self.country_code}*{self.party_id}" if self.party_id else _("not registered")
        return f"{self.name} ({ident})"

    def endpoint(self, identifier: str, role: str) -> str | None:
        """The URL of one of the party's endpoints (e.g. ("sessions", "RECEIVER")), None if it has none."""
        for endpoint in self.endpoints or []:
            if endpoint.get("identifier") == identifier and endpoint.get("role") == role:
                return str(endpoint.get("url") or "") or None
        return None


class RoamingToken(TimeStampedModel):
    """A driver's token an eMSP pushed to us (OCPI Token), unique by the eMSP's country code, party id,
    uid and type. `data` keeps the object as last received (all of its fields)."""

    sender = models.ForeignKey(
        Party, verbose_name=_("received from"), on_delete=models.CASCADE, related_name="tokens"
    )
    country_code = models.CharField(_("country code"), max_length=2)
    party_id = models.CharField(_("party id"), max_length=3)
    uid = models.CharField(_("uid"), max_length=36)
    type = models.CharField(_("type"), max_length=12, choices=TokenType.choices)
    contract_id = models.CharField(_("contract id"), max_length=36)
    visual_number = models.CharField(_("visual number"), max_length=64, blank=True)
    issuer = models.CharField(_("issuer"), max_length=64)
    group_id = models.CharField(_("group id"), max_length=36, blank=True)
    valid = models.BooleanField(_("valid"))
    whitelist = models.CharField(_("whitelist"), max_length=16, choices=WhitelistType.choices)
    language = models.CharField(_("language"), max_length=2, blank=True)
    last_updated = models.DateTimeField(_("last updated (theirs)"))
    data = models.JSONField(_("token as received"), default=dict)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "sender__organisation"

    class Meta:
        verbose_name = _("roaming token")
        verbose_name_plural = _("roaming tokens")
        ordering = ["sender", "uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["sender", "country_code", "party_id", "uid", "type"], name="roamingtoken_natural_key"
            ),
        ]
        indexes = [models.Index(fields=["uid"], name="roamingtoken_uid_idx")]

    def __str__(self) -> str:
        return f"{self.country_code}*{self.party_id} {self.uid} ({self.type})"


class RoamingSession(models.Model):
    """A charging session of a roaming driver: which party it is reported to, with which token and how it
    was authorised. Its OCPI id is `ocpi_id`."""

    session = models.OneToOneField(
        ChargingSession, verbose_name=_("charging session"), on_delete=models.PROTECT, related_name="roaming"
    )
    party = models.ForeignKey(
        Party, verbose_name=_("party"), on_delete=models.PROTECT, related_name="sessions"
    )
    token = models.ForeignKey(
        RoamingToken,
        verbose_name=_("token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    ocpi_id = models.CharField(_("OCPI session id"), max_length=36, unique=True)
    auth_method = models.CharField(_("authorised by"), max_length=12, choices=AuthMethod.choices)
    authorization_reference = models.CharField(_("authorisation reference"), max_length=36, blank=True)
    status = models.CharField(_("status"), max_length=11, choices=SessionStatus.choices)
    created_at = models.DateTimeField(_("created at"), default=clock.now)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "party__organisation"

    class Meta:
        verbose_name = _("roaming session")
        verbose_name_plural = _("roaming sessions")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.ocpi_id} → {self.party}"


class Push(models.Model):
    """One request we send to a party (a location status PATCH, a session PUT/PATCH, a CDR POST, a command
    result), delivered by a Celery task with retries and back-off. Requests about the same object
    (`object_key`) go out in creation order: one waits while an earlier one is not sent."""

    party = models.ForeignKey(Party, verbose_name=_("party"), on_delete=models.CASCADE, related_name="pushes")
    module = models.CharField(_("module"), max_length=16)
    method = models.CharField(_("method"), max_length=6)
    url = models.URLField(_("URL"), max_length=500)
    object_key = models.CharField(_("object"), max_length=100)
    body = models.JSONField(_("body"), null=True, blank=True)
    to_country_code = models.CharField(_("to country code"), max_length=2, blank=True)
    to_party_id = models.CharField(_("to party id"), max_length=3, blank=True)
    status = models.CharField(
        _("status"), max_length=8, choices=PushStatus.choices, default=PushStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=clock.now)
    last_http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    last_ocpi_status = models.PositiveSmallIntegerField(_("OCPI status"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created at"), default=clock.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "party__organisation"

    class Meta:
        verbose_name = _("roaming push")
        verbose_name_plural = _("roaming pushes")
        ordering = ["-pk"]
        indexes = [
            models.Index(fields=["party", "object_key", "id"], name="push_object_order_idx"),
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["PENDING", "RETRYING"]),
                name="push_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.module} {self.object_key} → {self.party_id} ({self.status})"


class RemoteCommand(models.Model):
    """A command a party sent us (OCPI Commands), the charger command it became (`command_id`, the
    gateway's record) and the result we sent to its `response_url`."""

    party = models.ForeignKey(
        Party, verbose_name=_("party"), on_delete=models.CASCADE, related_name="commands"
    )
    command = models.CharField(_("command"), max_length=20, choices=CommandType.choices)
    request = models.JSONField(_("request"))
    response_url = models.URLField(_("response URL"), max_length=255)
    charge_point = models.ForeignKey(
        ChargePoint,
        verbose_name=_("charge point"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    evse_id = models.PositiveSmallIntegerField(_("EVSE number"), null=True, blank=True)
    token = models.ForeignKey(
        RoamingToken,
        verbose_name=_("token"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    command_id = models.BigIntegerField(_("charger command"), null=True, blank=True, unique=True)
    result = models.CharField(_("result"), max_length=20, choices=CommandResultType.choices, blank=True)
    message = models.CharField(_("message"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"), default=clock.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "party__organisation"

    class Meta:
        verbose_name = _("roaming command")
        verbose_name_plural = _("roaming commands")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.command} from {self.party} ({self.result or '…'})"
