"""Roaming in the operations console: parties (issue a token A, register with a party from its versions URL
and token A, update or end the credentials), the tokens eMSPs pushed, roaming sessions, the commands
parties sent, and every push with its delivery state and a retry action for failed ones."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from apps.accounts.choices import AuditOutcome
from apps.accounts.services import audit_record_create
from apps.roaming import credentials, pushes
from apps.roaming.choices import PartyStatus, PushStatus
from apps.roaming.client import OcpiRequestFailed
from apps.roaming.models import Party, Push, RemoteCommand, RoamingSession, RoamingToken
from apps.roaming.protocol import OcpiError, new_token, token_digest
from cpo.admin import BaseModelAdmin, ReadOnlyAdminMixin


class PartyForm(forms.ModelForm):
    their_versions_url = forms.URLField(
        assume_scheme="https",
        label=_("their versions URL"),
        required=False,
        help_text=_("To register with a party: the versions URL it gave you, with the token A below."),
    )
    their_token_a = forms.CharField(
        label=_("their token A"),
        required=False,
        max_length=64,
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = Party
        fields = ["organisation", "name", "realtime_authorization"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if bool(data.get("their_versions_url")) != bool(data.get("their_token_a")):
            raise forms.ValidationError(_("Give both their versions URL and their token A, or neither."))
        return data


@admin.register(Party)
class PartyAdmin(BaseModelAdmin):
    """Roaming parties. A new party without a versions URL gets a token A to hand over (shown once)."""

    form = PartyForm
    list_display = ["name", "country_code", "party_id", "status", "version", "registered_at", "organisation"]
    list_filter = ["status"]
    search_fields = ["name", "party_id"]
    readonly_fields = [
        "country_code",
        "party_id",
        "status",
        "roles",
        "versions_url",
        "version",
        "endpoints",
        "registered_at",
    ]
    actions = ["issue_token_a", "update_credentials", "unregister"]

    def save_model(self, request: HttpRequest, obj: Party, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        url, token_a = form.cleaned_data.get("their_versions_url"), form.cleaned_data.get("their_token_a")
        if url and token_a:
            try:
                credentials.credentials_register(
                    party=obj, versions_url=url, token_a=token_a, base_url=credentials.ocpi_base_url()
                )
            except (OcpiError, OcpiRequestFailed) as exc:
                self.message_user(
                    request, _("Registration failed: {error}").format(error=exc), messages.ERROR
                )
            else:
                self.message_user(request, _("Registered with {party}.").format(party=obj), messages.SUCCESS)
        elif not change:
            self._issue(request, obj)

    def _issue(self, request: HttpRequest, party: Party) -> None:
        token = new_token()
        Party.objects.filter(pk=party.pk).update(
            token_a_hash=token_digest(token), status=PartyStatus.PENDING, incoming_token_hash=""
        )
        _audit(request, "roaming.party.token_a_issue", party)
        self.message_user(
            request,
            _("Token A for {party} (shown once): {token}").format(party=party, token=token),
            messages.WARNING,
        )

    @admin.action(description=_("Issue a new token A"))
    def issue_token_a(self, request: HttpRequest, queryset: QuerySet[Party]) -> None:
        for party in queryset:
            if party.status == PartyStatus.REGISTERED:
                self.message_user(
                    request,
                    _("{party} is registered: unregister it first.").format(party=party),
                    messages.ERROR,
                )
                _audit(request, "roaming.party.token_a_issue", party, error="registered")
                continue
            self._issue(request, party)

    @admin.action(description=_("Update the credentials (new tokens)"))
    def update_credentials(self, request: HttpRequest, queryset: QuerySet[Party]) -> None:
        for party in queryset:
            try:
                credentials.credentials_update(party=party, base_url=credentials.ocpi_base_url())
            except (OcpiError, OcpiRequestFailed) as exc:
                self.message_user(request, f"{party}: {exc}", messages.ERROR)
                _audit(request, "roaming.party.credentials_update", party, error=str(exc))
            else:
                self.message_user(request, _("{party}: credentials updated.").format(party=party))
                _audit(request, "roaming.party.credentials_update", party)

    @admin.action(description=_("Unregister (end the connection)"))
    def unregister(self, request: HttpRequest, queryset: QuerySet[Party]) -> None:
        for party in queryset:
            try:
                credentials.credentials_unregister(party=party)
            except (OcpiError, OcpiRequestFailed) as exc:
                self.message_user(
                    request,
                    _("{party}: unregistered here; the party did not confirm: {error}").format(
                        party=party, error=exc
                    ),
                    messages.WARNING,
                )
                _audit(request, "roaming.party.unregister", party, detail={"party_confirmed": False})
            else:
                self.message_user(request, _("{party}: unregistered.").format(party=party))
                _audit(request, "roaming.party.unregister", party, detail={"party_confirmed": True})


@admin.register(RoamingToken)
class RoamingTokenAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Tokens eMSPs pushed to us (their drivers' cards and apps)."""

    list_display = ["uid", "type", "country_code", "party_id", "contract_id", "valid", "whitelist", "sender"]
    list_filter = ["valid", "whitelist", "type"]
    search_fields = ["uid", "contract_id", "visual_number"]


@admin.register(RoamingSession)
class RoamingSessionAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ["ocpi_id", "party", "token", "auth_method", "status", "created_at"]
    list_filter = ["status", "auth_method"]


@admin.register(RemoteCommand)
class RemoteCommandAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    list_display = ["command", "party", "charge_point", "evse_id", "result", "created_at", "finished_at"]
    list_filter = ["command", "result"]


@admin.register(Push)
class PushAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """What we pushed to parties and what failed. A failed push can be retried (pushes of the same object
    after it wait for it)."""

    list_display = [
        "pk",
        "party",
        "module",
        "method",
        "object_key",
        "status",
        "attempts",
        "last_http_status",
        "last_ocpi_status",
        "last_error",
        "created_at",
        "sent_at",
    ]
    list_filter = ["status", "module"]
    search_fields = ["object_key", "url"]
    actions = ["retry"]

    @admin.action(description=_("Retry the failed pushes"))
    def retry(self, request: HttpRequest, queryset: QuerySet[Push]) -> None:
        count = 0
        for push in queryset.filter(status=PushStatus.FAILED).select_related("party"):
            pushes.push_retry(push=push)
            _audit(request, "roaming.push.retry", push, organisation_id=push.party.organisation_id)
            count += 1
        self.message_user(request, _("{count} push(es) will be sent again.").format(count=count))


def _audit(
    request: HttpRequest,
    action: str,
    target: Party | Push,
    *,
    error: str = "",
    detail: dict[str, Any] | None = None,
    organisation_id: int | None = None,
) -> None:
    """One audit record per party or push an operator acted on (failed attempts too, with the error)."""
    audit_record_create(
        actor=request.user,
        action=action,
        outcome=AuditOutcome.FAILED if error else AuditOutcome.SUCCEEDED,
        target=target,
        organisation_id=organisation_id
        if organisation_id is not None
        else getattr(target, "organisation_id", None),
        source="admin",
        detail={**(detail or {}), **({"error": error[:500]} if error else {})},
    )
