"""CSV import/export (django-import-export) for accounts, and the tenant-aware resource base the
other apps' resources build on.

A resource made with an ``actor`` (the admin passes the requesting user) reads and exports only what
that user may see and refuses, row by row, anything that would land outside the user's
organisations. Without an actor it is a system import (scripts, management commands): unscoped.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext as _
from import_export import resources
from import_export.fields import Field
from import_export.widgets import CharWidget, ForeignKeyWidget, Widget

from apps.accounts.choices import IdTokenType
from apps.accounts.idtokens import normalise_uid
from apps.accounts.models import IdToken, Organisation, User
from apps.accounts.services import audit_record_create
from apps.accounts.tenancy import organisation_ids_for, sees_everything
from cpo import clock


class OrganisationSlugWidget(ForeignKeyWidget):
    """An organisation named by its slug; an unknown slug is a clear per-row error."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Organisation, field="slug", **kwargs)

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Organisation | None:
        slug = str(value).strip() if value is not None else ""
        if not slug:
            return None
        organisation = Organisation.objects.filter(slug=slug).first()
        if organisation is None:
            raise ValueError(_("No organisation with the slug “{slug}”.").format(slug=slug))
        return organisation


class ScopedForeignKeyWidget(ForeignKeyWidget):
    """A foreign key looked up among the rows the resource's actor may see (set by the resource)."""

    actor: Any = None

    def get_queryset(self, value: Any, row: Any, *args: Any, **kwargs: Any) -> models.QuerySet:
        queryset = self.model._default_manager.all()
        if self.actor is not None and hasattr(queryset, "for_actor"):
            queryset = queryset.for_actor(self.actor)
        return queryset


class UserEmailWidget(ScopedForeignKeyWidget):
    """A user named by e-mail address (case-insensitive)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(User, field="email", **kwargs)

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> User | None:
        email = str(value).strip() if value is not None else ""
        if not email:
            return None
        user = self.get_queryset(email, row).filter(email__iexact=email).first()
        if user is None:
            raise ValueError(_("No user with the e-mail address {email}.").format(email=email))
        return user


class IsoDateTimeWidget(Widget):
    """An aware timestamp as ISO-8601 with an offset or Z; exported in UTC."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        text = str(value).strip() if value is not None else ""
        if not text:
            return None
        try:
            return clock.parse_iso8601(text)
        except ValueError as exc:
            raise ValueError(
                _("“{value}” is not an ISO-8601 time with a time zone, e.g. 2027-12-31T23:59:59Z.").format(
                    value=text
                )
            ) from exc

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return clock.ensure_aware_utc(value).isoformat().replace("+00:00", "Z") if value else ""


