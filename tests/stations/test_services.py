"""Station registry services: validation with clear messages, idempotency, keys, audit records."""

import pytest

from apps.accounts.models import AuditRecord
from apps.stations import keys
from apps.stations.choices import ConnectorStandard, PowerType, SecurityProfile
from apps.stations.models import ChargePoint, Connector, Evse, Location
from apps.stations.services import (
    chargepoint_add_connectors,
    chargepoint_create,
    chargepoint_ensure,
    chargepoint_generate_auth_key,
    chargepoint_verify_key,
    connector_create,
    evse_create,
    location_create,
    location_get,
)
from cpo.exceptions import NotFound, ValidationFailed
from tests.factories import ChargePointFactory, EvseFactory, LocationFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

KEY = "s3cret-key-0123456789"
BERLIN = {
    "name": "Alexanderplatz",
    "address": "Alexanderstraße 9",
    "postal_code": "10178",
    "city": "Berlin",
    "country": "de",
    "time_zone": "Europe/Berlin",
}


def _actions() -> list[str]:
    return list(AuditRecord.objects.order_by("pk").values_list("action", flat=True))


# --- locations -------------------------------------------------------------------------------------


def test_location_create(org_a, staff_a):
    location = location_create(
        organisation=org_a, latitude="52.5219", longitude=13.4132, actor=staff_a, **BERLIN
    )

    location.refresh_from_db()
    assert (location.latitude, location.longitude, location.country) == (52.5219, 13.4132, "DE")
    assert location.opening_hours == {"twentyfourseven": True}
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.organisation_id, record.target_id) == (
        "location.create",
        staff_a,
        org_a.pk,
        str(location.pk),
    )


@pytest.mark.parametrize(("latitude", "longitude"), [(None, 13.4), (52.5, None), ("", ""), (None, None)])
def test_location_without_coordinates(org_a, latitude, longitude):
    with pytest.raises(ValidationFailed) as excinfo:
        location_create(organisation=org_a, latitude=latitude, longitude=longitude, **BERLIN)

    assert excinfo.value.code == "coordinates_missing"
    assert excinfo.value.detail == "A location needs coordinates (latitude and longitude)."
    assert excinfo.value.fields == {"point": ["A location needs coordinates (latitude and longitude)."]}
    assert not Location.objects.exists()
    assert not AuditRecord.objects.exists()


@pytest.mark.parametrize(
    ("latitude", "longitude", "detail"),
    [
        ("north", 13.4, "Coordinates must be numbers."),
        (91, 13.4, "Latitude must be between -90 and 90."),
        (52.5, -181, "Longitude must be between -180 and 180."),
        (0, 0, "Coordinates 0, 0 are in the ocean; set the real coordinates."),
    ],
)
def test_location_with_bad_coordinates(org_a, latitude, longitude, detail):
    with pytest.raises(ValidationFailed) as excinfo:
        location_create(organisation=org_a, latitude=latitude, longitude=longitude, **BERLIN)

    assert excinfo.value.detail == detail
    assert not Location.objects.exists()
    assert not AuditRecord.objects.exists()


def test_location_with_bad_opening_hours(org_a):
    with pytest.raises(ValidationFailed) as excinfo:
        location_create(
            organisation=org_a,
            latitude=52.5,
            longitude=13.4,
            opening_hours={"twentyfourseven": "yes"},
            **BERLIN,
        )

    assert excinfo.value.fields == {"opening_hours": ['Opening hours need "twentyfourseven": true or false.']}
    assert not Location.objects.exists()


def test_location_name_clash(org_a):
    location_create(organisation=org_a, latitude=52.5, longitude=13.4, **BERLIN)

    with pytest.raises(ValidationFailed) as excinfo:
        location_create(organisation=org_a, latitude=52.6, longitude=13.5, **BERLIN)

    assert excinfo.value.detail == "This operator already has a location with this name."
    assert Location.objects.count() == 1
    assert _actions() == ["location.create"]


def test_location_get(org_a):
    location = LocationFactory(organisation=org_a)
    assert location_get(pk=str(location.pk)) == location
    with pytest.raises(NotFound) as excinfo:
        location_get(pk=location.pk + 1)
    assert (excinfo.value.code, excinfo.value.detail) == (
        "location_not_found",
        f"No location with id {location.pk + 1}.",
    )


# --- charge points ---------------------------------------------------------------------------------


def test_chargepoint_create_with_password(org_a):
    location = LocationFactory(organisation=org_a)

    cp = chargepoint_create(
        identity="CP-1", organisation=org_a, location=location, password=KEY, vendor="ABB"
    )

    cp.refresh_from_db()
    assert (cp.security_profile, cp.vendor, cp.location) == (SecurityProfile.BASIC, "ABB", location)
    assert cp.auth_key_hash.startswith("hmac-sha256$")
    assert KEY not in cp.auth_key_hash
    assert chargepoint_verify_key(charge_point=cp, key=KEY) is True
    assert chargepoint_verify_key(charge_point=cp, key=KEY + "x") is False
    assert _actions() == ["chargepoint.create"]


