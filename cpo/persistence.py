"""Saving a model instance with every rule checked, turning Django's errors into ApplicationErrors."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils.translation import gettext as _

from cpo.exceptions import Conflict, ValidationFailed, validation_error_fields


def validated_save(instance: models.Model, *, exclude: Iterable[str] | None = None) -> models.Model:
    """full_clean() then save(). ValidationFailed lists the fields; a uniqueness race lost at the
    database (IntegrityError) becomes Conflict with the constraint's own message."""
    try:
        instance.full_clean(exclude=list(exclude) if exclude else None)
    except ValidationError as exc:
        fields = validation_error_fields(exc)
        first = next(iter(m for messages in fields.values() for m in messages), _("The input is invalid."))
        raise ValidationFailed(first, fields=fields) from exc
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise Conflict(_constraint_message(instance, exc)) from exc
    return instance


def _constraint_message(instance: models.Model, exc: IntegrityError) -> str:
    text = str(exc)
    for constraint in instance._meta.constraints:
        if constraint.name in text and getattr(constraint, "violation_error_message", None):
            return str(constraint.violation_error_message)
    return _("This conflicts with an existing record.")
