"""Writes for the station registry. Every function validates fully and raises ApplicationErrors."""

from __future__ import annotations

from typing import Any

from django.contrib.gis.geos import Point
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from apps.accounts.models import Organisation
from apps.accounts.services import audit_record_create
from apps.stations import keys
from apps.stations.choices import ConnectorStandard, PowerType, SecurityProfile
from apps.stations.models import ChargePoint, Connector, Evse, Location
from cpo.exceptions import NotFound, ValidationFailed
from cpo.persistence import validated_save


def make_point(*, latitude: Any, longitude: Any) -> Point:
    """A WGS84 point; ValidationFailed naming the field when a coordinate is missing or out of range."""
    if latitude in (None, "") or longitude in (None, ""):
        raise ValidationFailed(
            _("A location needs coordinates (latitude and longitude)."),
            code="coordinates_missing",
            fields={"point": [_("A location needs coordinates (latitude and longitude).")]},
        )
    try:
        lat, lng = float(latitude), float(longitude)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(_("Coordinates must be numbers."), fields={"point": [str(exc)]}) from exc
    if not -90 <= lat <= 90:
        raise ValidationFailed(_("Latitude must be between -90 and 90."), fields={"latitude": [str(lat)]})
    if not -180 <= lng <= 180:
        raise ValidationFailed(_("Longitude must be between -180 and 180."), fields={"longitude": [str(lng)]})
    return Point(lng, lat, srid=4326)


@transaction.atomic
def location_create(
    *, organisation: Organisation, name: str, address: str, city: str, country: str, latitude: Any,
    longitude: Any, time_zone: str, postal_code: str = "", opening_hours: dict | None = None,
    actor: Any = None, source: str = "service",
) -> Location:
    location = Location(
        organisation=organisation, name=name, address=address, city=city, country=(country or "").upper(),
        postal_code=postal_code, point=make_point(latitude=latitude, longitude=longitude), time_zone=time_zone,
    )
    if opening_hours is not None:
        location.opening_hours = opening_hours
    validated_save(location)
    audit_record_create(actor=actor, action="location.create", target=location, source=source)
    return location


def _set_key(charge_point: ChargePoint, key: str) -> None:
    try:
        charge_point.auth_key_hash = keys.hash_key(key)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages[0], code="invalid_key", fields={"password": exc.messages}) from exc


@transaction.atomic
def chargepoint_create(
    *, identity: str, organisation: Organisation, location: Location | None = None, password: str | None = None,
    security_profile: int | None = None, actor: Any = None, source: str = "service", **fields: Any,
) -> ChargePoint:
    """Register a charge point. With a password it uses security profile 1 unless told otherwise;
    without one, profile 0 (chargers on trusted networks, or awaiting a generated key)."""
    if security_profile is None:
        security_profile = SecurityProfile.BASIC if password else SecurityProfile.NONE
    charge_point = ChargePoint(
        identity=identity, organisation=organisation, location=location, security_profile=security_profile, **fields
    )
    if password:
        _set_key(charge_point, password)
    validated_save(charge_point)
    audit_record_create(actor=actor, action="chargepoint.create", target=charge_point, source=source)
    return charge_point


