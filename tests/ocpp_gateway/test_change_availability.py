"""ChangeAvailability's outcome updates the stored availability (of the charge point or the EVSE), whoever
sent it: the one outcome recorder applies it."""

from __future__ import annotations

import pytest

from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.services import command_record_outcome
from apps.stations.models import ChargePoint, Evse
from apps.stations.services import availability_record
from cpo.exceptions import ValidationFailed
from tests.factories import ChargePointFactory, EvseFactory, OcppCommandFactory

pytestmark = pytest.mark.django_db


def _answer(cp, payload, response, *, status=CommandStatus.ANSWERED):
    command = OcppCommandFactory(
        charge_point=cp,
        action="ChangeAvailability",
        payload=payload,
        status=CommandStatus.SENT,
        response=None,
        completed_at=None,
    )
    command_record_outcome(
        command_id=command.pk,
        status=status,
        response=response,
        action="ChangeAvailability",
        has_new_key=False,
    )
    return command


def test_accepted_for_connector_0_makes_the_whole_charge_point_inoperative():
    cp = ChargePointFactory(ocpp_protocol="ocpp1.6")
    _answer(cp, {"connectorId": 0, "type": "Inoperative"}, {"status": "Accepted"})
    assert ChargePoint.objects.get(pk=cp.pk).availability == "Inoperative"
    _answer(cp, {"connectorId": 0, "type": "Operative"}, {"status": "Accepted"})
    assert ChargePoint.objects.get(pk=cp.pk).availability == "Operative"


def test_accepted_for_a_connector_changes_its_evse_only():
    cp = ChargePointFactory(ocpp_protocol="ocpp1.6")
    EvseFactory(charge_point=cp, evse_id=1)
    EvseFactory(charge_point=cp, evse_id=2)
    _answer(cp, {"connectorId": 2, "type": "Inoperative"}, {"status": "Accepted"})
    assert dict(Evse.objects.filter(charge_point=cp).values_list("evse_id", "availability")) == {
        1: "Operative",
        2: "Inoperative",
    }
    assert ChargePoint.objects.get(pk=cp.pk).availability == "Operative"


def test_ocpp_201_evse_and_whole_station():
    cp = ChargePointFactory(ocpp_protocol="ocpp2.0.1")
    _answer(cp, {"operationalStatus": "Inoperative", "evse": {"id": 3}}, {"status": "Accepted"})
    assert Evse.objects.get(charge_point=cp, evse_id=3).availability == "Inoperative"  # created on first use
    _answer(cp, {"operationalStatus": "Inoperative"}, {"status": "Accepted"})
    assert ChargePoint.objects.get(pk=cp.pk).availability == "Inoperative"


@pytest.mark.parametrize(
    ("response", "status"),
    [
        ({"status": "Rejected"}, CommandStatus.ANSWERED),
        ({"status": "Scheduled"}, CommandStatus.ANSWERED),  # applies after the transaction: the status says
        (None, CommandStatus.TIMEOUT),
    ],
)
def test_anything_but_accepted_changes_nothing(response, status):
    cp = ChargePointFactory(ocpp_protocol="ocpp1.6")
    _answer(cp, {"connectorId": 0, "type": "Inoperative"}, response, status=status)
    assert ChargePoint.objects.get(pk=cp.pk).availability == "Operative"


def test_an_availability_that_is_no_availability_is_refused():
    cp = ChargePointFactory()
    with pytest.raises(ValidationFailed) as exc:
        availability_record(charge_point_id=cp.pk, evse_id=0, availability="Broken")
    assert exc.value.code == "invalid_availability"
    assert ChargePoint.objects.get(pk=cp.pk).availability == "Operative"
