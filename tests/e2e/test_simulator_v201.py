"""Simulated OCPP 2.0.1 charging stations against a real server, commanded through the product's command
service from this process; every answer is checked against the 2.0.1 response schema."""

import logging
import time
from io import StringIO

import pytest
import pytest_asyncio

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession, MeterSample, TransactionEvent
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.messagelog import FLUSH_EVERY_S
from apps.ocpp_gateway.models import OcppMessage
from apps.stations.models import ChargePoint, Connector, DeviceVariable
from tests.conformance.station import assert_response_valid
from tests.e2e.conftest import KEY, command, eventually, orm
from tests.e2e.test_simulator import _Uploads, file_server  # noqa: F401 - file_server is a fixture
from tests.factories import ChargePointFactory, IdTokenFactory, OrganisationFactory
from tools.simulator import ChargingStation, Fleet
from tools.simulator.backoff import Backoff
from tools.simulator.cli import main

pytestmark = [pytest.mark.slow]

ID_TAG = "04C0FFEE2001"
IDENTITIES = ("SIM201-00001", "SIM201-00002")


async def _async(value):
    return value


def _queued_offline(station, transaction_id: str) -> list[str]:
    """The event types of `transaction_id`'s TransactionEvents that wait in the station's queue flagged
    as made offline."""
    payloads = [item.build() for item in station._outbox if item.transactional]
    return [
        p.event_type for p in payloads if p.transaction_info["transaction_id"] == transaction_id and p.offline
    ]


def message_log_settled(timeout: float = 15.0) -> None:
    """Wait (bounded) until the server's batched message log stops growing: a batch written while the
    database is emptied for the next test would deadlock that TRUNCATE."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = OcppMessage.objects.count()
        if count == last:
            return
        last = count
        time.sleep(FLUSH_EVERY_S * 1.5)  # longer than a flush interval: unchanged means no batch pending
    raise AssertionError(f"the message log still grows after {timeout:g} s ({last} rows)")


@pytest_asyncio.fixture
async def fleet(server, caplog):
    caplog.set_level(logging.WARNING, logger="ocpp")

    def register() -> None:
        org = OrganisationFactory(slug="sim201-org")
        IdTokenFactory(uid=ID_TAG, group_id="SIM-GROUP")
        for identity in IDENTITIES:
            ChargePointFactory(identity=identity, organisation=org)

    await orm(register)()
    fleet = Fleet(
        url=server.url,
        count=2,
        prefix="SIM201-",
        protocol="ocpp2.0.1",
        key=KEY,
        connectors=2,
        meter_interval_s=1,
        reconnect_base_s=0.2,
        reconnect_max_s=1.0,
        reboot_delay_s=0.2,
        unplug_delay_s=0.2,
    )
    fleet.start()
    await eventually(lambda: _async(fleet.connected == 2), what="two stations booted")
    yield fleet
    await fleet.stop()
    await orm(message_log_settled)()


async def ask(identity: str, action: str, payload: dict) -> dict:
    """The station's schema-valid answer to a command sent through the product."""
    outcome = await command(identity, action, payload)
    assert outcome["status"] == CommandStatus.ANSWERED, (outcome["error_code"], outcome["error_description"])
    assert_response_valid(action, outcome["response"])
    return outcome["response"]


def _session(identity: str) -> ChargingSession | None:
    return ChargingSession.objects.filter(charge_point__identity=identity).order_by("-pk").first()


@pytest.mark.asyncio
async def test_boot_reports_every_connector_in_2_0_1(fleet):
    def statuses() -> list[tuple[str, int, int, str]] | None:
        rows = list(
            Connector.objects.filter(evse__charge_point__identity__in=IDENTITIES)
            .order_by("evse__charge_point__identity", "evse__evse_id")
            .values_list("evse__charge_point__identity", "evse__evse_id", "connector_id", "status")
        )
        return rows if len(rows) == 4 else None

    rows = await eventually(orm(statuses), what="four connector statuses")
    assert rows == [(identity, evse, 1, "Available") for identity in IDENTITIES for evse in (1, 2)]
    cps = await orm(
        lambda: list(
            ChargePoint.objects.filter(identity__in=IDENTITIES).values_list("vendor", "ocpp_protocol")
        )
    )()
    assert cps == [("CPO-Sim", "ocpp2.0.1")] * 2
    assert isinstance(fleet["SIM201-00001"], ChargingStation)