class TenantResource(resources.ModelResource):
    """Base for resources of tenant-owned models (those with an ``organisation`` column).

    Subclasses may name ``write_only_fields`` (imported, never exported) and ``error_labels``
    (model field name -> the column name to report a row's error under)."""

    write_only_fields: tuple[str, ...] = ()
    error_labels: dict[str, str] = {}

    def __init__(self, actor: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.actor = actor
        self._share_actor_with_widgets()

    def _share_actor_with_widgets(self) -> None:
        for field in self.fields.values():
            if isinstance(field.widget, ScopedForeignKeyWidget):
                field.widget.actor = self.actor

    def scoped(self, queryset: models.QuerySet) -> models.QuerySet:
        if self.actor is not None and hasattr(queryset, "for_actor"):
            return queryset.for_actor(self.actor)
        return queryset

    def get_queryset(self) -> models.QuerySet:
        return self.scoped(super().get_queryset())

    def filter_export(self, queryset: models.QuerySet, **kwargs: Any) -> models.QuerySet:
        return self.scoped(super().filter_export(queryset, **kwargs))

    def get_export_order(self) -> tuple[str, ...]:
        return tuple(name for name in super().get_export_order() if name not in self.write_only_fields)

    def before_import(self, dataset: Any, **kwargs: Any) -> None:
        if self.actor is None and kwargs.get("user") is not None:
            self.actor = kwargs["user"]
            self._share_actor_with_widgets()
        super().before_import(dataset, **kwargs)

    def get_instance(self, instance_loader: Any, row: Any) -> Any:
        # A bad key value (unknown organisation slug...) is reported by the row's own validation.
        try:
            return super().get_instance(instance_loader, row)
        except (ValueError, ValidationError):
            return None

    def scope_error(self, instance: models.Model) -> str | None:
        """Why the actor may not write this row, or None."""
        if self.actor is None or sees_everything(self.actor):
            return None
        if instance.pk is not None and not self._stored_row_writable(instance):
            return _("You may not change the row “{row}”: it is not your organisation's.").format(
                row=instance
            )
        organisation_id = getattr(instance, "organisation_id", None)
        if organisation_id is None:
            return _("Name the organisation (its slug) this row belongs to.")
        if organisation_id not in organisation_ids_for(self.actor):
            slug = Organisation.objects.filter(pk=organisation_id).values_list("slug", flat=True).first()
            return _("You may not import rows for the organisation “{slug}”.").format(slug=slug)
        return None

    def _stored_row_writable(self, instance: models.Model) -> bool:
        """Whether the row as stored (before this import changed it) may be changed by the actor."""
        queryset = type(instance)._default_manager.all()
        writable_by = getattr(queryset, "writable_by", None)
        if not callable(writable_by):
            return True
        return writable_by(self.actor).filter(pk=instance.pk).exists()

    def validate_instance(
        self, instance: Any, import_validation_errors: Any = None, validate_unique: bool = True
    ) -> None:
        errors = dict(import_validation_errors or {})
        if "organisation" not in errors:
            problem = self.scope_error(instance)
            if problem:
                errors["organisation"] = [ValidationError(problem)]
        try:
            super().validate_instance(instance, errors, validate_unique)
        except ValidationError as exc:
            raise self._readable(exc) from None

    def _readable(self, error: ValidationError) -> ValidationError:
        """The row's errors keyed by column name, each message once."""
        readable: dict[str, list[str]] = {}
        for field, messages in error.message_dict.items():
            bucket = readable.setdefault(self.error_labels.get(field, field), [])
            bucket.extend(m for m in messages if m not in bucket)
        return ValidationError(readable)

    def save_instance(self, instance: Any, is_create: bool, row: Any, **kwargs: Any) -> None:
        super().save_instance(instance, is_create, row, **kwargs)
        if not self._is_dry_run(kwargs):
            audit_record_create(
                actor=self.actor,
                action=f"{instance._meta.model_name}.{'create' if is_create else 'update'}",
                target=instance,
                source="import",
                detail={"row": kwargs.get("row_number")},
            )


class IdTokenResource(TenantResource):
    """Id tokens: uid (normalised), type, status, expiry (ISO-8601), owner e-mail, group id and
    organisation slug. Rows are matched on the normalised uid, so re-importing a file updates rather
    than duplicates."""

    uid = Field(attribute="uid", column_name="uid", widget=CharWidget())
    expires_at = Field(attribute="expires_at", column_name="expires_at", widget=IsoDateTimeWidget())
    owner = Field(attribute="owner", column_name="owner", widget=UserEmailWidget())
    organisation = Field(
        attribute="organisation", column_name="organisation", widget=OrganisationSlugWidget()
    )

    class Meta:
        model = IdToken
        fields = ("uid", "type", "status", "expires_at", "owner", "group_id", "organisation")
        import_id_fields = ("uid",)
        clean_model_instances = True
        skip_unchanged = False

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        token_type = str(row.get("type") or "").strip() or IdTokenType.ISO14443
        try:
            row["uid"] = normalise_uid(row.get("uid"), token_type)
        except ValidationError as exc:
            raise ValidationError({"uid": exc.messages}) from None
        super().before_import_row(row, **kwargs)
