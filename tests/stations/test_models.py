"""Station registry constraints, enforced by the database itself (IntegrityError, no full_clean)."""

import pytest
from django.contrib.gis.geos import Point
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.stations.choices import SecurityProfile
from apps.stations.models import ChargePoint, Connector, Evse, Location
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    EvseFactory,
    LocationFactory,
    OrganisationFactory,
)

pytestmark = pytest.mark.django_db


def test_identity_unique_case_insensitive():
    ChargePointFactory(identity="CP-ABC")
    with pytest.raises(IntegrityError, match="chargepoint_identity_unique_ci"), transaction.atomic():
        ChargePointFactory(identity="cp-abc")
    assert list(ChargePoint.objects.values_list("identity", flat=True)) == ["CP-ABC"]


def test_identity_unique_across_organisations():
    ChargePointFactory(identity="CP-ABC")
    with pytest.raises(IntegrityError, match="chargepoint_identity_unique_ci"), transaction.atomic():
        ChargePointFactory(identity="CP-ABC", organisation=OrganisationFactory())
    assert ChargePoint.objects.count() == 1


@pytest.mark.parametrize("profile", [SecurityProfile.BASIC, SecurityProfile.TLS_BASIC])
def test_key_required_for_basic_auth_profiles(profile):
    with pytest.raises(IntegrityError, match="chargepoint_key_for_basic_auth"), transaction.atomic():
        ChargePointFactory(security_profile=profile, auth_key_hash="")
    assert not ChargePoint.objects.exists()


def test_profile_0_needs_no_key():
    cp = ChargePointFactory(security_profile=SecurityProfile.NONE, auth_key_hash="")
    assert cp.has_auth_key is False


def test_security_profile_range():
    with pytest.raises(IntegrityError, match="chargepoint_security_profile_range"), transaction.atomic():
        ChargePointFactory(security_profile=3)
    assert not ChargePoint.objects.exists()


def test_evse_number_unique_per_charge_point():
    evse = EvseFactory(evse_id=1)
    with pytest.raises(IntegrityError, match="evse_unique_number_per_chargepoint"), transaction.atomic():
        EvseFactory(charge_point=evse.charge_point, evse_id=1)
    assert Evse.objects.count() == 1


def test_same_evse_number_on_another_charge_point():
    EvseFactory(evse_id=1)
    EvseFactory(evse_id=1)
    assert list(Evse.objects.values_list("evse_id", flat=True)) == [1, 1]


def test_evse_number_starts_at_1():
    with pytest.raises(IntegrityError, match="evse_number_positive"), transaction.atomic():
        EvseFactory(evse_id=0)
    assert not Evse.objects.exists()


def test_connector_number_unique_per_evse():
    evse = EvseFactory()
    ConnectorFactory(evse=evse, connector_id=1)
    with pytest.raises(IntegrityError, match="connector_unique_number_per_evse"), transaction.atomic():
        ConnectorFactory(evse=evse, connector_id=1)
    assert Connector.objects.count() == 1


def test_connector_number_starts_at_1():
    with pytest.raises(IntegrityError, match="connector_number_positive"), transaction.atomic():
        ConnectorFactory(connector_id=0)
    assert not Connector.objects.exists()


@pytest.mark.parametrize("field", ["max_power_w", "max_current_a", "max_voltage_v"])
def test_connector_ratings_positive(field):
    with pytest.raises(IntegrityError, match="connector_ratings_positive"), transaction.atomic():
        ConnectorFactory(**{field: 0})
    assert not Connector.objects.exists()


def test_location_name_unique_per_organisation():
    location = LocationFactory(name="Depot")
    with pytest.raises(IntegrityError, match="location_unique_name_per_org"), transaction.atomic():
        LocationFactory(name="Depot", organisation=location.organisation)
    LocationFactory(name="Depot")  # another operator may use the same name
    assert Location.objects.filter(name="Depot").count() == 2


def test_location_point_is_geography():
    location = LocationFactory(point=Point(13.4132, 52.5219, srid=4326))
    location.refresh_from_db()
    assert (location.latitude, location.longitude) == (52.5219, 13.4132)
    assert Location._meta.get_field("point").geography is True


def test_location_clean_refuses_null_island():
    location = LocationFactory.build(organisation=OrganisationFactory(), point=Point(0, 0, srid=4326))
    with pytest.raises(ValidationError) as excinfo:
        location.full_clean()
    assert excinfo.value.message_dict["point"] == [
        "Coordinates 0, 0 are in the ocean; set the real coordinates."
    ]


def test_location_clean_refuses_unknown_time_zone():
    location = LocationFactory.build(organisation=OrganisationFactory(), time_zone="Europe/Atlantis")
    with pytest.raises(ValidationError) as excinfo:
        location.full_clean()
    assert excinfo.value.message_dict["time_zone"] == [
        "Europe/Atlantis is not an IANA time zone (e.g. Europe/Berlin)."
    ]


def test_charge_point_clean_refuses_location_of_another_operator():
    cp = ChargePointFactory.build(organisation=OrganisationFactory(), location=LocationFactory())
    with pytest.raises(ValidationError) as excinfo:
        cp.full_clean()
    assert excinfo.value.message_dict["location"] == ["The location belongs to another operator."]