@pytest.mark.asyncio
async def test_remote_start_transaction_events_and_remote_stop(fleet):
    identity = "SIM201-00001"
    answer = await ask(
        identity,
        "RequestStartTransaction",
        {"idToken": {"idToken": ID_TAG, "type": "ISO14443"}, "remoteStartId": 77, "evseId": 2},
    )
    assert answer == {"status": "Accepted"}

    async def charging():
        session = await orm(_session)(identity)
        if session is None or session.last_seq_no is None or session.last_seq_no < 2:
            return None
        return session

    session = await eventually(charging, what="a session with periodic TransactionEvents")
    assert (session.evse_id, session.id_tag, session.auth_status, session.remote_start_id) == (
        2,
        ID_TAG,
        "Accepted",
        77,
    )
    assert session.protocol == "ocpp2.0.1" and session.charging_state == "Charging"

    answer = await ask(identity, "GetTransactionStatus", {"transactionId": session.transaction_ref})
    assert answer["ongoingIndicator"] is True
    assert await ask(identity, "RequestStopTransaction", {"transactionId": session.transaction_ref}) == {
        "status": "Accepted"
    }
    done = await eventually(
        orm(lambda: ChargingSession.objects.filter(pk=session.pk, status=SessionStatus.COMPLETED).first()),
        what="the session COMPLETED",
    )
    assert done.stop_reason == "Remote" and done.missing_seq_nos == []
    assert done.meter_stop_wh > done.meter_start_wh
    contexts = await orm(
        lambda: set(MeterSample.objects.filter(session=done).values_list("context", flat=True))
    )()
    assert {"Transaction.Begin", "Sample.Periodic", "Transaction.End"} <= contexts
    seq_nos = await orm(
        lambda: list(
            TransactionEvent.objects.filter(session=done).order_by("seq_no").values_list("seq_no", flat=True)
        )
    )()
    assert seq_nos == list(range(len(seq_nos)))
    assert await ask(identity, "RequestStopTransaction", {"transactionId": session.transaction_ref}) == {
        "status": "Rejected"
    }


