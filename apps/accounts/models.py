"""Organisations (operator tenants), users, drivers, customer accounts, id tokens and the audit trail."""

from __future__ import annotations

import functools
import uuid
import zoneinfo
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from apps.accounts.choices import AuditOutcome, IdTokenStatus, IdTokenType
from apps.accounts.idtokens import normalise_uid
from apps.accounts.tenancy import TenantQuerySet, sees_everything
from cpo import clock
from cpo.models import TimeStampedModel

country_code_validator = RegexValidator(r"^[A-Z]{2}$", _("Use the ISO 3166-1 alpha-2 code, e.g. DE."))
DEFAULT_TIME_ZONE = "Europe/Berlin"


@functools.cache
def _known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone_validator(value: str) -> None:
    """An IANA time zone name the system knows (Europe/Berlin), not an abbreviation or an offset."""
    if value not in _known_time_zones():
        raise ValidationError(
            _("%(value)s is not a known time zone: use an IANA name such as Europe/Berlin."),
            code="invalid_time_zone",
            params={"value": value},
        )


class Organisation(TimeStampedModel):
    """An operator tenant: it owns assets, employs staff and has its own invoice series.

    A parent organisation sees everything of its sub-operators (tenancy.organisation_ids_for)."""

    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=64, unique=True)
    parent = models.ForeignKey(
        "self",
        verbose_name=_("parent organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
    )
    legal_name = models.CharField(_("legal name"), max_length=200, blank=True)
    vat_id = models.CharField(_("VAT id"), max_length=32, blank=True)
    country = models.CharField(_("country"), max_length=2, validators=[country_code_validator])
    address = models.TextField(_("address"), blank=True)
    email = models.EmailField(_("contact e-mail"), blank=True)
    invoice_prefix = models.CharField(
        _("invoice prefix"),
        max_length=16,
        unique=True,
        validators=[RegexValidator(r"^[A-Z0-9-]+$", _("Use upper-case letters, digits and dashes."))],
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        default=DEFAULT_TIME_ZONE,
        validators=[time_zone_validator],
        help_text=_("IANA name, e.g. Europe/Berlin: monthly invoices close at midnight on the 1st here."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "pk"

    class Meta:
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(parent=models.F("pk")),
                name="organisation_not_own_parent",
                violation_error_message=_("An organisation cannot be its own parent."),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        ancestor, seen = self.parent, set()
        while ancestor is not None:
            if self.pk and ancestor.pk == self.pk:
                raise ValidationError({"parent": _("This parent would make a cycle of organisations.")})
            if ancestor.pk in seen:
                break
            seen.add(ancestor.pk)
            ancestor = ancestor.parent


class UserQuerySet(TenantQuerySet):
    """Users as tenancy sees them: staff of the actor's organisations and the drivers linked to them
    (tenancy.register_shared_link), never a superuser nor staff outside every organisation."""

    def for_actor(self, user: Any) -> TenantQuerySet:
        if sees_everything(user):
            return self
        visible = super().for_actor(user).exclude(is_superuser=True)
        return visible.exclude(is_staff=True, organisation__isnull=True)

    def writable_by(self, user: Any) -> TenantQuerySet:
        if sees_everything(user):
            return self
        return super().writable_by(user).exclude(is_superuser=True)


class UserManager(BaseUserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in with an e-mail address: CPO staff (with an organisation) or a driver.

    `public_id` is a random pseudonym (never derived from the address): the audit trail names a driver
    only as "driver:<public_id>" (`audit_repr`), so erasing the account leaves no address behind."""

    email = models.EmailField(_("e-mail address"), max_length=254, unique=True)
    public_id = models.UUIDField(
        _("pseudonym"),
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text=_("Random; the audit trail names drivers by it (driver:<pseudonym>), never by e-mail."),
    )
    full_name = models.CharField(_("full name"), max_length=200, blank=True)
    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="staff",
        help_text=_("Staff belong to an operator organisation; drivers to none."),
    )
    is_staff = models.BooleanField(_("staff status"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=clock.now)
    email_verified_at = models.DateTimeField(_("e-mail verified at"), null=True, blank=True)

    objects = UserManager()
    tenant_field: ClassVar[str] = "organisation"
    tenant_shared_when_null: ClassVar[bool] = True

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="user_email_unique_ci",
                violation_error_message=_("A user with this e-mail address already exists."),
            ),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_driver(self) -> bool:
        """A driver's account: neither staff nor superuser nor a member of an organisation."""
        return not self.is_staff and not self.is_superuser and self.organisation_id is None

    def audit_repr(self) -> str:
        """How the audit trail names this user: a driver by pseudonym, staff (employees, accountable for
        what they do in the console) by e-mail address."""
        return f"driver:{self.public_id}" if self.is_driver else self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email


class CustomerAccount(TimeStampedModel):
    """A business or fleet customer of an operator: billed on terms, with its own drivers and tokens."""

    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("organisation"),
        on_delete=models.PROTECT,
        related_name="customer_accounts",
    )
    name = models.CharField(_("name"), max_length=200)
    vat_id = models.CharField(_("VAT id"), max_length=32, blank=True)
    billing_email = models.EmailField(_("billing e-mail"), blank=True)
    address_line = models.CharField(_("address"), max_length=200, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=20, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    country = models.CharField(_("country"), max_length=2, validators=[country_code_validator])
    payment_terms_days = models.PositiveSmallIntegerField(
        _("payment terms (days)"), default=30, validators=[MaxValueValidator(180)]
    )
    is_active = models.BooleanField(_("active"), default=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("customer account")
        verbose_name_plural = _("customer accounts")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "name"],
                name="customeraccount_unique_name_per_org",
                violation_error_message=_("This organisation already has a customer account with this name."),
            ),
            models.CheckConstraint(
                condition=models.Q(payment_terms_days__lte=180), name="customeraccount_terms_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DriverProfile(TimeStampedModel):
    """What we keep about a driver beyond the login. Drivers belong to the deployment, not a tenant:
    a profile in a customer account is that account's operator's; any other is shared, seen by staff
    only where the driver is linked to their organisation (see tenancy)."""

    user = models.OneToOneField(
        User, verbose_name=_("user"), on_delete=models.CASCADE, related_name="driver_profile"
    )
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    preferred_language = models.CharField(_("preferred language"), max_length=8, default="en")
    customer_account = models.ForeignKey(
        CustomerAccount,
        verbose_name=_("customer account"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="drivers",
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "customer_account__organisation"
    tenant_shared_when_null: ClassVar[bool] = True

    class Meta:
        verbose_name = _("driver profile")
        verbose_name_plural = _("driver profiles")
        ordering = ["user__email"]

    def __str__(self) -> str:
        return str(self.user)

    def audit_repr(self) -> str:
        return self.user.audit_repr()


class IdToken(TimeStampedModel):
    """An RFID card or app token that authorises charging. The uid is stored normalised (upper case;
    RFID as hex). `group_id` is answered as parentIdTag (1.6) / groupIdToken (2.0.1)."""

    uid = models.CharField(_("uid"), max_length=36)
    type = models.CharField(
        _("type"), max_length=16, choices=IdTokenType.choices, default=IdTokenType.ISO14443
    )
    status = models.CharField(
        _("status"), max_length=10, choices=IdTokenStatus.choices, default=IdTokenStatus.ACCEPTED
    )
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    owner = models.ForeignKey(
        User,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="id_tokens",
    )
    customer_account = models.ForeignKey(
        CustomerAccount,
        verbose_name=_("customer account"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="id_tokens",
    )
    group_id = models.CharField(
        _("group id"),
        max_length=36,
        blank=True,
        help_text=_("Answered to chargers as parentIdTag / groupIdToken."),
    )
    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("issuing organisation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="issued_id_tokens",
        help_text=_("The operator that manages this token; empty for the deployment's own driver tokens."),
    )
    valid_at = models.ManyToManyField(
        Organisation,
        verbose_name=_("valid at"),
        blank=True,
        related_name="accepted_id_tokens",
        help_text=_("Organisations whose chargers accept this token; empty means all."),
    )
    label = models.CharField(_("label"), max_length=100, blank=True)
    released_at = models.DateTimeField(
        _("released by its driver at"),
        null=True,
        blank=True,
        help_text=_("A driver unlinked this card; another driver may link it again. Cleared when linked."),
    )

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"
    tenant_shared_when_null: ClassVar[bool] = True

    class Meta:
        verbose_name = _("id token")
        verbose_name_plural = _("id tokens")
        ordering = ["uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["uid"],
                name="idtoken_uid_unique",
                violation_error_message=_("A token with this uid already exists."),
            ),
            models.CheckConstraint(
                condition=models.Q(uid=models.functions.Upper("uid")),
                name="idtoken_uid_upper_case",
                violation_error_message=_("Token uids are stored in upper case."),
            ),
        ]

    def __str__(self) -> str:
        return self.uid

    def clean(self) -> None:
        super().clean()
        try:
            self.uid = normalise_uid(self.uid, self.type)
        except ValidationError as exc:
            raise ValidationError({"uid": exc.messages}) from exc

    def is_valid_at(self, organisation_id: int | None) -> bool:
        """Whether chargers of `organisation_id` accept this token (its network): `valid_at` empty means
        every operator's chargers, otherwise only those of the organisations it names. Uses a prefetched
        `valid_at` when there is one. Its group (parentIdTag / groupIdToken) goes only to such chargers."""
        valid_at = {org.pk for org in self.valid_at.all()}
        return not valid_at or organisation_id in valid_at

    def effective_status(self, at: Any = None) -> str:
        """The status to answer a charger with at time `at` (expiry turns Accepted into Expired)."""
        at = at or clock.now()
        if self.status == IdTokenStatus.ACCEPTED and self.expires_at is not None and self.expires_at <= at:
            return IdTokenStatus.EXPIRED
        return self.status


class AuditRecord(models.Model):
    """Who did what to which object, and how it ended. Append-only: the database refuses UPDATE and
    DELETE (trigger in migration 0003). Actor and organisation are kept as ids plus a text copy, so
    deleting a user or organisation never touches the trail. The text copy of a driver (actor or target)
    is the pseudonym "driver:<public_id>", never the e-mail address or name; staff are named. Erasing a
    driver (accounts.services.driver_traces_erase) is the one writer allowed past the trigger."""

    at = models.DateTimeField(_("at"), default=clock.now, db_index=True)
    actor = models.ForeignKey(
        User,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_repr = models.CharField(_("actor"), max_length=254, blank=True)
    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("organisation"),
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    action = models.CharField(_("action"), max_length=64, db_index=True)
    target_type = models.ForeignKey(
        ContentType,
        verbose_name=_("object type"),
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    target_id = models.CharField(_("object id"), max_length=64, blank=True)
    target_repr = models.CharField(_("object"), max_length=300, blank=True)
    outcome = models.CharField(_("outcome"), max_length=10, choices=AuditOutcome.choices)
    source = models.CharField(_("source"), max_length=16, default="service")
    detail = models.JSONField(_("detail"), default=dict, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("audit record")
        verbose_name_plural = _("audit records")
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target_idx")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_repr or '-'} {self.action} {self.target_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValidationError(_("Audit records cannot be changed."))
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError(_("Audit records cannot be deleted."))


class ApiToken(models.Model):
    """A staff member's key to the operator API (`Authorization: Token <key>`): requests made with it act
    as that user, with their roles and tenancy. Only the SHA-256 of the key is kept (the key is a long
    random secret, so a plain hash is enough and is checked in one indexed lookup); the key itself is
    shown once, when created. Revoked tokens stay, for the trail; they never authenticate again."""

    user = models.ForeignKey(
        User, verbose_name=_("staff member"), on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(
        _("name"), max_length=100, help_text=_("What uses it, e.g. the ticketing system.")
    )
    key_hash = models.CharField(_("key (SHA-256)"), max_length=64, unique=True, editable=False)
    prefix = models.CharField(
        _("key starts with"), max_length=12, editable=False, help_text=_("To recognise a key you hold.")
    )
    created_at = models.DateTimeField(_("created at"), default=clock.now, editable=False)
    created_by = models.ForeignKey(
        User,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "user__organisation"

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
