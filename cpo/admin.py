"""The admin base every app's admin builds on: tenancy scoping, 404 for what the user may not see,
and an audit hook for every add, change and delete made in the admin.

Scoping is duck-typed so the kernel never imports apps: a queryset that has ``for_actor(user)`` is
narrowed to what ``user`` may see, and for models with shared rows (``tenant_shared_when_null``)
``writable_by(user)`` says which of those the user may change or delete (the others are
read-only). That applies to the changelist, the change/delete/history pages
(another tenant's object is a 404, never a redirect that confirms it exists), the choices of
foreign-key and many-to-many fields, inlines, and the options of related list filters.

``settings.CPO_AUDIT_HOOK`` names a callable (dotted path) called as
``hook(actor=user, verb="create" | "update" | "delete", target=obj, message=change_message)``
inside the admin's transaction, next to Django's own LogEntry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.utils import NotRelationField, get_fields_from_path
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.forms import BaseInlineFormSet, ModelChoiceField, ModelMultipleChoiceField
from django.http import Http404, HttpRequest
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from import_export.admin import ImportExportMixin
from import_export.tmp_storages import CacheStorage


def scope_queryset(queryset: models.QuerySet, user: Any) -> models.QuerySet:
    """`queryset` narrowed to what `user` may see, when its model is tenant-aware."""
    for_actor = getattr(queryset, "for_actor", None)
    return for_actor(user) if callable(for_actor) else queryset


def may_write(obj: models.Model, user: Any) -> bool:
    """Whether `user` may change or delete `obj`. A model whose queryset has ``writable_by(user)`` (one
    with shared rows, which staff may see without owning) decides; any other row the user can reach
    is theirs to change, as far as their permissions go."""
    model = type(obj)
    if not getattr(model, "tenant_shared_when_null", False):
        return True
    writable_by = getattr(model._default_manager.all(), "writable_by", None)
    if not callable(writable_by):
        return True
    return writable_by(user).filter(pk=obj.pk).exists()


def audit_hook() -> Callable[..., Any] | None:
    """The callable named by settings.CPO_AUDIT_HOOK, or None when no hook is configured."""
    path = getattr(settings, "CPO_AUDIT_HOOK", None)
    return import_string(path) if path else None


def _call_audit_hook(
    request: HttpRequest, verb: str, objects: Iterable[models.Model], message: Any = None
) -> None:
    hook = audit_hook()
    if hook is None:
        return
    for obj in objects:
        hook(actor=request.user, verb=verb, target=obj, message=message)


class TenantScopedAdminMixin:
    """What ModelAdmin and InlineModelAdmin share: a scoped queryset and scoped relation choices."""

    def get_queryset(self, request: HttpRequest) -> models.QuerySet:
        return scope_queryset(super().get_queryset(request), request.user)  # type: ignore[misc]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
        if isinstance(formfield, ModelChoiceField) and formfield.queryset is not None:
            formfield.queryset = scope_queryset(formfield.queryset, request.user)
        return formfield

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]
        if isinstance(formfield, ModelMultipleChoiceField) and formfield.queryset is not None:
            formfield.queryset = scope_queryset(formfield.queryset, request.user)
        return formfield


class ConstraintMessageInlineFormSet(BaseInlineFormSet):
    """An inline formset whose duplicate-row error is the model constraint's own message
    (e.g. "This EVSE already has a connector with this number.") instead of Django's generic one."""

    def get_unique_error_message(self, unique_check: Any) -> str:
        wanted = set(unique_check)
        constraints = self.model._meta.total_unique_constraints if self.model is not None else []
        for constraint in constraints:
            message = getattr(constraint, "violation_error_message", None)
            if (
                set(constraint.fields) == wanted
                and message
                and message != constraint.default_violation_error_message
            ):
                return str(message)
        return super().get_unique_error_message(unique_check)


