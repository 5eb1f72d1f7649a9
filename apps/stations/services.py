"""Writes for the station registry. Every function validates fully and raises ApplicationErrors."""

from __future__ import annotations

from typing import Any

from django.contrib.gis.geos import Point
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from apps.accounts.models import Organisation
from apps.accounts.services import audit_record_create
from apps.stations import hooks, keys
from apps.stations.choices import Availability, ConnectorStandard, PowerType, SecurityProfile
from apps.stations.models import ChargePoint, ChargerEvent, Connector, DeviceVariable, Evse, Location
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
    *,
    organisation: Organisation,
    name: str,
    address: str,
    city: str,
    country: str,
    latitude: Any,
    longitude: Any,
    time_zone: str,
    postal_code: str = "",
    opening_hours: dict | None = None,
    actor: Any = None,
    source: str = "service",
) -> Location:
    location = Location(
        organisation=organisation,
        name=name,
        address=address,
        city=city,
        country=(country or "").upper(),
        postal_code=postal_code,
        point=make_point(latitude=latitude, longitude=longitude),
        time_zone=time_zone,
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
        raise ValidationFailed(
            exc.messages[0], code="invalid_key", fields={"password": exc.messages}
        ) from exc


def chargepoint_apply_auth_key(*, charge_point: ChargePoint, key: str) -> bool:
    """Put `key` on an unsaved charge point by the rules every writer follows (validated, salted hash;
    a key turns security profile 0 into 1). The caller saves. Returns False, changing nothing, when
    `key` is already the stored one. Used by forms and imports that save the instance themselves."""
    if keys.verify_key(key, charge_point.auth_key_hash):
        return False
    _set_key(charge_point, key)
    if charge_point.security_profile == SecurityProfile.NONE:
        charge_point.security_profile = SecurityProfile.BASIC
    return True


@transaction.atomic
def chargepoint_create(
    *,
    identity: str,
    organisation: Organisation,
    location: Location | None = None,
    password: str | None = None,
    security_profile: int | None = None,
    actor: Any = None,
    source: str = "service",
    **fields: Any,
) -> ChargePoint:
    """Register a charge point. With a password it uses security profile 1 unless told otherwise;
    without one, profile 0 (chargers on trusted networks, or awaiting a generated key)."""
    if security_profile is None:
        security_profile = SecurityProfile.BASIC if password else SecurityProfile.NONE
    charge_point = ChargePoint(
        identity=identity,
        organisation=organisation,
        location=location,
        security_profile=security_profile,
        **fields,
    )
    if password:
        _set_key(charge_point, password)
    validated_save(charge_point)
    audit_record_create(actor=actor, action="chargepoint.create", target=charge_point, source=source)
    return charge_point


@transaction.atomic
def chargepoint_ensure(
    *,
    identity: str,
    organisation: Organisation | None = None,
    location: Location | None = None,
    password: str | None = None,
    actor: Any = None,
    source: str = "service",
) -> tuple[ChargePoint, list[str]]:
    """Create the charge point or bring it to what is asked (location, key). Idempotent: returns
    (charge_point, changes) where changes is empty when nothing had to change. A new key is applied
    only when it differs from the stored one."""
    existing = ChargePoint.objects.select_for_update(no_key=True).filter(identity__iexact=identity).first()
    if location is not None and organisation is not None and location.organisation_id != organisation.pk:
        raise ValidationFailed(_("The location belongs to another operator."), fields={"location": []})
    if existing is None:
        owner = organisation or (location.organisation if location else None)
        if owner is None:
            raise ValidationFailed(
                _("Name the operator organisation (or a location) for a new charge point."),
                code="organisation_required",
                fields={"organisation": [_("Required for a new charge point.")]},
            )
        return chargepoint_create(
            identity=identity,
            organisation=owner,
            location=location,
            password=password,
            actor=actor,
            source=source,
        ), ["created"]
    if existing.identity != identity:
        raise ValidationFailed(
            _("A charge point with this OCPP identity already exists as {identity}.").format(
                identity=existing.identity
            ),
            code="identity_case_clash",
        )
    if organisation is not None and existing.organisation_id != organisation.pk:
        raise ValidationFailed(
            _("Charge point {identity} belongs to another operator.").format(identity=existing.identity),
            code="organisation_mismatch",
            fields={"organisation": [_("The charge point belongs to another operator.")]},
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
        audit_record_create(
            actor=actor,
            action="chargepoint.update",
            target=existing,
            source=source,
            detail={"changed": changes},
        )
    return existing, changes


@transaction.atomic
def chargepoint_generate_auth_key(*, charge_point: ChargePoint, actor: Any = None) -> str:
    """Give the charge point a new random key and return it in clear text (shown once)."""
    key = keys.generate_key()
    charge_point = ChargePoint.objects.select_for_update(no_key=True).get(pk=charge_point.pk)
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
    audit_record_create(
        actor=actor, action="evse.create", target=evse, organisation_id=charge_point.organisation_id
    )
    return evse


@transaction.atomic
def connector_create(*, evse: Evse, connector_id: int, actor: Any = None, **fields: Any) -> Connector:
    connector = Connector(evse=evse, connector_id=connector_id, **fields)
    validated_save(connector)
    audit_record_create(
        actor=actor,
        action="connector.create",
        target=connector,
        organisation_id=evse.charge_point.organisation_id,
    )
    return connector


@transaction.atomic
def chargepoint_add_connectors(
    *,
    charge_point: ChargePoint,
    count: int,
    standard: str = ConnectorStandard.IEC_62196_T2,
    power_type: str = PowerType.AC_3_PHASE,
    max_power_w: int = 22000,
    max_current_a: int = 32,
    max_voltage_v: int = 400,
    actor: Any = None,
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
            created.append(
                connector_create(
                    evse=evse,
                    connector_id=1,
                    standard=standard,
                    power_type=power_type,
                    max_power_w=max_power_w,
                    max_current_a=max_current_a,
                    max_voltage_v=max_voltage_v,
                    actor=actor,
                )
            )
    return created


def location_get(*, pk: Any) -> Location:
    try:
        return Location.objects.get(pk=int(pk))
    except (ValueError, TypeError, Location.DoesNotExist) as exc:
        raise NotFound(_("No location with id {id}.").format(id=pk), code="location_not_found") from exc


# --- what chargers report (called by the OCPP gateway; version-agnostic) --------------------------

# A charger timestamp more than this far ahead of our clock is flagged and clamped to our receive time.
FUTURE_TOLERANCE_S = 300


def clamp_charger_time(charger_at: Any, received_at: Any) -> tuple[Any, bool]:
    """(time to use, clamped?) — a charger time in the future is replaced by our receive time."""
    if charger_at is None:
        return received_at, False
    if (charger_at - received_at).total_seconds() > FUTURE_TOLERANCE_S:
        return received_at, True
    return charger_at, False


@transaction.atomic
def chargepoint_record_boot(
    *,
    charge_point_id: int,
    protocol: str,
    received_at: Any,
    vendor: str = "",
    model: str = "",
    serial_number: str = "",
    firmware_version: str = "",
    iccid: str = "",
    imsi: str = "",
    meter_type: str = "",
    meter_serial_number: str = "",
) -> str:
    """Record a BootNotification and return the registration status to answer with."""
    cp = ChargePoint.objects.select_for_update(no_key=True).get(pk=charge_point_id)
    reported = {
        "ocpp_protocol": protocol,
        "vendor": vendor[:50],
        "model": model[:50],
        "serial_number": serial_number[:50],
        "firmware_version": firmware_version[:50],
        "iccid": iccid[:20],
        "imsi": imsi[:20],
        "meter_type": meter_type[:25],
        "meter_serial_number": meter_serial_number[:25],
    }
    changed = [field for field, value in reported.items() if value and getattr(cp, field) != value]
    for field in changed:
        setattr(cp, field, reported[field])
    cp.last_boot_at = received_at
    cp.last_seen_at = received_at
    cp.is_online = True
    cp.save(update_fields=[*changed, "last_boot_at", "last_seen_at", "is_online", "updated_at"])
    hooks.charge_point_booted.emit(charge_point_id=cp.pk, organisation_id=cp.organisation_id, at=received_at)
    if changed:
        audit_record_create(
            actor=None,
            action="chargepoint.boot",
            target=cp,
            source="ocpp",
            detail={f: reported[f] for f in changed},
        )
    return cp.registration_status


def _is_newer(*, stored_charger_at: Any, stored_received_at: Any, charger_at: Any, last_boot_at: Any) -> bool:
    """Whether a status reported at `charger_at` supersedes the stored one. A charger's clock orders its
    own events only within one boot: a stored status from before the latest boot is always superseded."""
    if stored_received_at is None or stored_charger_at is None:
        return True
    if last_boot_at is not None and stored_received_at < last_boot_at:
        return True
    return charger_at >= stored_charger_at


@transaction.atomic
def connector_status_record(
    *,
    charge_point_id: int,
    evse_id: int,
    connector_id: int,
    status: str,
    received_at: Any,
    charger_at: Any = None,
    error_code: str = "",
    info: str = "",
) -> bool:
    """Record a status report. evse_id 0 is the charge point as a whole (OCPP 1.6 connector 0).
    An unknown EVSE/connector is registered on first report. Returns False for a stale report
    (older than the stored one within the same boot), which is kept out of the current status."""
    cp = ChargePoint.objects.select_for_update(no_key=True).get(pk=charge_point_id)
    at, _clamped = clamp_charger_time(charger_at, received_at)
    skew_fields: list[str] = []
    if charger_at is not None:
        cp.clock_skew_s = int((charger_at - received_at).total_seconds())
        skew_fields = ["clock_skew_s"]
    if evse_id == 0:
        if not _is_newer(
            stored_charger_at=cp.status_charger_at,
            stored_received_at=cp.status_received_at,
            charger_at=at,
            last_boot_at=cp.last_boot_at,
        ):
            if skew_fields:
                cp.save(update_fields=skew_fields)
            return False
        previous = cp.status
        cp.status, cp.status_error_code, cp.status_info = status, error_code[:50], info[:500]
        cp.status_charger_at, cp.status_received_at = at, received_at
        cp.save(
            update_fields=[
                "status",
                "status_error_code",
                "status_info",
                "status_charger_at",
                "status_received_at",
                *skew_fields,
            ]
        )
        hooks.status_changed.emit(
            charge_point_id=cp.pk,
            organisation_id=cp.organisation_id,
            evse_id=0,
            connector_id=0,
            status=status,
            previous=previous,
            error_code=cp.status_error_code,
            at=at,
        )
        return True
    if skew_fields:
        cp.save(update_fields=skew_fields)
    # e.g. tariffs: parking time and departure of the session on this EVSE (a report kept out of the
    # current status because it is older is still a fact about that time).
    hooks.connector_status_reported.emit(
        charge_point_id=charge_point_id, evse_id=evse_id, status=status, at=at
    )
    evse, _ = Evse.objects.get_or_create(charge_point=cp, evse_id=evse_id)
    connector = (
        Connector.objects.select_for_update(no_key=True).filter(evse=evse, connector_id=connector_id).first()
    )
    previous = ""
    if connector is None:
        connector = Connector(evse=evse, connector_id=connector_id)
    elif not _is_newer(
        stored_charger_at=connector.status_charger_at,
        stored_received_at=connector.status_received_at,
        charger_at=at,
        last_boot_at=cp.last_boot_at,
    ):
        return False
    else:
        previous = connector.status
    connector.status, connector.error_code, connector.status_info = status, error_code[:50], info[:500]
    connector.status_charger_at, connector.status_received_at = at, received_at
    connector.save()
    hooks.status_changed.emit(
        charge_point_id=cp.pk,
        organisation_id=cp.organisation_id,
        evse_id=evse_id,
        connector_id=connector_id,
        status=status,
        previous=previous,
        error_code=connector.error_code,
        at=at,
    )
    return True


@transaction.atomic
def availability_record(*, charge_point_id: int, evse_id: int, availability: str) -> bool:
    """Store the availability a charger accepted (ChangeAvailability): of the charge point as a whole
    (evse_id 0) or of one EVSE (created when the charger has not reported it yet). Returns whether it
    changed. ValidationFailed for an availability that is neither Operative nor Inoperative."""
    if availability not in Availability.values:
        raise ValidationFailed(
            _("{value} is not an availability (Operative or Inoperative).").format(value=availability),
            code="invalid_availability",
            fields={"availability": [availability]},
        )
    cp = ChargePoint.objects.select_for_update(no_key=True).get(pk=charge_point_id)
    if evse_id == 0:
        target: ChargePoint | Evse = cp
    else:
        target, _created = Evse.objects.select_for_update(no_key=True).get_or_create(
            charge_point=cp, evse_id=evse_id
        )
    if target.availability == availability:
        return False
    target.availability = availability
    target.save(update_fields=["availability"])
    hooks.availability_changed.emit(
        charge_point_id=cp.pk, organisation_id=cp.organisation_id, evse_id=evse_id, availability=availability
    )
    return True


def chargepoint_record_firmware_status(*, charge_point_id: int, status: str, received_at: Any) -> None:
    ChargePoint.objects.filter(pk=charge_point_id).update(
        firmware_status=status[:32], firmware_status_at=received_at
    )


def chargepoint_record_diagnostics_status(*, charge_point_id: int, status: str, received_at: Any) -> None:
    ChargePoint.objects.filter(pk=charge_point_id).update(
        diagnostics_status=status[:32], diagnostics_status_at=received_at
    )


def device_model_record(*, charge_point_id: int, report_data: list[dict[str, Any]], reported_at: Any) -> int:
    """Upsert NotifyReport reportData (snake_case keys) into the stored device model. Returns rows written."""
    rows = []
    for item in report_data:
        component, variable = item.get("component") or {}, item.get("variable") or {}
        evse = component.get("evse") or {}
        chars = item.get("variable_characteristics") or {}
        for attribute in item.get("variable_attribute") or []:
            rows.append(
                DeviceVariable(
                    charge_point_id=charge_point_id,
                    component=str(component.get("name", ""))[:50],
                    component_instance=str(component.get("instance") or "")[:50],
                    evse_id=evse.get("id"),
                    connector_id=evse.get("connector_id"),
                    variable=str(variable.get("name", ""))[:50],
                    variable_instance=str(variable.get("instance") or "")[:50],
                    attribute_type=str(attribute.get("type") or "Actual")[:8],
                    value=str(attribute.get("value") or "")[:2500],
                    mutability=str(attribute.get("mutability") or "")[:10],
                    data_type=str(chars.get("data_type") or "")[:20],
                    unit=str(chars.get("unit") or "")[:16],
                    values_list=str(chars.get("values_list") or "")[:1000],
                    reported_at=reported_at,
                )
            )
    if rows:
        DeviceVariable.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=[
                "charge_point",
                "component",
                "component_instance",
                "evse_id",
                "connector_id",
                "variable",
                "variable_instance",
                "attribute_type",
            ],
            update_fields=["value", "mutability", "data_type", "unit", "values_list", "reported_at"],
        )
    return len(rows)


def charger_events_record(
    *, charge_point_id: int, kind: str, events: list[dict[str, Any]], received_at: Any
) -> None:
    """Store NotifyEvent eventData or a SecurityEventNotification; repeats are ignored (natural key)."""
    ChargerEvent.objects.bulk_create(
        [
            ChargerEvent(
                charge_point_id=charge_point_id,
                kind=kind,
                event_id=e.get("event_id"),
                occurred_at=e["occurred_at"],
                received_at=received_at,
                trigger=str(e.get("trigger", ""))[:50],
                component=str(e.get("component", ""))[:50],
                variable=str(e.get("variable", ""))[:50],
                actual_value=str(e.get("actual_value", ""))[:2500],
                tech_info=str(e.get("tech_info", ""))[:255],
                payload=e.get("payload", {}),
            )
            for e in events
        ],
        ignore_conflicts=True,
    )


def _device_variable_key(row: Any) -> tuple[Any, ...]:
    return (
        row.component,
        row.component_instance,
        row.evse_id,
        row.connector_id,
        row.variable,
        row.variable_instance,
        row.attribute_type,
    )


def device_variables_record(*, charge_point_id: int, results: list[dict[str, Any]], reported_at: Any) -> int:
    """Upsert attribute values the charger confirmed into the stored device model. `results` are OCPP
    2.0.1 GetVariableResult items as sent on the wire (attributeStatus, attributeType, attributeValue,
    component, variable); only Accepted ones with a value are stored. What NotifyReport said about an
    attribute (mutability, data type, unit) is kept. Returns the rows written."""
    rows: dict[tuple[Any, ...], DeviceVariable] = {}
    for result in results:
        if result.get("attributeStatus") != "Accepted" or result.get("attributeValue") is None:
            continue
        component, variable = result.get("component") or {}, result.get("variable") or {}
        evse = component.get("evse") or {}
        row = DeviceVariable(
            charge_point_id=charge_point_id,
            component=str(component.get("name", ""))[:50],
            component_instance=str(component.get("instance") or "")[:50],
            evse_id=evse.get("id"),
            connector_id=evse.get("connectorId"),
            variable=str(variable.get("name", ""))[:50],
            variable_instance=str(variable.get("instance") or "")[:50],
            attribute_type=str(result.get("attributeType") or "Actual")[:8],
            value=str(result["attributeValue"])[:2500],
            reported_at=reported_at,
        )
        rows[_device_variable_key(row)] = row  # one row per key: a statement may not update a row twice
    if rows:
        DeviceVariable.objects.bulk_create(
            list(rows.values()),
            update_conflicts=True,
            unique_fields=[
                "charge_point",
                "component",
                "component_instance",
                "evse_id",
                "connector_id",
                "variable",
                "variable_instance",
                "attribute_type",
            ],
            update_fields=["value", "reported_at"],
        )
    return len(rows)
