"""CSV import/export (django-import-export) for locations and charge points."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from import_export.fields import Field
from import_export.widgets import IntegerWidget, Widget

from apps.accounts.resources import OrganisationSlugWidget, ScopedForeignKeyWidget, TenantResource
from apps.stations import keys
from apps.stations.choices import SecurityProfile
from apps.stations.models import ChargePoint, Location
from apps.stations.services import chargepoint_apply_auth_key, make_point
from cpo.exceptions import ValidationFailed

MASK = "*" * 8


class CoordinateWidget(Widget):
    """A latitude or longitude exported as a plain decimal number (never localised)."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return "" if value is None else repr(float(value))


class LocationWidget(ScopedForeignKeyWidget):
    """A location by id, or by name within the row's organisation; exported as its name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Location, field="name", **kwargs)

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Location | None:
        text = str(value).strip() if value is not None else ""
        if not text:
            return None
        candidates = self.get_queryset(text, row)
        if text.isdigit():
            location = candidates.filter(pk=int(text)).first()
            if location is None:
                raise ValueError(_("No location with id {id}.").format(id=text))
            return location
        slug = str((row or {}).get("organisation") or "").strip()
        if slug:
            candidates = candidates.filter(organisation__slug=slug)
        found = list(candidates.filter(name__iexact=text)[:2])
        if not found:
            raise ValueError(_("No location named “{name}”.").format(name=text))
        if len(found) > 1:
            raise ValueError(
                _("Several locations are named “{name}”; use the location id.").format(name=text)
            )
        return found[0]


class LocationResource(TenantResource):
    """Locations with latitude/longitude columns instead of the point, and the operator by slug.
    Rows are matched on (organisation, name): re-importing a file updates rather than duplicates."""

    id = Field(attribute="id", column_name="id", widget=IntegerWidget(), readonly=True)
    organisation = Field(
        attribute="organisation", column_name="organisation", widget=OrganisationSlugWidget()
    )
    latitude = Field(attribute="latitude", column_name="latitude", widget=CoordinateWidget(), readonly=True)
    longitude = Field(
        attribute="longitude", column_name="longitude", widget=CoordinateWidget(), readonly=True
    )

    error_labels = {"point": "latitude/longitude"}

    class Meta:
        model = Location
        fields = (
            "id",
            "organisation",
            "name",
            "address",
            "postal_code",
            "city",
            "country",
            "latitude",
            "longitude",
            "time_zone",
            "opening_hours",
            "is_published",
        )
        import_id_fields = ("organisation", "name")
        clean_model_instances = True

    def import_instance(self, instance: Location, row: Any, **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        instance.country = (instance.country or "").strip().upper()
        if "latitude" in row or "longitude" in row or instance.point is None:
            try:
                instance.point = make_point(latitude=row.get("latitude"), longitude=row.get("longitude"))
            except ValidationFailed as exc:
                errors.setdefault("point", []).append(ValidationError(exc.detail))
        if errors:
            raise ValidationError(errors)


class ChargePointResource(TenantResource):
    """Charge points: identity, operator slug, location (id or name), vendor, model, serial, max power,
    security profile, and a write-only ``password`` column: hashed on import, never exported.
    Without a profile, a new charge point gets 1 when a password is given and 0 otherwise."""

    organisation = Field(
        attribute="organisation", column_name="organisation", widget=OrganisationSlugWidget()
    )
    location = Field(attribute="location", column_name="location", widget=LocationWidget())
    security_profile = Field(
        attribute="security_profile",
        column_name="security_profile",
        widget=IntegerWidget(),
        saves_null_values=False,
    )
    password = Field(column_name="password")

    write_only_fields = ("password",)

    class Meta:
        model = ChargePoint
        fields = (
            "identity",
            "organisation",
            "location",
            "vendor",
            "model",
            "serial_number",
            "max_power_w",
            "security_profile",
            "password",
        )
        import_id_fields = ("identity",)
        clean_model_instances = True

    def after_init_instance(self, instance: ChargePoint, new: bool, row: Any, **kwargs: Any) -> None:
        if new:
            instance.security_profile = None  # decided in import_instance, by the service rule
        super().after_init_instance(instance, new, row, **kwargs)

    def import_instance(self, instance: ChargePoint, row: Any, **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if instance.organisation_id is None and instance.location_id is not None:
            instance.organisation = instance.location.organisation
        password = str(row.get("password") or "").strip()
        keyed = False
        if password:
            try:
                keys.validate_key(password)
                chargepoint_apply_auth_key(charge_point=instance, key=password)
                keyed = True
            except (ValidationError, ValidationFailed) as exc:
                message = exc.detail if isinstance(exc, ValidationFailed) else exc.messages[0]
                errors.setdefault("password", []).append(ValidationError(message))
        if instance.security_profile is None:
            instance.security_profile = SecurityProfile.BASIC if keyed else SecurityProfile.NONE
        if errors:
            raise ValidationError(errors)

    def import_row(self, row: Any, instance_loader: Any, **kwargs: Any) -> Any:
        result = super().import_row(row, instance_loader, **kwargs)
        # The row is shown back in the preview of failed rows: never echo a key.
        if row.get("password"):
            row["password"] = MASK
        return result
