"""Admin for organisations, users and roles, drivers, customer accounts, id tokens and the audit trail.

Everything is scoped through cpo.admin.BaseModelAdmin: staff of one organisation see that organisation
and its sub-operators, the superuser sees everything. On top of that, staff cannot escalate: they
cannot grant superuser status or single permissions, can assign only roles whose permissions they
hold themselves, and cannot touch superusers or staff outside every organisation (nor see them).

Drivers, their profiles and their personal cards have no organisation: staff see them only where they
are linked to their organisation (apps.accounts.tenancy) and never change them: a driver's e-mail,
password, status, groups and cards are the driver's (through the API) or a superuser's.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from apps.accounts.models import (
    ApiToken,
    AuditRecord,
    CustomerAccount,
    DriverProfile,
    IdToken,
    Organisation,
    User,
)
from apps.accounts.resources import IdTokenResource
from apps.accounts.services import api_token_create, api_token_revoke
from apps.accounts.tenancy import organisation_ids_for, sees_everything
from cpo import clock
from cpo.admin import BaseModelAdmin, ReadOnlyAdminMixin, ScopedImportExportMixin

_UID_SEPARATORS = re.compile(r"[\s:\-.]")

# --- organisations -------------------------------------------------------------------------------


class OrganisationAdminForm(forms.ModelForm):
    """Only the superuser creates top-level organisations; staff add sub-operators under their own."""

    actor: Any = None

    class Meta:
        model = Organisation
        fields = (
            "name",
            "slug",
            "parent",
            "is_active",
            "legal_name",
            "vat_id",
            "country",
            "address",
            "email",
            "invoice_prefix",
            "time_zone",
        )

    def clean_parent(self) -> Organisation | None:
        parent = self.cleaned_data.get("parent")
        if parent is None and not sees_everything(self.actor):
            raise ValidationError(
                _("Only a superuser can create a top-level organisation; choose the parent organisation."),
                code="parent_required",
            )
        return parent


@admin.register(Organisation)
class OrganisationAdmin(BaseModelAdmin):
    form = OrganisationAdminForm
    list_display = (
        "name",
        "slug",
        "parent",
        "country",
        "invoice_prefix",
        "sub_organisation_count",
        "is_active",
    )
    list_filter = ("is_active", "country", "parent")
    search_fields = ("name", "slug", "legal_name", "vat_id", "email")
    prepopulated_fields = {"slug": ("name",)}
    list_select_related = ("parent",)
    readonly_fields = ("sub_organisations", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "slug", "parent", "sub_organisations", "is_active")}),
        (
            _("Legal and billing"),
            {
                "fields": (
                    "legal_name",
                    "vat_id",
                    "country",
                    "address",
                    "email",
                    "invoice_prefix",
                    "time_zone",
                )
            },
        ),
        (_("Record"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(sub_organisation_count=Count("children", distinct=True))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        # The top of a staff member's tree hangs from something they cannot see or change.
        if (
            obj is not None
            and not sees_everything(request.user)
            and obj.parent_id not in organisation_ids_for(request.user)
        ):
            fields.append("parent")
        return fields

    @admin.display(description=_("sub-organisations"), ordering="sub_organisation_count")
    def sub_organisation_count(self, obj: Organisation) -> int:
        return obj.sub_organisation_count

    @admin.display(description=_("sub-organisations"))
    def sub_organisations(self, obj: Organisation) -> str:
        children = obj.children.order_by("name") if obj.pk else []
        return (
            format_html_join(
                ", ",
                '<a href="{}">{}</a>',
                (
                    (reverse("admin:accounts_organisation_change", args=[child.pk]), child.name)
                    for child in children
                ),
            )
            or "-"
        )


# --- users and roles -----------------------------------------------------------------------------


class StaffNeedAnOrganisationMixin:
    """Users created or edited by non-superusers belong to an organisation of the editor's: staff never
    create drivers (drivers register through the app) nor turn a colleague into one."""

    actor: Any = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()  # type: ignore[misc]
        is_staff = cleaned.get("is_staff", getattr(self.instance, "is_staff", False))  # type: ignore[attr-defined]
        missing = "organisation" in cleaned and cleaned.get("organisation") is None
        if missing and not sees_everything(self.actor):
            if is_staff:
                message = _("Staff members need an organisation.")
            else:
                message = _(
                    "Drivers register through the app; users you create belong to one of your organisations."
                )
            self.add_error("organisation", message)  # type: ignore[attr-defined]
        return cleaned


class UserCreationAdminForm(StaffNeedAnOrganisationMixin, AdminUserCreationForm):
    """Create a user by e-mail address, optionally for an organisation."""

    class Meta:
        model = User
        fields = ("email", "full_name", "organisation", "is_staff")
        field_classes: dict[str, Any] = {}


class UserChangeAdminForm(StaffNeedAnOrganisationMixin, UserChangeForm):
    """Change a user; the password is changed through its own form (link on the password field)."""

    class Meta:
        model = User
        fields = "__all__"
        field_classes: dict[str, Any] = {}


def assignable_groups(actor: Any) -> QuerySet[Group]:
    """The role groups `actor` may hand out: those whose every permission the actor holds."""
    if sees_everything(actor):
        return Group.objects.all()
    held = actor.get_all_permissions()
    lacking = [
        group_id
        for group_id, app_label, codename in Permission.objects.filter(group__isnull=False).values_list(
            "group", "content_type__app_label", "codename"
        )
        if f"{app_label}.{codename}" not in held
    ]
    return Group.objects.exclude(pk__in=lacking)


@admin.register(User)
class UserAdmin(BaseModelAdmin, DjangoUserAdmin):
    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Personal info"), {"fields": ("full_name", "public_id")}),
        (
            _("Organisation and roles"),
            {
                "fields": (
                    "organisation",
                    "is_active",
                    "is_staff",
                    "is_superuser",
                    "groups",
                    "user_permissions",
                ),
            },
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined", "email_verified_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "email",
                    "full_name",
                    "organisation",
                    "is_staff",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )
    list_display = ("email", "full_name", "organisation", "is_staff", "email_verified", "is_active")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups", "organisation")
    search_fields = ("email", "full_name")
    ordering = ("email",)
    list_select_related = ("organisation",)
    # public_id: how the audit trail names a driver ("driver:<pseudonym>"); search the trail for it
    readonly_fields = ("public_id", "last_login", "date_joined", "email_verified_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if not sees_everything(request.user):
            fields += ["is_superuser", "user_permissions"]
        return fields

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "groups":
            kwargs["queryset"] = assignable_groups(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _protected(self, request: HttpRequest, obj: Any) -> bool:
        """Superusers, and staff outside every organisation, are changed only by a superuser."""
        return (
            obj is not None
            and not sees_everything(request.user)
            and (obj.is_superuser or (obj.is_staff and obj.organisation_id is None))
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._protected(request, obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not self._protected(request, obj) and super().has_delete_permission(request, obj)

    @admin.display(description=_("verified"), boolean=True, ordering="email_verified_at")
    def email_verified(self, obj: User) -> bool:
        return obj.email_verified


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(BaseModelAdmin, DjangoGroupAdmin):
    """Role groups (deployment-wide), with changes audited like every other admin change."""


# --- drivers and customers -----------------------------------------------------------------------


@admin.register(DriverProfile)
class DriverProfileAdmin(BaseModelAdmin):
    """Staff see the profiles of drivers linked to their organisations (tenancy) and change only those in
    their customer accounts, and there only the customer account: the login, phone and language are the
    driver's (changed through the app) or a superuser's."""

    list_display = ("user", "phone", "preferred_language", "customer_account")
    list_filter = ("preferred_language", "customer_account")
    search_fields = ("user__email", "user__full_name", "phone")
    list_select_related = ("user", "customer_account")
    autocomplete_fields = ("user",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if not sees_everything(request.user):
            fields += ["user", "phone", "preferred_language"]
        return fields


@admin.register(CustomerAccount)
class CustomerAccountAdmin(BaseModelAdmin):
    list_display = (
        "name",
        "organisation",
        "vat_id",
        "billing_email",
        "city",
        "country",
        "payment_terms_days",
        "driver_count",
        "is_active",
    )
    list_filter = ("is_active", "country", "organisation")
    search_fields = ("name", "vat_id", "billing_email", "city")
    list_select_related = ("organisation",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(driver_count=Count("drivers", distinct=True))

    @admin.display(description=_("drivers"), ordering="driver_count")
    def driver_count(self, obj: CustomerAccount) -> int:
        return obj.driver_count


# --- id tokens -----------------------------------------------------------------------------------


class IdTokenAdminForm(forms.ModelForm):
    """Staff add tokens for their organisations. The uid is normalised by the model's clean(), so the
    form stores, and then shows, the normalised value (and a bad uid gets the model's message)."""

    actor: Any = None

    class Meta:
        model = IdToken
        fields = (
            "uid",
            "type",
            "status",
            "expires_at",
            "label",
            "owner",
            "customer_account",
            "group_id",
            "organisation",
            "valid_at",
        )
        help_texts = {
            "uid": _(
                "Stored in upper case; RFID uids as hexadecimal without separators (04:a1:b2:c3 → 04A1B2C3)."
            ),
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # Staff never make a card shared (no organisation): a card without an issuer is a driver's own.
        if (
            "organisation" in self.fields
            and cleaned.get("organisation") is None
            and not sees_everything(self.actor)
        ):
            self.add_error("organisation", _("Choose the organisation that issues this token."))
        return cleaned


class ExpiryListFilter(admin.SimpleListFilter):
    """Tokens by expiry: already expired, expiring within 30 days, or never expiring."""

    title = _("expiry")
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return (
            ("expired", _("Expired")),
            ("soon", _("Expires within 30 days")),
            ("never", _("Never expires")),
        )

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = clock.now()
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "soon":
            return queryset.filter(expires_at__gt=now, expires_at__lte=now + timedelta(days=30))
        if self.value() == "never":
            return queryset.filter(expires_at__isnull=True)
        return queryset


@admin.register(IdToken)
class IdTokenAdmin(ScopedImportExportMixin, BaseModelAdmin):
    form = IdTokenAdminForm
    resource_classes = [IdTokenResource]
    list_display = ("uid", "type", "status", "expires_at", "owner", "organisation", "group_id")
    list_filter = ("status", "type", ExpiryListFilter, "organisation", "valid_at")
    search_fields = ("uid", "owner__email", "group_id", "label")
    search_help_text = _("uid (with or without separators), owner e-mail, group id or label")
    list_select_related = ("owner", "organisation")
    autocomplete_fields = ("owner",)
    filter_horizontal = ("valid_at",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("uid", "type", "status", "expires_at", "label")}),
        (_("Owner"), {"fields": ("owner", "customer_account", "group_id")}),
        (_("Where it is valid"), {"fields": ("organisation", "valid_at")}),
        (_("Record"), {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    # What support (change without add) may edit on its organisation's cards: block or unblock, expiry
    # and label. Who holds a card and where it is valid is managed by those who issue cards (add).
    SUPPORT_EDITABLE = ("status", "expires_at", "label")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and not sees_everything(request.user) and not self.has_add_permission(request):
            form_fields = [name for name in IdTokenAdminForm.Meta.fields if name not in self.SUPPORT_EDITABLE]
            fields += [name for name in form_fields if name not in fields]
        return fields

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> Any:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        compact = _UID_SEPARATORS.sub("", search_term)
        if compact and compact != search_term.strip():
            results = results | queryset.filter(uid__icontains=compact)
        return results, may_have_duplicates


# --- audit trail ---------------------------------------------------------------------------------


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """The audit trail, read-only for everyone (the database refuses changes anyway)."""

    list_display = ("at", "actor_repr", "organisation", "action", "target_repr", "outcome", "source")
    list_filter = ("outcome", "source", "action", ("at", admin.DateFieldListFilter), "organisation")
    search_fields = ("actor_repr", "action", "target_repr", "target_id")
    date_hierarchy = "at"
    fields = (
        "at",
        "actor_repr",
        "organisation",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "outcome",
        "source",
        "detail_pretty",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # select_related keeps a record readable after its organisation or actor is gone (no FK constraint).
        return super().get_queryset(request).select_related("organisation", "target_type")

    @admin.display(description=_("detail"))
    def detail_pretty(self, obj: AuditRecord) -> str:
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.detail, indent=2, ensure_ascii=False, sort_keys=True)
        )


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("user", "name")


@admin.register(ApiToken)
class ApiTokenAdmin(BaseModelAdmin):
    """Operator API tokens of the organisation's staff. Adding one shows its key once (only its hash is
    kept); a token is never edited or deleted, only revoked (action), so the trail keeps it."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix", "user__email")
    list_select_related = ("user",)
    actions = ["revoke"]
    readonly_fields = ("user", "name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("user", "name") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.readonly_fields

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "user" and formfield is not None:
            # Active staff the actor may manage (never a driver, never another organisation's staff).
            formfield.queryset = User.objects.writable_by(request.user).filter(is_staff=True, is_active=True)
        return formfield

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A token is never edited: its page is read-only; the change permission is what revoking needs.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        token, key = api_token_create(
            user=form.cleaned_data["user"], name=form.cleaned_data["name"], actor=request.user, source="admin"
        )
        for field in ApiToken._meta.concrete_fields:
            setattr(obj, field.attname, getattr(token, field.attname))
        obj._state.adding = False
        messages.warning(
            request,
            format_html(
                str(_("The new API token of {user}: <code>{key}</code> It is not shown again.")),
                user=token.user.email,
                key=key,
            ),
        )

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # api_token_create wrote the audit record: Django's change log only, not a second record.
        return admin.ModelAdmin.log_addition(self, request, obj, message)

    @admin.action(description=_("Revoke the selected tokens"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token, actor=request.user, source="admin")
            revoked += 1
        self.message_user(
            request, str(_("{count} token(s) revoked.")).format(count=revoked), level=messages.SUCCESS
        )


# simplejwt's blacklist registers its tables in the admin; they hold drivers' refresh tokens (bearer
# secrets) across every tenant, which no staff member needs to read. Revocation goes through the API.
for _jwt_model in (OutstandingToken, BlacklistedToken):
    if admin.site.is_registered(_jwt_model):
        admin.site.unregister(_jwt_model)
