"""The gateway's side of the domain's intents: one payloads module per version with the same functions,
the message picked by the charger's protocol and valid under its schema, and each command's final
outcome told to the driver flow in its own terms."""

import inspect

import pytest

from apps.charging.intents import CommandOutcome
from apps.charging.models import ChargingSession
from apps.ocpp_gateway import intents, protocol
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.v16 import payloads as v16_payloads
from apps.ocpp_gateway.v201 import payloads as v201_payloads
from apps.stations.choices import OcppProtocol

# subprotocol -> schema version of the payloads the gateway sends it
SCHEMA_VERSIONS = {OcppProtocol.OCPP16: "1.6", OcppProtocol.OCPP201: "2.0.1", OcppProtocol.OCPP21: "2.1"}


def _builders(module):
    return {
        name
        for name, obj in vars(module).items()
        if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("_")
    }


def test_every_version_package_builds_the_same_intents():
    assert (
        _builders(v16_payloads)
        == _builders(v201_payloads)
        == {
            "cancel_reservation",
            "reserve",
            "set_charging_limit",
            "start_charging",
            "stop_transaction",
            "transaction_probe",
            "unlock_connector",
        }
    )


def test_the_payloads_follow_the_chargers_protocol_and_21_sends_the_201_messages():
    assert intents.payloads_for(OcppProtocol.OCPP16) is v16_payloads
    assert intents.payloads_for(OcppProtocol.OCPP201) is v201_payloads
    # 2.1 has its own payloads module (every version package holds the same modules) with 2.0.1's builders.
    v21 = intents.payloads_for(OcppProtocol.OCPP21)
    assert v21.__name__ == "apps.ocpp_gateway.v21.payloads"
    assert (v21.start_charging, v21.stop_transaction, v21.transaction_probe) == (
        v201_payloads.start_charging,
        v201_payloads.stop_transaction,
        v201_payloads.transaction_probe,
    )
    assert intents.payloads_for("") is v16_payloads  # a charger that never said: 1.6, as before


@pytest.mark.parametrize("subprotocol", list(SCHEMA_VERSIONS))
def test_each_versions_messages_are_valid_under_its_schema(subprotocol):
    version = SCHEMA_VERSIONS[subprotocol]
    payloads = intents.payloads_for(subprotocol)
    codes = protocol.ErrorCodes(version)
    action, payload = payloads.start_charging(evse_id=2, id_token="APP0123456789ABCDEF")
    if version != "1.6":
        payload = {**payload, "remoteStartId": 7}  # command_send fills it with the command's id
    protocol.validate(action, payload, version, codes)
    session = ChargingSession(protocol=subprotocol, transaction_ref="TX-9", ocpp16_transaction_id=9)
    action, payload = payloads.stop_transaction(session=session)
    protocol.validate(action, payload, version, codes)
    assert payload == ({"transactionId": 9} if version == "1.6" else {"transactionId": "TX-9"})
    session.evse_id = 2
    probes = payloads.transaction_probe(session=session)
    for action, payload in probes:
        protocol.validate(action, payload, version, codes)
    if version == "1.6":
        assert probes == [
            ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 2}),
            ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 2}),
        ]
    else:
        assert probes == [("GetTransactionStatus", {"transactionId": "TX-9"})]
    action, payload = payloads.unlock_connector(evse_id=2, connector_id=1)  # OCPI UNLOCK_CONNECTOR
    protocol.validate(action, payload, version, codes)
    assert (action, payload) == (
        ("UnlockConnector", {"connectorId": 2})
        if version == "1.6"
        else ("UnlockConnector", {"evseId": 2, "connectorId": 1})
    )


@pytest.mark.parametrize(
    ("status", "response", "outcome"),
    [
        (CommandStatus.ANSWERED, {"status": "Accepted"}, CommandOutcome.ACCEPTED),
        (CommandStatus.ANSWERED, {"status": "Rejected"}, CommandOutcome.REFUSED),
        (CommandStatus.CALL_ERROR, None, CommandOutcome.REFUSED),
        (CommandStatus.TIMEOUT, None, CommandOutcome.TIMEOUT),
        (CommandStatus.CHARGER_OFFLINE, None, CommandOutcome.OFFLINE),
        (CommandStatus.CHARGER_DISCONNECTED, None, CommandOutcome.DISCONNECTED),
    ],
)
def test_a_commands_final_outcome_in_the_driver_flows_terms(status, response, outcome):
    command = OcppCommand(pk=41, action="RequestStartTransaction", status=status, response=response)
    command.error_code = "GenericError" if status == CommandStatus.CALL_ERROR else ""
    told = intents.intent_outcome(command)
    assert (told.command_id, told.outcome, told.status, told.response) == (41, outcome, status, response)
    assert told.error_code == command.error_code


def test_only_start_and_stop_commands_are_told_to_the_driver_flow(monkeypatch):
    told = []
    monkeypatch.setattr(intents, "driver_session_command_finished", lambda *, outcome: told.append(outcome))
    for action in ("Reset", "RemoteStartTransaction", "RequestStopTransaction", "GetVariables"):
        intents.intent_command_finished(
            command=OcppCommand(pk=1, action=action, status=CommandStatus.TIMEOUT, response=None)
        )
    assert len(told) == 2