@pytest.mark.asyncio
async def test_device_model_get_set_and_base_report(fleet):
    identity = "SIM201-00002"
    heartbeat = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    unknown = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NoSuchThing"}}
    answer = await ask(
        identity, "SetVariables", {"setVariableData": [{"attributeValue": "600", **heartbeat}]}
    )
    assert answer == {"setVariableResult": [{"attributeStatus": "Accepted", **heartbeat}]}
    answer = await ask(identity, "GetVariables", {"getVariableData": [heartbeat, unknown]})
    assert answer["getVariableResult"] == [
        {"attributeStatus": "Accepted", "attributeValue": "600", **heartbeat},
        {"attributeStatus": "UnknownVariable", **unknown},
    ]
    read_only = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "SecurityProfile"}}
    answer = await ask(identity, "SetVariables", {"setVariableData": [{"attributeValue": "3", **read_only}]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Rejected"

    assert await ask(identity, "GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"}) == {
        "status": "Accepted"
    }

    def reported() -> dict[tuple[str, str], str] | None:
        rows = DeviceVariable.objects.filter(charge_point__identity=identity, variable_instance="")
        found = {(row.component, row.variable): row.value for row in rows}
        return found if ("TxCtrlr", "TxStartPoint") in found else None

    rows = await eventually(orm(reported), what="the base report stored")
    assert rows[("OCPPCommCtrlr", "HeartbeatInterval")] == "600"
    assert rows[("TxCtrlr", "TxStartPoint")] == "Authorized"
    assert rows[("SecurityCtrlr", "BasicAuthPassword")] == ""  # write-only: reported without its value
    assert await ask(identity, "GetBaseReport", {"requestId": 6, "reportBase": "SummaryInventory"}) == {
        "status": "NotSupported"
    }


@pytest.mark.asyncio
async def test_reset_and_availability(fleet):
    identity = "SIM201-00001"
    station = fleet[identity]
    assert await ask(
        identity, "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}
    ) == {"status": "Accepted"}

    def status(evse_id: int) -> str:
        return Connector.objects.get(evse__charge_point__identity=identity, evse__evse_id=evse_id).status

    await eventually(lambda: _unavailable(identity), what="EVSE 1 reported Unavailable")
    assert await ask(identity, "Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    await eventually(
        lambda: _async(station.stats.boots_accepted == 2 and station.accepted), what="booted again"
    )
    assert await orm(status)(1) == "Unavailable"  # ChangeAvailability persists a reset
    assert await ask(identity, "ChangeAvailability", {"operationalStatus": "Operative"}) == {
        "status": "Accepted"
    }
    assert await ask(identity, "UnlockConnector", {"evseId": 2, "connectorId": 1}) == {"status": "Unlocked"}
    assert await ask(identity, "UnlockConnector", {"evseId": 9, "connectorId": 1}) == {
        "status": "UnknownConnector"
    }


async def _unavailable(identity: str) -> bool:
    return await orm(
        lambda: Connector.objects.filter(
            evse__charge_point__identity=identity, evse__evse_id=1, status="Unavailable"
        ).exists()
    )()


@pytest.mark.asyncio
async def test_every_other_command_is_answered_like_a_station(fleet, file_server):  # noqa: F811
    identity = "SIM201-00002"
    station = fleet[identity]
    token = {"idToken": ID_TAG, "type": "ISO14443"}
    assert await ask(identity, "ClearCache", {}) == {"status": "Accepted"}
    assert await ask(
        identity,
        "SendLocalList",
        {
            "versionNumber": 3,
            "updateType": "Full",
            "localAuthorizationList": [{"idToken": token, "idTokenInfo": {"status": "Accepted"}}],
        },
    ) == {"status": "Accepted"}
    assert await ask(identity, "GetLocalListVersion", {}) == {"versionNumber": 3}
    reservation = {"id": 9, "expiryDateTime": "2099-01-01T00:00:00Z", "idToken": token, "evseId": 1}
    assert await ask(identity, "ReserveNow", reservation) == {"status": "Accepted"}
    assert await ask(identity, "CancelReservation", {"reservationId": 9}) == {"status": "Accepted"}
    assert await ask(identity, "CancelReservation", {"reservationId": 9}) == {"status": "Rejected"}
    profile = {
        "id": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}
        ],
    }
    assert await ask(identity, "SetChargingProfile", {"evseId": 1, "chargingProfile": profile}) == {
        "status": "Accepted"
    }
    composite = await ask(
        identity, "GetCompositeSchedule", {"duration": 600, "evseId": 1, "chargingRateUnit": "A"}
    )
    assert composite["status"] == "Accepted"
    assert composite["schedule"]["chargingSchedulePeriod"][0]["limit"] == 10.0
    assert await ask(identity, "ClearChargingProfile", {"chargingProfileId": 1}) == {"status": "Accepted"}
    assert await ask(
        identity, "DataTransfer", {"vendorId": "CPO-Sim", "messageId": "Echo", "data": "hi"}
    ) == {"status": "Accepted", "data": "hi"}
    assert await ask(identity, "DataTransfer", {"vendorId": "Other"}) == {"status": "UnknownVendorId"}
    assert await ask(identity, "GetTransactionStatus", {}) == {"messagesInQueue": False}
    assert await ask(identity, "CostUpdated", {"totalCost": 4.56, "transactionId": "tx-1"}) == {}
    assert station.costs == {"tx-1": 4.56}
    assert await ask(identity, "TriggerMessage", {"requestedMessage": "SignV2GCertificate"}) == {
        "status": "NotImplemented"
    }
    assert await ask(identity, "TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 2}}) == {
        "status": "Accepted"
    }
    await eventually(
        orm(lambda: MeterSample.objects.filter(charge_point__identity=identity, context="Trigger").exists()),
        what="the triggered MeterValues stored",
    )

    log = await ask(
        identity,
        "GetLog",
        {"logType": "DiagnosticsLog", "requestId": 4, "log": {"remoteLocation": f"{file_server}/logs/"}},
    )
    assert log["status"] == "Accepted" and log["filename"].startswith(f"{identity}-DiagnosticsLog-")
    await eventually(
        orm(lambda: ChargePoint.objects.filter(identity=identity, diagnostics_status="Uploaded").exists()),
        what="LogStatusNotification Uploaded",
    )
    assert _Uploads.received[f"/logs/{log['filename']}"].startswith(f"identity={identity}".encode())

    firmware = {
        "location": f"{file_server}/firmware/sim-3.0.0.bin",
        "retrieveDateTime": "2020-01-01T00:00:00Z",
        "signature": "c2lnbmF0dXJl",
    }
    assert await ask(identity, "UpdateFirmware", {"requestId": 12, "firmware": firmware}) == {
        "status": "Accepted"
    }
    await eventually(
        orm(
            lambda: ChargePoint.objects.filter(
                identity=identity, firmware_status="Installed", firmware_version="sim-3.0.0"
            ).exists()
        ),
        what="the firmware installed and reported after the reboot",
    )
    assert station.boot_reason == "Unknown" and station.stats.reboots == 1


