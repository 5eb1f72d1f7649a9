"""Writes for accounts: organisations, users, e-mail verification, id tokens, the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import models, transaction
from django.urls import reverse
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django.utils.translation import gettext as _

from apps.accounts.choices import AuditOutcome, IdTokenStatus, IdTokenType
from apps.accounts.idtokens import normalise_uid
from apps.accounts.models import AuditRecord, IdToken, Organisation, User
from cpo import clock
from cpo.exceptions import NotFound, ValidationFailed
from cpo.persistence import validated_save


def audit_record_create(
    *, actor: Any, action: str, outcome: str = AuditOutcome.SUCCEEDED, target: models.Model | None = None,
    organisation_id: int | None = None, source: str = "service", detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one audit record. `actor` may be a User, None (system) or anonymous."""
    user = actor if isinstance(actor, User) else None
    if organisation_id is None and target is not None:
        organisation_id = getattr(target, "organisation_id", None)
        if organisation_id is None and isinstance(target, Organisation):
            organisation_id = target.pk
    return AuditRecord.objects.create(
        at=clock.now(),
        actor=user,
        actor_repr=str(user) if user else (str(actor) if actor else "system"),
        organisation_id=organisation_id,
        action=action,
        target_type=ContentType.objects.get_for_model(target) if target is not None else None,
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_repr=str(target)[:300] if target is not None else "",
        outcome=outcome,
        source=source,
        detail=detail or {},
    )


def audit_record_create_from_admin(
    *, actor: Any, verb: str, target: models.Model, message: Any = None
) -> AuditRecord:
    """The CPO_AUDIT_HOOK: one record (source "admin") per add, change or delete made in the admin,
    e.g. action "chargepoint.update". The organisation is found through the model's tenant_field, so
    rows owned through a parent (an EVSE, a connector) are filed under their operator too."""
    detail = {"changes": message} if message else {}
    return audit_record_create(
        actor=actor, action=f"{target._meta.model_name}.{verb}", target=target,
        organisation_id=_tenant_organisation_id(target), source="admin", detail=detail,
    )


def _tenant_organisation_id(target: models.Model) -> int | None:
    path = getattr(type(target), "tenant_field", None)
    if not path:
        return None
    if path == "pk":
        return target.pk
    *parents, last = path.split("__")
    owner: Any = target
    for name in parents:
        owner = getattr(owner, name, None)
        if owner is None:
            return None
    return getattr(owner, f"{last}_id", None)


@transaction.atomic
def organisation_create(
    *, name: str, slug: str, country: str, invoice_prefix: str, parent: Organisation | None = None,
    actor: Any = None, **extra: Any,
) -> Organisation:
    organisation = Organisation(
        name=name, slug=slug, country=country.upper(), invoice_prefix=invoice_prefix.upper(), parent=parent, **extra
    )
    validated_save(organisation)
    audit_record_create(actor=actor, action="organisation.create", target=organisation)
    return organisation


# --- e-mail verification -------------------------------------------------------------------------


class EmailVerificationTokenGenerator(PasswordResetTokenGenerator):
    """A link that stops working once the address is verified or changed."""

    key_salt = "apps.accounts.EmailVerificationTokenGenerator"

    def _make_hash_value(self, user: Any, timestamp: int) -> str:
        return f"{user.pk}{user.email}{user.email_verified_at}{timestamp}"


email_verification_tokens = EmailVerificationTokenGenerator()


def user_send_email_verification(*, user: User, base_url: str) -> str:
    """E-mail `user` a verification link under `base_url` (e.g. https://cpo.example.com); returns the link."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = email_verification_tokens.make_token(user)
    link = base_url.rstrip("/") + reverse("verify-email", kwargs={"uidb64": uidb64, "token": token})
    send_mail(
        subject=_("Confirm your e-mail address"),
        message=_("Open this link to confirm your e-mail address: {link}").format(link=link),
        from_email=None,
        recipient_list=[user.email],
    )
    return link


@transaction.atomic
def user_verify_email(*, uidb64: str, token: str) -> User:
    """Mark the address verified. Raises ValidationFailed for a bad, used or expired link."""
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
        user = User.objects.select_for_update().get(pk=pk)
    except (ValueError, TypeError, OverflowError, User.DoesNotExist) as exc:
        raise ValidationFailed(_("This verification link is invalid."), code="verification_link_invalid") from exc
    if not email_verification_tokens.check_token(user, token):
        raise ValidationFailed(
            _("This verification link is invalid, expired or already used."), code="verification_link_invalid"
        )
    user.email_verified_at = clock.now()
    user.save(update_fields=["email_verified_at"])
    audit_record_create(actor=user, action="user.verify_email", target=user, source="web")
    return user


# --- id tokens -----------------------------------------------------------------------------------


@transaction.atomic
def idtoken_upsert(
    *, uid: str, type: str = IdTokenType.ISO14443, status: str | None = None, expires_at: datetime | None = None,
    owner_email: str | None = None, group_id: str | None = None, organisation: Organisation | None = None,
    actor: Any = None, source: str = "service",
) -> tuple[IdToken, bool]:
    """Create the token, or update the fields given. Idempotent: the same call twice changes nothing
    the second time. Returns (token, created)."""
    if status is not None and status not in IdTokenStatus.values:
        raise ValidationFailed(
            _("Unknown token status {status}; use one of {allowed}.").format(
                status=status, allowed=", ".join(IdTokenStatus.values)
            ),
            fields={"status": [_("Unknown status.")]},
        )
    if type not in IdTokenType.values:
        raise ValidationFailed(
            _("Unknown token type {type}.").format(type=type), fields={"type": [_("Unknown type.")]}
        )
    if expires_at is not None:
        try:
            expires_at = clock.ensure_aware_utc(expires_at)
        except ValueError as exc:
            raise ValidationFailed(_("The expiry needs a time zone."), fields={"expires_at": [str(exc)]}) from exc
    try:
        normalised = normalise_uid(uid, type)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages[0], fields={"uid": exc.messages}) from exc
    owner = None
    if owner_email:
        owner = User.objects.filter(email__iexact=owner_email.strip()).first()
        if owner is None:
            raise NotFound(_("No user with the e-mail address {email}.").format(email=owner_email),
                           code="owner_not_found", fields={"owner": [_("No such user.")]})
    token = IdToken.objects.select_for_update().filter(uid=normalised).first()
    created = token is None
    if created:
        token = IdToken(uid=normalised, type=type, organisation=organisation)
    assert token is not None
    changes: dict[str, Any] = {}
    wanted = {"status": status, "expires_at": expires_at, "owner": owner, "group_id": group_id}
    if created:
        wanted["type"] = type
    for field, value in wanted.items():
        if value is not None and getattr(token, field) != value:
            changes[field] = value
            setattr(token, field, value)
    if created or changes:
        validated_save(token)
        audit_record_create(
            actor=actor, action="idtoken.create" if created else "idtoken.update", target=token, source=source,
            detail={k: str(v) for k, v in changes.items()},
        )
    return token, created