def test_chargepoint_create_without_password_uses_profile_0(org_a):
    cp = chargepoint_create(identity="CP-1", organisation=org_a)
    assert (cp.security_profile, cp.auth_key_hash) == (SecurityProfile.NONE, "")


def test_duplicate_identity_refused(org_a, org_b):
    chargepoint_create(identity="CP-1", organisation=org_a)

    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_create(identity="cp-1", organisation=org_b)

    assert excinfo.value.detail == "A charge point with this OCPP identity already exists."
    assert "already exists" in excinfo.value.fields["__all__"][0]
    assert list(ChargePoint.objects.values_list("identity", flat=True)) == ["CP-1"]
    assert _actions() == ["chargepoint.create"]


@pytest.mark.parametrize(
    ("identity", "detail"),
    [
        ("CP 1", "An OCPP identity has 1 to 48 characters"),
        ("CP/1", "An OCPP identity has 1 to 48 characters"),
        ("C" * 49, "An OCPP identity has 1 to 48 characters"),
    ],
)
def test_bad_identity_refused(org_a, identity, detail):
    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_create(identity=identity, organisation=org_a)

    assert excinfo.value.detail.startswith(detail)
    assert "identity" in excinfo.value.fields
    assert not ChargePoint.objects.exists()
    assert not AuditRecord.objects.exists()


@pytest.mark.parametrize(
    ("password", "detail"),
    [
        ("short", "An authorisation key must have 16 to 40 characters."),
        ("x" * 41, "An authorisation key must have 16 to 40 characters."),
        (
            "with a space 0123456",
            "An authorisation key may contain only printable ASCII characters without spaces.",
        ),
    ],
)
def test_bad_key_refused(org_a, password, detail):
    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_create(identity="CP-1", organisation=org_a, password=password)

    assert (excinfo.value.code, excinfo.value.detail) == ("invalid_key", detail)
    assert excinfo.value.fields == {"password": [detail]}
    assert not ChargePoint.objects.exists()


def test_profile_1_without_key_refused(org_a):
    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_create(identity="CP-1", organisation=org_a, security_profile=SecurityProfile.BASIC)

    assert excinfo.value.detail == "Security profiles 1 and 2 need an authorisation key."
    assert not ChargePoint.objects.exists()


def test_location_of_another_operator_refused(org_a, org_b):
    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_create(identity="CP-1", organisation=org_a, location=LocationFactory(organisation=org_b))

    assert excinfo.value.fields == {"location": ["The location belongs to another operator."]}
    assert not ChargePoint.objects.exists()


# --- chargepoint_ensure ----------------------------------------------------------------------------


def test_ensure_creates_then_changes_nothing(org_a):
    location = LocationFactory(organisation=org_a)

    cp, changes = chargepoint_ensure(identity="CP-1", location=location, password=KEY)
    assert changes == ["created"]
    assert cp.organisation == org_a

    again, changes = chargepoint_ensure(identity="CP-1", organisation=org_a, location=location, password=KEY)
    assert (again.pk, changes) == (cp.pk, [])
    assert ChargePoint.objects.count() == 1
    assert _actions() == ["chargepoint.create"]


def test_ensure_applies_what_differs(org_a):
    first, second = LocationFactory(organisation=org_a), LocationFactory(organisation=org_a)
    cp, _ = chargepoint_ensure(identity="CP-1", organisation=org_a, location=first)
    assert cp.security_profile == SecurityProfile.NONE

    cp, changes = chargepoint_ensure(identity="CP-1", location=second, password=KEY)

    assert changes == ["location", "password"]
    cp.refresh_from_db()
    assert (cp.location, cp.security_profile) == (second, SecurityProfile.BASIC)
    assert keys.verify_key(KEY, cp.auth_key_hash)
    assert _actions() == ["chargepoint.create", "chargepoint.update"]
    assert AuditRecord.objects.get(action="chargepoint.update").detail == {
        "changed": ["location", "password"]
    }


def test_ensure_identity_case_clash(org_a):
    ChargePointFactory(identity="CP-Case", organisation=org_a)

    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_ensure(identity="CP-CASE", organisation=org_a, password=KEY)

    assert excinfo.value.code == "identity_case_clash"
    assert excinfo.value.detail == "A charge point with this OCPP identity already exists as CP-Case."
    assert list(ChargePoint.objects.values_list("identity", flat=True)) == ["CP-Case"]
    assert not AuditRecord.objects.exists()


def test_ensure_refuses_another_operators_charge_point(org_a, org_b):
    cp = ChargePointFactory(identity="CP-1", organisation=org_b)

    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_ensure(identity="CP-1", organisation=org_a, password=KEY)

    assert (excinfo.value.code, excinfo.value.detail) == (
        "organisation_mismatch",
        "Charge point CP-1 belongs to another operator.",
    )
    assert ChargePoint.objects.get().auth_key_hash == cp.auth_key_hash
    assert not AuditRecord.objects.exists()


