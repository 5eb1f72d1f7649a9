"""Writes for accounts: organisations, users, e-mail verification, id tokens, the audit trail."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import PasswordResetTokenGenerator, default_token_generator
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import connection, models, transaction
from django.urls import reverse
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django.utils.translation import gettext as _
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from apps.accounts import hooks
from apps.accounts.choices import AuditOutcome, IdTokenStatus, IdTokenType
from apps.accounts.idtokens import normalise_uid
from apps.accounts.models import ApiToken, AuditRecord, DriverProfile, IdToken, Organisation, User
from cpo import clock
from cpo.exceptions import Conflict, NotFound, ValidationFailed
from cpo.persistence import validated_save


def audit_repr(obj: Any) -> str:
    """How the audit trail names `obj`: its `audit_repr()` where it has one (a driver, or a driver's
    profile, is "driver:<pseudonym>", never the e-mail address or name), else `str(obj)`."""
    named = getattr(obj, "audit_repr", None)
    return str(named()) if callable(named) else str(obj)


def audit_record_create(
    *,
    actor: Any,
    action: str,
    outcome: str = AuditOutcome.SUCCEEDED,
    target: models.Model | None = None,
    organisation_id: int | None = None,
    source: str = "service",
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one audit record. `actor` may be a User, None (system) or anonymous."""
    record = audit_record_build(
        actor=actor,
        action=action,
        outcome=outcome,
        target=target,
        organisation_id=organisation_id,
        source=source,
        detail=detail,
    )
    record.save(force_insert=True)
    return record


def audit_record_build(
    *,
    actor: Any,
    action: str,
    outcome: str = AuditOutcome.SUCCEEDED,
    target: models.Model | None = None,
    organisation_id: int | None = None,
    source: str = "service",
    detail: dict[str, Any] | None = None,
) -> AuditRecord:
    """The audit record `audit_record_create` would append, unsaved: for a caller that inserts it in one
    statement with the row it audits (cpo.persistence.objects_insert_together)."""
    user = actor if isinstance(actor, User) else None
    if organisation_id is None and target is not None:
        organisation_id = getattr(target, "organisation_id", None)
        if organisation_id is None and isinstance(target, Organisation):
            organisation_id = target.pk
    return AuditRecord(
        at=clock.now(),
        actor=user,
        actor_repr=audit_repr(user) if user else (str(actor) if actor else "system"),
        organisation_id=organisation_id,
        action=action,
        target_type=ContentType.objects.get_for_model(target) if target is not None else None,
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_repr=audit_repr(target)[:300] if target is not None else "",
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
        actor=actor,
        action=f"{target._meta.model_name}.{verb}",
        target=target,
        organisation_id=_tenant_organisation_id(target),
        source="admin",
        detail=detail,
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
    *,
    name: str,
    slug: str,
    country: str,
    invoice_prefix: str,
    parent: Organisation | None = None,
    actor: Any = None,
    **extra: Any,
) -> Organisation:
    organisation = Organisation(
        name=name,
        slug=slug,
        country=country.upper(),
        invoice_prefix=invoice_prefix.upper(),
        parent=parent,
        **extra,
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
        user = User.objects.select_for_update(no_key=True).get(pk=pk)
    except (ValueError, TypeError, OverflowError, User.DoesNotExist) as exc:
        raise ValidationFailed(
            _("This verification link is invalid."), code="verification_link_invalid"
        ) from exc
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
    *,
    uid: str,
    type: str = IdTokenType.ISO14443,
    status: str | None = None,
    expires_at: datetime | None = None,
    owner_email: str | None = None,
    group_id: str | None = None,
    organisation: Organisation | None = None,
    actor: Any = None,
    source: str = "service",
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
            raise ValidationFailed(
                _("The expiry needs a time zone."), fields={"expires_at": [str(exc)]}
            ) from exc
    try:
        normalised = normalise_uid(uid, type)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages[0], fields={"uid": exc.messages}) from exc
    owner = None
    if owner_email:
        owner = User.objects.filter(email__iexact=owner_email.strip()).first()
        if owner is None:
            raise NotFound(
                _("No user with the e-mail address {email}.").format(email=owner_email),
                code="owner_not_found",
                fields={"owner": [_("No such user.")]},
            )
    token = IdToken.objects.select_for_update(no_key=True).filter(uid=normalised).first()
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
            actor=actor,
            action="idtoken.create" if created else "idtoken.update",
            target=token,
            source=source,
            detail={k: audit_repr(v) for k, v in changes.items()},
        )
    return token, created