@transaction.atomic
def chargepoint_ensure(
    *, identity: str, organisation: Organisation | None = None, location: Location | None = None,
    password: str | None = None, actor: Any = None, source: str = "service",
) -> tuple[ChargePoint, list[str]]:
    """Create the charge point or bring it to what is asked (location, key). Idempotent: returns
    (charge_point, changes) where changes is empty when nothing had to change. A new key is applied
    only when it differs from the stored one."""
    existing = ChargePoint.objects.select_for_update().filter(identity__iexact=identity).first()
    if location is not None and organisation is not None and location.organisation_id != organisation.pk:
        raise ValidationFailed(_("The location belongs to another operator."), fields={"location": []})
    if existing is None:
        owner = organisation or (location.organisation if location else None)
        if owner is None:
            raise ValidationFailed(
                _("Name the operator organisation (or a location) for a new charge point."),
                code="organisation_required", fields={"organisation": [_("Required for a new charge point.")]},
            )
        return chargepoint_create(
            identity=identity, organisation=owner, location=location, password=password, actor=actor, source=source
        ), ["created"]
    if existing.identity != identity:
        raise ValidationFailed(
            _("A charge point with this OCPP identity already exists as {identity}.").format(identity=existing.identity),
            code="identity_case_clash",
        )
    changes: list[str] = []
    if location is not None and existing.location_id != location.pk:
        if location.organisation_id != existing.organisation_id:
            raise ValidationFailed(_("The location belongs to another operator."), fields={"location": []})
        existing.location = location
        changes.append("location")
    if password and not keys.verify_key(password, existing.auth_key_hash):
        _set_key(existing, password)
        if existing.security_profile == SecurityProfile.NONE:
            existing.security_profile = SecurityProfile.BASIC
        changes.append("password")
    if changes:
        validated_save(existing)
        audit_record_create(actor=actor, action="chargepoint.update", target=existing, source=source,
                            detail={"changed": changes})
    return existing, changes


@transaction.atomic
def chargepoint_generate_auth_key(*, charge_point: ChargePoint, actor: Any = None) -> str:
    """Give the charge point a new random key and return it in clear text (shown once)."""
    key = keys.generate_key()
    charge_point = ChargePoint.objects.select_for_update().get(pk=charge_point.pk)
    _set_key(charge_point, key)
    if charge_point.security_profile == SecurityProfile.NONE:
        charge_point.security_profile = SecurityProfile.BASIC
    validated_save(charge_point)
    audit_record_create(actor=actor, action="chargepoint.generate_key", target=charge_point)
    return key


def chargepoint_verify_key(*, charge_point: ChargePoint, key: str) -> bool:
    return keys.verify_key(key, charge_point.auth_key_hash)


@transaction.atomic
def evse_create(*, charge_point: ChargePoint, evse_id: int, actor: Any = None, **fields: Any) -> Evse:
    evse = Evse(charge_point=charge_point, evse_id=evse_id, **fields)
    validated_save(evse)
    audit_record_create(actor=actor, action="evse.create", target=evse, organisation_id=charge_point.organisation_id)
    return evse


@transaction.atomic
def connector_create(*, evse: Evse, connector_id: int, actor: Any = None, **fields: Any) -> Connector:
    connector = Connector(evse=evse, connector_id=connector_id, **fields)
    validated_save(connector)
    audit_record_create(actor=actor, action="connector.create", target=connector,
                        organisation_id=evse.charge_point.organisation_id)
    return connector


@transaction.atomic
def chargepoint_add_connectors(
    *, charge_point: ChargePoint, count: int, standard: str = ConnectorStandard.IEC_62196_T2,
    power_type: str = PowerType.AC_3_PHASE, max_power_w: int = 22000, max_current_a: int = 32,
    max_voltage_v: int = 400, actor: Any = None,
) -> list[Connector]:
    """Add EVSEs 1..count with one connector each (the OCPP 1.6 shape), skipping those that exist."""
    if not 1 <= count <= 64:
        raise ValidationFailed(_("A charge point has 1 to 64 connectors."), fields={"count": [str(count)]})
    created = []
    for number in range(1, count + 1):
        evse = Evse.objects.filter(charge_point=charge_point, evse_id=number).first()
        if evse is None:
            evse = evse_create(charge_point=charge_point, evse_id=number, actor=actor)
        if not evse.connectors.filter(connector_id=1).exists():
            created.append(connector_create(
                evse=evse, connector_id=1, standard=standard, power_type=power_type, max_power_w=max_power_w,
                max_current_a=max_current_a, max_voltage_v=max_voltage_v, actor=actor,
            ))
    return created


def location_get(*, pk: Any) -> Location:
    try:
        return Location.objects.get(pk=int(pk))
    except (ValueError, TypeError, Location.DoesNotExist) as exc:
        raise NotFound(_("No location with id {id}.").format(id=pk), code="location_not_found") from exc