class ReadOnlyAdminMixin:
    """Records the product writes itself, never by hand (audit records, OCPP commands and messages,
    sessions, meter samples, ...): viewable, never added, changed or deleted in the admin, whatever the
    user's permissions. Put it before the admin base class; works for inlines too."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BaseModelAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """The product's ModelAdmin: tenant-scoped, 404 for objects outside the user's scope, audited.

    Forms built here carry the requesting user as ``form.actor`` (each call of get_form builds a
    new form class, so this never leaks between requests)."""

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(
                _("%(name)s with id “%(key)s” does not exist or is not yours to see.")
                % {"name": self.opts.verbose_name, "key": object_id}
            )
        return obj

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows the user sees but does not own (a driver, a driver's card) are read-only to them."""
        if obj is not None and not may_write(obj, request.user):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and not may_write(obj, request.user):
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        """Bulk deletion deletes only rows the user may delete (Django asks per object first; this
        holds even if an action hands over more)."""
        writable_by = getattr(queryset, "writable_by", None)
        if callable(writable_by) and getattr(self.model, "tenant_shared_when_null", False):
            queryset = queryset.filter(pk__in=writable_by(request.user).values("pk"))
        super().delete_queryset(request, queryset)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = request.user  # type: ignore[attr-defined]
        if obj is not None:
            _keep_current_choices(form, obj)
        return form

    def get_list_filter(self, request: HttpRequest) -> Any:
        """Relation filters list only objects related to rows the user sees (never other tenants')."""
        return [_scoped_filter(self.model, entry) for entry in super().get_list_filter(request)]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Save m2m relations, keeping links to objects the user could not choose (out of scope):
        a form that never showed them must not silently remove them."""
        hidden = _hidden_m2m_links(form) if change else {}
        super().save_related(request, form, formsets, change)
        for name, pks in hidden.items():
            if pks:
                getattr(form.instance, name).add(*pks)

    def log_addition(self, request: HttpRequest, obj: models.Model, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)
        _call_audit_hook(request, "create", [obj], message)
        return entry

    def log_change(self, request: HttpRequest, obj: models.Model, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        _call_audit_hook(request, "update", [obj], message)
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        """Django 5.1+ logs deletions here (log_deletion is deprecated); called before deleting."""
        objects = list(queryset)
        entries = super().log_deletions(request, queryset)
        _call_audit_hook(request, "delete", objects)
        return entries


class BaseTabularInline(TenantScopedAdminMixin, admin.TabularInline):
    """Tabular inline with the product's scoping; duplicate rows get the constraint's own message."""

    formset = ConstraintMessageInlineFormSet


class BaseStackedInline(TenantScopedAdminMixin, admin.StackedInline):
    """Stacked inline with the product's scoping; duplicate rows get the constraint's own message."""

    formset = ConstraintMessageInlineFormSet


class ImportUploadCacheStorage(CacheStorage):
    """Where an uploaded import file waits between preview and confirmation: the shared cache, so the
    confirming request may reach any web process (the library's default is the local temp folder of
    the process that served the preview). Unconfirmed uploads expire after an hour."""

    CACHE_LIFETIME = 3600


class ScopedImportExportMixin(ImportExportMixin):
    """django-import-export in the admin, with the requesting user handed to the resource as
    ``actor`` (resources scope their lookups and refuse rows outside the user's organisations).
    Exports start from the admin's own (scoped, filtered) changelist queryset."""

    tmp_storage_class = ImportUploadCacheStorage

    def get_resource_kwargs(self, request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"actor": request.user}


def _scoped_filter(model: type[models.Model], entry: Any) -> Any:
    if not isinstance(entry, str):
        return entry
    try:
        field = get_fields_from_path(model, entry)[-1]
    except (FieldDoesNotExist, NotRelationField):
        return entry
    if (
        getattr(field, "is_relation", False)
        and (field.many_to_one or field.many_to_many or field.one_to_one)
        and not field.auto_created
    ):
        return (entry, admin.RelatedOnlyFieldListFilter)
    return entry


def _keep_current_choices(form: Any, obj: models.Model) -> None:
    """Let a foreign key keep its current target even when the user may not choose it, so editing
    other fields never fails with "Select a valid choice" or forces a change of owner."""
    for name, field in form.base_fields.items():
        if not isinstance(field, ModelChoiceField) or isinstance(field, ModelMultipleChoiceField):
            continue
        if field.queryset is None:
            continue
        try:
            model_field = obj._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        attname = getattr(model_field, "attname", None)
        if attname is None or not (model_field.many_to_one or model_field.one_to_one):
            continue
        current = getattr(obj, attname, None)
        if current is None or field.queryset.filter(pk=current).exists():
            continue
        field.queryset = field.queryset | field.queryset.model._default_manager.filter(pk=current)


def _hidden_m2m_links(form: Any) -> dict[str, list[Any]]:
    hidden: dict[str, list[Any]] = {}
    instance = form.instance
    for name, field in form.fields.items():
        if not isinstance(field, ModelMultipleChoiceField) or name not in form.cleaned_data:
            continue
        if field.queryset is None:
            continue
        try:
            model_field = instance._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if not model_field.many_to_many or model_field.auto_created:
            continue
        hidden[name] = list(
            getattr(instance, name).exclude(pk__in=field.queryset.values("pk")).values_list("pk", flat=True)
        )
    return hidden