def test_ensure_refuses_location_of_another_operator(org_a, org_b):
    ChargePointFactory(identity="CP-1", organisation=org_a)

    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_ensure(identity="CP-1", location=LocationFactory(organisation=org_b))

    assert excinfo.value.detail == "The location belongs to another operator."
    assert not AuditRecord.objects.exists()


def test_ensure_needs_an_owner_for_a_new_charge_point(db):
    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_ensure(identity="CP-1")

    assert excinfo.value.code == "organisation_required"
    assert not ChargePoint.objects.exists()


# --- keys ------------------------------------------------------------------------------------------


def test_generate_auth_key(org_a, staff_a):
    cp = chargepoint_create(identity="CP-1", organisation=org_a)

    key = chargepoint_generate_auth_key(charge_point=cp, actor=staff_a)

    cp.refresh_from_db()
    assert len(key) == 40
    assert int(key, 16) >= 0
    assert cp.security_profile == SecurityProfile.BASIC
    assert chargepoint_verify_key(charge_point=cp, key=key) is True
    assert key not in cp.auth_key_hash
    assert _actions() == ["chargepoint.create", "chargepoint.generate_key"]


def test_generated_key_replaces_the_old_one(org_a):
    cp = chargepoint_create(identity="CP-1", organisation=org_a, password=KEY)

    new_key = chargepoint_generate_auth_key(charge_point=cp)

    cp.refresh_from_db()
    assert new_key != KEY
    assert chargepoint_verify_key(charge_point=cp, key=KEY) is False
    assert chargepoint_verify_key(charge_point=cp, key=new_key) is True
    assert chargepoint_generate_auth_key(charge_point=cp) != new_key


# --- EVSEs and connectors --------------------------------------------------------------------------


def test_connector_clash_refused(org_a):
    evse = EvseFactory(charge_point=ChargePointFactory(organisation=org_a), evse_id=1)
    connector_create(evse=evse, connector_id=1)

    with pytest.raises(ValidationFailed) as excinfo:
        connector_create(evse=evse, connector_id=1, standard=ConnectorStandard.CHADEMO)

    assert excinfo.value.detail == "This EVSE already has a connector with this number."
    assert list(Connector.objects.values_list("standard", flat=True)) == [ConnectorStandard.IEC_62196_T2]
    assert _actions() == ["connector.create"]


def test_evse_clash_refused(org_a):
    cp = ChargePointFactory(organisation=org_a)
    evse_create(charge_point=cp, evse_id=1)

    with pytest.raises(ValidationFailed) as excinfo:
        evse_create(charge_point=cp, evse_id=1)

    assert excinfo.value.detail == "This charge point already has an EVSE with this number."
    assert Evse.objects.count() == 1
    assert _actions() == ["evse.create"]


def test_connector_number_0_refused(org_a):
    evse = EvseFactory(charge_point=ChargePointFactory(organisation=org_a))

    with pytest.raises(ValidationFailed) as excinfo:
        connector_create(evse=evse, connector_id=0)

    assert excinfo.value.detail == "Connector numbers start at 1."
    assert not Connector.objects.exists()


def test_connector_audit_is_filed_under_the_operator(org_a):
    evse = EvseFactory(charge_point=ChargePointFactory(organisation=org_a))
    connector_create(evse=evse, connector_id=1)
    assert AuditRecord.objects.get().organisation_id == org_a.pk


def test_add_connectors_is_idempotent(org_a):
    cp = ChargePointFactory(organisation=org_a)

    created = chargepoint_add_connectors(
        charge_point=cp, count=2, standard=ConnectorStandard.IEC_62196_T2_COMBO, power_type=PowerType.DC,
        max_power_w=150000, max_current_a=300, max_voltage_v=1000,
    )  # fmt: skip

    assert [(c.evse.evse_id, c.connector_id, c.standard, c.max_power_w) for c in created] == [
        (1, 1, ConnectorStandard.IEC_62196_T2_COMBO, 150000),
        (2, 1, ConnectorStandard.IEC_62196_T2_COMBO, 150000),
    ]
    assert chargepoint_add_connectors(charge_point=cp, count=2) == []
    assert [c.connector_id for c in chargepoint_add_connectors(charge_point=cp, count=3)] == [1]
    assert Connector.objects.filter(evse__charge_point=cp).count() == 3


@pytest.mark.parametrize("count", [0, 65])
def test_add_connectors_count_range(org_a, count):
    cp = ChargePointFactory(organisation=org_a)

    with pytest.raises(ValidationFailed) as excinfo:
        chargepoint_add_connectors(charge_point=cp, count=count)

    assert excinfo.value.detail == "A charge point has 1 to 64 connectors."
    assert not Evse.objects.exists()


def test_staff_actor_is_recorded(org_a):
    staff = StaffUserFactory(organisation=org_a, email="tech@example.com")
    chargepoint_create(identity="CP-1", organisation=org_a, actor=staff)
    assert AuditRecord.objects.get().actor_repr == "tech@example.com"