@transaction.atomic
def idtoken_create(
    *,
    uid: str,
    organisation: Organisation,
    type: str = IdTokenType.ISO14443,
    expires_at: datetime | None = None,
    group_id: str = "",
    label: str = "",
    actor: Any = None,
    source: str = "service",
) -> IdToken:
    """A new token issued by `organisation` (Accepted). Never touches an existing one: a uid we know
    already is token_exists (409), whoever holds it. The expiry may lie in the past (the token is then
    answered Expired)."""
    if type not in IdTokenType.values:
        raise ValidationFailed(
            _("Unknown token type {type}.").format(type=type), fields={"type": [_("Unknown type.")]}
        )
    try:
        normalised = normalise_uid(uid, type)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages[0], fields={"uid": exc.messages}) from exc
    if IdToken.objects.filter(uid=normalised).exists():
        raise Conflict(
            _("A token with this uid already exists."),
            code="token_exists",
            fields={"uid": [_("Already registered.")]},
        )
    token = IdToken(
        uid=normalised,
        type=type,
        organisation=organisation,
        expires_at=expires_at,
        group_id=group_id,
        label=label,
    )
    validated_save(token)
    audit_record_create(
        actor=actor,
        action="idtoken.create",
        target=token,
        source=source,
        detail={"status": token.status, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return token


@transaction.atomic
def idtoken_block(*, token: IdToken, actor: Any = None, source: str = "service") -> IdToken:
    """Block the token (answered Blocked from now on). Blocking a blocked token changes nothing and
    records nothing."""
    token = IdToken.objects.select_for_update(no_key=True).get(pk=token.pk)
    if token.status == IdTokenStatus.BLOCKED:
        return token
    before = token.status
    token.status = IdTokenStatus.BLOCKED
    token.save(update_fields=["status", "updated_at"])
    audit_record_create(
        actor=actor,
        action="idtoken.block",
        target=token,
        source=source,
        detail={"status": [before, token.status]},
    )
    return token


@transaction.atomic
def idtoken_expire(
    *, token: IdToken, expires_at: datetime, actor: Any = None, source: str = "service"
) -> IdToken:
    """Set the token's expiry (aware; the past is allowed: the token is answered Expired at once).
    Setting the expiry it has changes nothing and records nothing."""
    try:
        expires_at = clock.ensure_aware_utc(expires_at)
    except ValueError as exc:
        raise ValidationFailed(_("The expiry needs a time zone."), fields={"expires_at": [str(exc)]}) from exc
    token = IdToken.objects.select_for_update(no_key=True).get(pk=token.pk)
    if token.expires_at == expires_at:
        return token
    before = token.expires_at
    token.expires_at = expires_at
    token.save(update_fields=["expires_at", "updated_at"])
    audit_record_create(
        actor=actor,
        action="idtoken.expire",
        target=token,
        source=source,
        detail={"expires_at": [before.isoformat() if before else None, expires_at.isoformat()]},
    )
    return token


# --- staff API tokens (the operator API) -------------------------------------------------------------

API_TOKEN_PREFIX = "cpo_"  # noqa: S105 - the start of every key, not a secret
# last_used_at is written at most this often per token (not on every request).
API_TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_hash(key: str) -> str:
    """What is stored of a key: its SHA-256 (a long random secret needs no slow hash)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@transaction.atomic
def api_token_create(
    *, user: User | None, name: str = "", actor: Any = None, source: str = "service"
) -> tuple[ApiToken, str]:
    """A new operator API token acting as `user`, an active staff member. Returns (token, key): the key
    is not stored and cannot be shown again. ValidationFailed `not_staff` for anyone else."""
    if user is None or not user.is_active or not user.is_staff:
        raise ValidationFailed(
            _("API tokens are only for active staff members."),
            code="not_staff",
            fields={"user": [_("Not an active staff member.")]},
        )
    key = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=(name or "").strip()[:100] or str(_("API token")),
        key_hash=api_token_hash(key),
        prefix=key[:12],
        created_by=actor if isinstance(actor, User) else None,
    )
    audit_record_create(
        actor=actor,
        action="apitoken.create",
        target=token,
        organisation_id=user.organisation_id,
        source=source,
        detail={"user": audit_repr(user), "name": token.name},
    )
    return token, key


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Any = None, source: str = "service") -> ApiToken:
    """Revoke the token: it never authenticates again. Revoking a revoked token changes nothing and
    records nothing."""
    token = ApiToken.objects.select_for_update(no_key=True).select_related("user").get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = clock.now()
    token.save(update_fields=["revoked_at"])
    audit_record_create(
        actor=actor,
        action="apitoken.revoke",
        target=token,
        organisation_id=token.user.organisation_id,
        source=source,
        detail={"user": audit_repr(token.user)},
    )
    return token


def api_token_authenticate(*, key: str) -> ApiToken | None:
    """The live token whose key is `key` (with its user), or None: unknown, revoked, or its user is no
    longer an active staff member. Notes when it was used (at most once a minute)."""
    if not key.startswith(API_TOKEN_PREFIX) or len(key) > 128:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=api_token_hash(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active or not token.user.is_staff:
        return None
    now = clock.now()
    if token.last_used_at is None or now - token.last_used_at >= API_TOKEN_LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# --- drivers (the mobile API) ----------------------------------------------------------------------

DRIVER_LANGUAGES = ("en", "de", "fr")


def _password_checked(password: str, user: User) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationFailed(
            exc.messages[0], code="password_too_weak", fields={"password": exc.messages}
        ) from exc


@transaction.atomic
def driver_register(
    *, email: str, password: str, full_name: str = "", preferred_language: str = "en", base_url: str
) -> User | None:
    """Register a driver without telling the caller whether the address is taken (no account enumeration).
    A new address gets the account (no organisation, not staff, with a profile) and the verification
    e-mail. A taken address (a driver's or a staff member's, whatever its case) gets an e-mail telling its
    owner that someone tried to register with it, with a password reset link; nothing is created and the
    existing account is not changed. Returns the new user, or None when the address was taken.
    Errors, the same either way (checked before the address is looked at): password_too_weak, language."""
    email = User.objects.normalize_email((email or "").strip())
    if preferred_language not in DRIVER_LANGUAGES:
        raise ValidationFailed(
            _("Unsupported language."), fields={"preferred_language": [_("Use en, de or fr.")]}
        )
    user = User(email=email, full_name=full_name.strip()[:200])
    _password_checked(password, user)
    user.set_password(password)  # hashed in both cases: the time taken tells nothing either
    existing = User.objects.filter(email__iexact=email).first()
    if existing is None:
        try:
            validated_save(user)
        except (Conflict, ValidationFailed):
            existing = User.objects.filter(email__iexact=email).first()  # lost a race for the address
            if existing is None:
                raise
    if existing is not None:
        audit_record_create(
            actor=None,
            action="driver.register_address_taken",
            outcome=AuditOutcome.DENIED,
            target=existing,
            source="api",
        )
        transaction.on_commit(lambda: user_send_registration_notice(user=existing, base_url=base_url))
        return None
    DriverProfile.objects.create(user=user, preferred_language=preferred_language)
    audit_record_create(actor=user, action="driver.register", target=user, source="api")
    transaction.on_commit(lambda: user_send_email_verification(user=user, base_url=base_url))
    return user


def _password_reset_link(*, user: User, base_url: str) -> tuple[str, str, str]:
    """(link, uid, code) of a single-use password reset for `user`."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    link = base_url.rstrip("/") + reverse("password_reset_confirm", kwargs={"uidb64": uidb64, "token": token})
    return link, uidb64, token


def user_send_registration_notice(*, user: User, base_url: str) -> bool:
    """Tell the owner of an existing account that someone tried to register with its address, with a link
    to reset the password (if it was them and they forgot it). Nothing about the account changes. An
    inactive account gets no mail. Returns whether a mail went out."""
    if not user.is_active:
        return False
    message = _(
        "Someone tried to create an account with this e-mail address. You already have one, so "
        "nothing was created or changed."
    )
    if user.has_usable_password():
        link, uidb64, token = _password_reset_link(user=user, base_url=base_url)
        message += "\n\n" + _(
            "If it was you and you forgot your password, open this link to choose a new one: {link}\n"
            "Or enter in the app: uid {uid}, code {token}"
        ).format(link=link, uid=uidb64, token=token)
    message += "\n\n" + _("If it was not you, you can ignore this e-mail.")
    send_mail(
        subject=_("Someone tried to register with your e-mail address"),
        message=message,
        from_email=None,
        recipient_list=[user.email],
    )
    return True


def user_send_password_reset(*, email: str, base_url: str) -> bool:
    """E-mail a password reset link and code if an active account has this address. Says nothing to the
    caller about whether it exists (no account enumeration); returns whether a mail went out."""
    user = User.objects.filter(email__iexact=(email or "").strip(), is_active=True).first()
    if user is None or not user.has_usable_password():
        return False
    link, uidb64, token = _password_reset_link(user=user, base_url=base_url)
    send_mail(
        subject=_("Reset your password"),
        message=_(
            "Open this link to choose a new password: {link}\nOr enter in the app: uid {uid}, code {token}"
        ).format(link=link, uid=uidb64, token=token),
        from_email=None,
        recipient_list=[user.email],
    )
    return True


@transaction.atomic
def user_reset_password(*, uidb64: str, token: str, new_password: str) -> User:
    """Set a new password from a reset link/code (single use: the code dies with the old password).
    Errors: reset_code_invalid, password_too_weak."""
    try:
        user = User.objects.select_for_update(no_key=True).get(
            pk=int(force_str(urlsafe_base64_decode(uidb64))), is_active=True
        )
    except (ValueError, TypeError, OverflowError, User.DoesNotExist) as exc:
        raise ValidationFailed(_("This reset code is invalid."), code="reset_code_invalid") from exc
    if not default_token_generator.check_token(user, token):
        raise ValidationFailed(
            _("This reset code is invalid, expired or already used."), code="reset_code_invalid"
        )
    _password_checked(new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    user_revoke_refresh_tokens(user=user)  # whoever knew the old password loses their sessions too
    audit_record_create(actor=user, action="user.reset_password", target=user, source="api")
    return user


@transaction.atomic
def driver_update(
    *,
    user: User,
    full_name: str | None = None,
    phone: str | None = None,
    preferred_language: str | None = None,
) -> User:
    """Change the driver's own profile fields (those given)."""
    profile, _created = DriverProfile.objects.select_for_update(no_key=True).get_or_create(user=user)
    if preferred_language is not None:
        if preferred_language not in DRIVER_LANGUAGES:
            raise ValidationFailed(
                _("Unsupported language."), fields={"preferred_language": [_("Use en, de or fr.")]}
            )
        profile.preferred_language = preferred_language
    if phone is not None:
        profile.phone = phone.strip()[:32]
    profile.save()
    if full_name is not None:
        user.full_name = full_name.strip()[:200]
        user.save(update_fields=["full_name"])
    return user


@transaction.atomic
def driver_delete(*, user: User) -> None:
    """Erase the driver's personal data and close the account. Sessions, CDRs and invoices stay (the law
    asks to keep them) but point at an anonymous account; the driver's cards are released and blocked,
    and every refresh token is revoked. The audit trail keeps the driver's records under the pseudonym;
    any copy of the address, name or phone left in it or in the admin's change log is erased
    (`driver_traces_erase`). The caller checks that no charge is running."""
    user = User.objects.select_for_update(no_key=True).get(pk=user.pk)
    profile = DriverProfile.objects.filter(user=user).first()
    traces = PersonalTraces(
        email=user.email, full_name=user.full_name, phone=profile.phone if profile is not None else ""
    )
    user.email = f"deleted-{user.pk}@invalid.invalid"
    user.full_name = ""
    user.is_active = False
    user.email_verified_at = None
    user.set_unusable_password()
    user.save()
    DriverProfile.objects.filter(user=user).update(phone="", customer_account=None)
    IdToken.objects.filter(owner=user).update(
        owner=None, status=IdTokenStatus.BLOCKED, label="", released_at=clock.now()
    )
    # cards the driver gave up earlier (released unowned since) lose the label the driver gave them too
    unlinked = AuditRecord.objects.filter(
        actor_id=user.pk, action="idtoken.unlink", target_type=ContentType.objects.get_for_model(IdToken)
    ).values_list("target_id", flat=True)
    IdToken.objects.filter(
        pk__in=[int(pk) for pk in unlinked if pk.isdigit()], owner__isnull=True, released_at__isnull=False
    ).exclude(label="").update(label="")
    user_revoke_refresh_tokens(user=user)
    hooks.driver_erased.emit(user=user)  # the apps above erase what they keep of the driver
    # Written after the erasure, so the record names the anonymous account, not the person.
    audit_record_create(actor=user, action="driver.delete", target=user, source="api")
    driver_traces_erase(user=user, traces=traces)


@dataclass(frozen=True, slots=True)
class PersonalTraces:
    """What identified a driver before the account was erased: looked for, and replaced, where copies of
    it may remain."""

    email: str
    full_name: str = ""
    phone: str = ""

    def replace_in(self, text: str, pseudonym: str, *, linked: bool) -> str:
        """`text` with the address (anywhere) and, in rows about this driver (`linked`), the name and phone
        replaced by `pseudonym`, ignoring case. A name or phone under 3 characters is left alone (it would
        match inside unrelated words)."""
        wanted = [self.email] + ([self.full_name, self.phone] if linked else [])
        for value in sorted((v for v in wanted if len(v.strip()) >= 3), key=len, reverse=True):
            text = re.sub(re.escape(value.strip()), pseudonym, text, flags=re.IGNORECASE)
        return text

    def replace_in_json(self, value: Any, pseudonym: str, *, linked: bool) -> Any:
        if isinstance(value, str):
            return self.replace_in(value, pseudonym, linked=linked)
        if isinstance(value, list):
            return [self.replace_in_json(v, pseudonym, linked=linked) for v in value]
        if isinstance(value, dict):
            return {
                self.replace_in(k, pseudonym, linked=linked): self.replace_in_json(
                    v, pseudonym, linked=linked
                )
                for k, v in value.items()
            }
        return value


def audit_maintenance(enabled: bool) -> None:
    """Lift (or restore) the audit trail's append-only trigger for the rest of the current transaction
    (`SET LOCAL cpo.audit_maintenance`, migration 0003). Only for erasing personal data on a legal
    request; must run inside `transaction.atomic`."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit maintenance needs a transaction")
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('cpo.audit_maintenance', %s, true)", ["on" if enabled else ""])


def driver_traces_erase(*, user: User, traces: PersonalTraces) -> int:
    """Replace what identified the erased driver `user` by its pseudonym in the two append-only logs that
    copy text: the audit trail (records about the driver: actor, target, the driver's profile; and any
    record that quotes the address, e.g. a sign-in typed with it) and Django's admin change log
    (object_repr is the object's str(), the address for a user or a profile). The audit trail's trigger
    is lifted for these rows only, in the deletion's transaction, and restored at once. Returns the number
    of rows rewritten."""
    pseudonym = user.audit_repr()
    user_type = ContentType.objects.get_for_model(User)
    profile_type = ContentType.objects.get_for_model(DriverProfile)
    profile_ids = [str(pk) for pk in DriverProfile.objects.filter(user=user).values_list("pk", flat=True)]
    linked = (
        models.Q(actor_id=user.pk)
        | models.Q(target_type=user_type, target_id=str(user.pk))
        | models.Q(target_type=profile_type, target_id__in=profile_ids)
    )
    email = traces.email
    quoting = (
        models.Q(actor_repr__icontains=email)
        | models.Q(target_repr__icontains=email)
        | models.Q(detail__icontains=email)
    )
    mine = {(user_type.pk, str(user.pk))} | {(profile_type.pk, pk) for pk in profile_ids}
    changed: list[AuditRecord] = []
    for record in AuditRecord.objects.filter(linked | quoting).order_by("pk"):
        about = record.actor_id == user.pk or (record.target_type_id, record.target_id) in mine
        new = (
            traces.replace_in(record.actor_repr, pseudonym, linked=about),
            traces.replace_in(record.target_repr, pseudonym, linked=about)[:300],
            traces.replace_in_json(record.detail, pseudonym, linked=about),
        )
        if new != (record.actor_repr, record.target_repr, record.detail):
            record.actor_repr, record.target_repr, record.detail = new
            changed.append(record)
    if changed:
        # a failure aborts the deletion's transaction, and with it the switch (SET LOCAL): no finally
        audit_maintenance(True)
        AuditRecord.objects.bulk_update(changed, ["actor_repr", "target_repr", "detail"])
        audit_maintenance(False)
    entries = LogEntry.objects.filter(
        models.Q(content_type=user_type, object_id=str(user.pk))
        | models.Q(content_type=profile_type, object_id__in=profile_ids)
        | models.Q(object_repr__icontains=email)
        | models.Q(change_message__icontains=email)
    )
    rewritten = 0
    for entry in entries.order_by("pk"):
        about = (entry.content_type_id, entry.object_id) in mine
        object_repr = pseudonym if about else traces.replace_in(entry.object_repr, pseudonym, linked=False)
        message = traces.replace_in(entry.change_message, pseudonym, linked=about)
        if (object_repr, message) != (entry.object_repr, entry.change_message):
            LogEntry.objects.filter(pk=entry.pk).update(object_repr=object_repr[:200], change_message=message)
            rewritten += 1
    return len(changed) + rewritten


def user_revoke_refresh_tokens(*, user: User) -> int:
    """Blacklist every refresh token issued to `user` (its access tokens die within minutes)."""
    revoked = 0
    for outstanding in OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True):
        BlacklistedToken.objects.get_or_create(token=outstanding)
        revoked += 1
    return revoked


def token_not_linkable_detail() -> str:
    """The one neutral refusal of a card that cannot be linked, whoever holds it."""
    return _("This card cannot be linked to your account. If it is yours, ask the operator that issued it.")


# What a driver may link: cards, contract ids and key codes (never app tokens nor charger-local ids).
DRIVER_TOKEN_TYPES = (IdTokenType.ISO14443, IdTokenType.ISO15693, IdTokenType.EMAID, IdTokenType.KEY_CODE)


def driver_token_type_check(*, type: str) -> None:
    """ValidationFailed token_type_not_allowed (400) unless a driver may link tokens of `type`."""
    if type not in DRIVER_TOKEN_TYPES:
        raise ValidationFailed(
            _("Drivers may add RFID cards, contract ids and key codes."),
            code="token_type_not_allowed",
            fields={"type": [_("Not allowed.")]},
        )


def driver_token_uid_check(*, uid: str, type: str) -> str:
    """The normalised uid of a token a driver may link, or ValidationFailed: token_type_not_allowed,
    token_uid_invalid (400). Looks at nothing stored: the answer never depends on who holds the uid."""
    driver_token_type_check(type=type)
    try:
        return normalise_uid(uid, type)
    except ValidationError as exc:
        raise ValidationFailed(
            exc.messages[0], code="token_uid_invalid", fields={"uid": exc.messages}
        ) from exc


@transaction.atomic
def driver_token_link(
    *, driver: User, uid: str, type: str = IdTokenType.ISO14443, label: str = "", source: str = "ocpp"
) -> tuple[IdToken, bool]:
    """Link a card (or other token) the driver has PROVEN to hold to the driver; returns (token, created).
    Precondition: the token was presented at a charger for the driver's link request (charging's card
    links): never call it with a uid that was only typed in. Linking your own again changes nothing; a
    card a driver released earlier may be linked again (it is unblocked); an unknown uid becomes a new
    token. Any other card we know (another driver's, one an operator issued or blocked) is
    token_not_linkable (409), one neutral answer that says nothing about whose it is."""
    normalised = driver_token_uid_check(uid=uid, type=type)
    token = IdToken.objects.select_for_update(no_key=True).filter(uid=normalised).first()
    if token is not None:
        if token.owner_id == driver.pk:
            return token, False
        # Only a card its driver released may change hands: not one an operator manages or blocked.
        released = (
            token.released_at is not None
            and token.owner_id is None
            and token.organisation_id is None
            and token.customer_account_id is None
            and token.type != IdTokenType.CENTRAL
        )
        if not released:
            raise Conflict(
                token_not_linkable_detail(),
                code="token_not_linkable",
                fields={"uid": [_("Cannot be linked.")]},
            )
        token.owner, token.status, token.label, token.type = driver, IdTokenStatus.ACCEPTED, label[:100], type
        token.released_at, token.group_id = None, ""
        validated_save(token)
        audit_record_create(actor=driver, action="idtoken.link", target=token, source=source)
        return token, False
    token = IdToken(uid=normalised, type=type, owner=driver, label=label[:100])
    validated_save(token)
    audit_record_create(actor=driver, action="idtoken.create", target=token, source=source)
    return token, True


@transaction.atomic
def driver_token_remove(*, driver: User, token: IdToken) -> None:
    """Unlink one of the driver's tokens: it stops working (blocked) and may be linked again later."""
    token = IdToken.objects.select_for_update(no_key=True).get(pk=token.pk, owner=driver)
    # the label is the driver's words (often their name): it does not stay with a card they gave up
    token.owner, token.status, token.released_at, token.label = None, IdTokenStatus.BLOCKED, clock.now(), ""
    token.save(update_fields=["owner", "status", "released_at", "label", "updated_at"])
    audit_record_create(actor=driver, action="idtoken.unlink", target=token, source="api")