@pytest.mark.asyncio
async def test_transaction_events_made_offline_arrive_in_order_flagged_offline(fleet):
    identity = "SIM201-00001"
    station = fleet[identity]
    assert await station.start_transaction(1, ID_TAG, authorize=True)
    tx = station.connectors[1].transaction
    await eventually(
        orm(lambda: ChargingSession.objects.filter(transaction_ref=tx.transaction_id).exists()),
        what="the session started",
    )
    station.backoff = Backoff(base_s=5.0, maximum_s=5.0)  # stay offline 2.5 to 5 s
    station.link.ws.transport.abort()
    await eventually(lambda: _async(station.link is None), what="the station noticed it is offline")
    await eventually(
        lambda: _async("Updated" in _queued_offline(station, tx.transaction_id)),
        what="a periodic event made and queued while offline",
    )
    assert station.stop_transaction(1, reason="Local", id_tag=ID_TAG)
    assert station.queued_events(tx.transaction_id) >= 2

    done = await eventually(
        orm(
            lambda: ChargingSession.objects.filter(
                transaction_ref=tx.transaction_id, status="COMPLETED"
            ).first()
        ),
        what="the queued events delivered",
    )
    assert (done.stop_reason, done.stop_id_tag, done.missing_seq_nos) == ("Local", ID_TAG, [])
    offline = await orm(
        lambda: list(
            TransactionEvent.objects.filter(session=done, offline=True).values_list("event_type", flat=True)
        )
    )()
    assert {"Updated", "Ended"} <= set(offline)


def test_the_command_line_speaks_2_0_1(server, caplog):
    caplog.set_level(logging.WARNING, logger="ocpp")
    OrganisationFactory(slug="cmd201-org")
    out, err = StringIO(), StringIO()
    status = main(
        [
            "--url",
            server.url,
            "--count",
            "2",
            "--protocol",
            "ocpp2.0.1",
            "--prefix",
            "C201-",
            "--key",
            KEY,
            "--register",
            "--organisation",
            "cmd201-org",
            "--sessions",
            "--idle-seconds",
            "0.4",
            "--session-seconds",
            "1",
            "--meter-interval",
            "1",
            "--duration",
            "6",
        ],
        stdout=out,
        stderr=err,
    )
    assert status == 0, err.getvalue()
    message_log_settled()
    fields = {name: int(value) for name, value in (item.split("=") for item in out.getvalue().split())}
    assert fields["chargers"] == 2 and fields["boots_accepted"] == 2 and fields["errors"] == 0
    completed = ChargingSession.objects.filter(charge_point__identity__startswith="C201-", status="COMPLETED")
    assert completed.exists()
    assert set(completed.values_list("protocol", "auth_status")) == {("ocpp2.0.1", "Accepted")}
    assert set(
        ChargePoint.objects.filter(identity__startswith="C201-").values_list("ocpp_protocol", flat=True)
    ) == {"ocpp2.0.1"}
