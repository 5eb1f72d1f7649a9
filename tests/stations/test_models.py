import pytest
from django.db import IntegrityError

from tests.factories import ChargePointFactory, ConnectorFactory, EvseFactory

pytestmark = pytest.mark.django_db


def test_identity_unique_case_insensitive():
    ChargePointFactory(identity="CP-ABC")
    with pytest.raises(IntegrityError, match="chargepoint_identity_unique_ci"):
        ChargePointFactory(identity="cp-abc")


def test_connector_number_unique_per_evse():
    evse = EvseFactory()
    ConnectorFactory(evse=evse, connector_id=1)
    with pytest.raises(IntegrityError, match="connector_unique_number_per_evse"):
        ConnectorFactory(evse=evse, connector_id=1)
