"""Simulated chargers against a real server, commanded through the product's command service from
this process (another process than the server, as admin, API or Celery would be)."""

import asyncio
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import pytest_asyncio
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession, MeterSample
from apps.ocpp_gateway import presence, transfers
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.models import DiagnosticsUpload, FirmwareFile, OcppCommand
from apps.stations import keys
from apps.stations.models import ChargePoint, Connector
from tests.e2e.conftest import KEY, assert_schema_valid, command, eventually, orm
from tests.factories import ChargePointFactory, IdTokenFactory, OrganisationFactory
from tools.simulator import Fleet
from tools.simulator.backoff import Backoff

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ID_TAG = "04C0FFEE01"
IDENTITIES = ("SIM-00001", "SIM-00002", "SIM-00003")


@pytest_asyncio.fixture
async def fleet(server, caplog):
    caplog.set_level(logging.WARNING, logger="ocpp")

    def register() -> None:
        org = OrganisationFactory(slug="sim-org")
        IdTokenFactory(uid=ID_TAG)
        for identity in IDENTITIES:
            ChargePointFactory(identity=identity, organisation=org)

    await orm(register)()
    fleet = Fleet(
        url=server.url,
        count=3,
        key=KEY,
        connectors=2,
        meter_interval_s=1,
        connect_rate=50,
        reconnect_base_s=0.2,
        reconnect_max_s=1.0,
        reboot_delay_s=0.2,
        unplug_delay_s=0.2,
    )
    fleet.start()
    await eventually(lambda: _async(fleet.connected == 3), what="three chargers booted")
    yield fleet
    await fleet.stop()


async def _async(value):
    return value


def answered(outcome: dict, action: str) -> dict:
    """The charger's answer of an ANSWERED command, checked against the action's response schema."""
    assert outcome["status"] == CommandStatus.ANSWERED, (outcome["error_code"], outcome["error_description"])
    assert_schema_valid(action, outcome["response"])
    return outcome["response"]


def _session(identity: str) -> ChargingSession | None:
    return ChargingSession.objects.filter(charge_point__identity=identity).order_by("-pk").first()


def _measurands(session_id: int) -> set[tuple[str, str]]:
    return set(MeterSample.objects.filter(session_id=session_id).values_list("measurand", "phase"))


async def test_boot_reports_every_connector(fleet):
    def connector_statuses() -> dict[str, list[str]]:
        rows = Connector.objects.filter(evse__charge_point__identity__in=IDENTITIES).values_list(
            "evse__charge_point__identity", "status"
        )
        found: dict[str, list[str]] = {}
        for identity, status in rows:
            found.setdefault(identity, []).append(status)
        return found

    def all_reported() -> dict[str, list[str]] | None:
        found = connector_statuses()
        return found if sum(len(v) for v in found.values()) == 6 else None

    statuses = await eventually(orm(all_reported), what="six connector statuses stored")
    assert all(sorted(v) == ["Available", "Available"] for v in statuses.values()), statuses
    cps = await orm(
        lambda: list(
            ChargePoint.objects.filter(identity__in=IDENTITIES).values_list(
                "vendor", "status", "ocpp_protocol"
            )
        )
    )()
    assert cps == [("CPO-Sim", "Available", "ocpp1.6")] * 3


async def test_remote_start_meter_values_remote_stop(fleet):
    answer = answered(
        await command("SIM-00002", "RemoteStartTransaction", {"idTag": ID_TAG, "connectorId": 1}),
        "RemoteStartTransaction",
    )
    assert answer == {"status": "Accepted"}

    async def active_with_samples():
        session = await orm(_session)("SIM-00002")
        if session is None or session.status != SessionStatus.ACTIVE:
            return None
        measurands = await orm(_measurands)(session.pk)
        return session if ("Energy.Active.Import.Register", "") in measurands else None

    session = await eventually(active_with_samples, what="an ACTIVE session with meter samples")
    assert (session.evse_id, session.id_tag, session.auth_status) == (1, ID_TAG, "Accepted")
    measurands = await orm(_measurands)(session.pk)
    assert {
        ("Power.Active.Import", ""),
        ("Current.Import", "L1"),
        ("Current.Import", "L2"),
        ("Current.Import", "L3"),
    } <= measurands

    answer = answered(
        await command("SIM-00002", "RemoteStopTransaction", {"transactionId": session.ocpp16_transaction_id}),
        "RemoteStopTransaction",
    )
    assert answer == {"status": "Accepted"}

    async def completed():
        found = await orm(_session)("SIM-00002")
        return found if found.status == SessionStatus.COMPLETED else None

    done = await eventually(completed, what="the session COMPLETED")
    assert done.stop_reason == "Remote"
    assert done.meter_stop_wh > done.meter_start_wh
    assert done.energy_wh == done.meter_stop_wh - done.meter_start_wh
    contexts = await orm(
        lambda: set(MeterSample.objects.filter(session=done).values_list("context", flat=True))
    )()
    assert {"Sample.Periodic", "Transaction.Begin", "Transaction.End"} <= contexts

    # A second remote stop for the same transaction is refused by the charger (it no longer runs).
    answer = answered(
        await command("SIM-00002", "RemoteStopTransaction", {"transactionId": session.ocpp16_transaction_id}),
        "RemoteStopTransaction",
    )
    assert answer == {"status": "Rejected"}


async def test_reset_reconnects_boots_again_and_later_commands_still_arrive(fleet):
    charger = fleet["SIM-00003"]
    before = await orm(presence.lookup)("SIM-00003")
    assert charger.stats.boots_accepted == 1

    answer = answered(await command("SIM-00003", "Reset", {"type": "Soft"}), "Reset")
    assert answer == {"status": "Accepted"}

    await eventually(
        lambda: _async(charger.stats.boots_accepted == 2 and charger.accepted),
        what="the charger booted again",
    )
    assert charger.stats.reboots == 1
    after = await orm(presence.lookup)("SIM-00003")
    assert after is not None and after.epoch > before.epoch

    answer = answered(
        await command("SIM-00003", "GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]}),
        "GetConfiguration",
    )
    assert answer == {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
        "unknownKey": ["Nope"],
    }


async def test_transaction_messages_queued_while_offline_arrive_in_order_after_reconnecting(fleet):
    charger = fleet["SIM-00002"]
    answered(
        await command("SIM-00002", "RemoteStartTransaction", {"idTag": ID_TAG, "connectorId": 2}),
        "RemoteStartTransaction",
    )
    session = await eventually(
        orm(
            lambda: ChargingSession.objects.filter(
                charge_point__identity="SIM-00002", status=SessionStatus.ACTIVE
            ).first()
        ),
        what="an ACTIVE session",
    )
    await eventually(
        lambda: _async(charger.connectors[2].transaction.transaction_id is not None),
        what="the charger learnt its transactionId",
    )

    charger.backoff = Backoff(base_s=2.0, maximum_s=2.0)  # stay offline a little while
    charger.link.ws.transport.abort()
    await eventually(lambda: _async(charger.link is None), what="the charger noticed it is offline")
    assert charger.stop_transaction(2, reason="Local", id_tag=ID_TAG)
    queued = [type(item.build()).__name__ for item in charger._outbox]
    assert queued[-1] == "StopTransaction"
    assert set(queued) <= {"MeterValues", "StopTransaction"}

    done = await eventually(
        orm(lambda: ChargingSession.objects.filter(pk=session.pk, status=SessionStatus.COMPLETED).first()),
        what="the queued stop delivered",
    )
    assert done.stop_reason == "Local" and done.stop_id_tag == ID_TAG
    assert done.meter_stop_wh == charger.connectors[2].meter.register_wh
    assert charger.stats.boots_accepted == 2 and not charger._outbox


async def test_reset_during_a_transaction_stops_it_with_the_reset_reason(fleet):
    answered(
        await command("SIM-00001", "RemoteStartTransaction", {"idTag": ID_TAG}), "RemoteStartTransaction"
    )
    await eventually(
        orm(
            lambda: ChargingSession.objects.filter(
                charge_point__identity="SIM-00001", status=SessionStatus.ACTIVE
            ).exists()
        ),
        what="an ACTIVE session",
    )

    answered(await command("SIM-00001", "Reset", {"type": "Hard"}), "Reset")
    # A hard reset sends the StopTransaction after the reboot, once the new boot is accepted.
    done = await eventually(
        orm(
            lambda: ChargingSession.objects.filter(
                charge_point__identity="SIM-00001", status=SessionStatus.COMPLETED
            ).first()
        ),
        what="the session stopped",
    )
    assert done.stop_reason == "HardReset"
    assert fleet["SIM-00001"].stats.reboots == 1


# --- every CSMS→charger command ------------------------------------------------------------------------
class _Uploads(BaseHTTPRequestHandler):
    """Accepts diagnostics uploads (PUT) and serves a firmware file (GET)."""

    received: dict[str, bytes] = {}

    def do_PUT(self) -> None:
        self.received[self.path] = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = b"\x7fFIRMWARE" * 64
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        return


@pytest.fixture
def file_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Uploads)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


async def test_every_command_is_answered_like_a_real_charger(fleet, file_server):
    identity = "SIM-00001"
    charger = fleet[identity]

    async def ask(action, payload):
        return answered(await command(identity, action, payload), action)

    assert await ask("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "5"}) == {
        "status": "Accepted"
    }
    assert await ask("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "9"}) == {
        "status": "Rejected"
    }
    assert await ask("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "soon"}) == {
        "status": "Rejected"
    }
    assert await ask("ChangeConfiguration", {"key": "NoSuchKey", "value": "1"}) == {"status": "NotSupported"}
    config = await ask("GetConfiguration", {})
    keys = {entry["key"]: entry for entry in config["configurationKey"]}
    assert keys["MeterValueSampleInterval"]["value"] == "5"
    assert keys["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
    assert "value" not in keys["AuthorizationKey"]  # write-only

    assert await ask("ClearCache", {}) == {"status": "Accepted"}
    assert await ask("DataTransfer", {"vendorId": "CPO-Sim", "messageId": "Echo", "data": "hi"}) == {
        "status": "Accepted",
        "data": "hi",
    }
    assert await ask("DataTransfer", {"vendorId": "com.other"}) == {"status": "UnknownVendorId"}
    assert await ask("UnlockConnector", {"connectorId": 2}) == {"status": "Unlocked"}
    assert await ask("UnlockConnector", {"connectorId": 7}) == {"status": "NotSupported"}

    assert await ask("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}) == {
        "status": "Accepted"
    }
    await eventually(
        orm(
            lambda: Connector.objects.filter(
                evse__charge_point__identity=identity, evse__evse_id=2, status="Unavailable"
            ).exists()
        ),
        what="connector 2 reported Unavailable",
    )
    assert await ask("RemoteStartTransaction", {"idTag": ID_TAG, "connectorId": 2}) == {"status": "Rejected"}
    assert await ask("ChangeAvailability", {"connectorId": 2, "type": "Operative"}) == {"status": "Accepted"}

    reserve = {"connectorId": 1, "expiryDate": "2099-01-01T00:00:00Z", "idTag": ID_TAG, "reservationId": 7}
    assert await ask("ReserveNow", reserve) == {"status": "Accepted"}
    assert await ask("ReserveNow", {**reserve, "reservationId": 8}) == {"status": "Occupied"}
    assert await ask("CancelReservation", {"reservationId": 7}) == {"status": "Accepted"}
    assert await ask("CancelReservation", {"reservationId": 7}) == {"status": "Rejected"}

    assert await ask("GetLocalListVersion", {}) == {"listVersion": 0}
    full = {
        "listVersion": 3,
        "updateType": "Full",
        "localAuthorizationList": [
            {"idTag": ID_TAG, "idTagInfo": {"status": "Accepted"}},
            {"idTag": "OLD", "idTagInfo": {"status": "Blocked"}},
        ],
    }
    assert await ask("SendLocalList", full) == {"status": "Accepted"}
    stale = {"listVersion": 3, "updateType": "Differential", "localAuthorizationList": [{"idTag": "OLD"}]}
    assert await ask("SendLocalList", stale) == {"status": "VersionMismatch"}
    assert await ask("SendLocalList", {**stale, "listVersion": 4}) == {"status": "Accepted"}
    assert await ask("GetLocalListVersion", {}) == {"listVersion": 4}
    assert set(charger.auth.entries) == {ID_TAG}

    profile = {
        "chargingProfileId": 11,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.3}, {"startPeriod": 600, "limit": 6.7}],
        },
    }
    assert await ask("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile}) == {
        "status": "Accepted"
    }
    tx_profile = {**profile, "chargingProfileId": 12, "chargingProfilePurpose": "TxProfile"}
    assert await ask("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": tx_profile}) == {
        "status": "Rejected"
    }  # no transaction runs on connector 1
    composite = await ask(
        "GetCompositeSchedule", {"connectorId": 1, "duration": 3600, "chargingRateUnit": "A"}
    )
    assert composite["status"] == "Accepted" and composite["connectorId"] == 1
    assert composite["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 10.3},
        {"startPeriod": 600, "limit": 6.7},
    ]
    assert await ask("ClearChargingProfile", {"id": 11}) == {"status": "Accepted"}
    assert await ask("ClearChargingProfile", {"id": 11}) == {"status": "Unknown"}

    assert await ask("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}) == {
        "status": "Accepted"
    }
    assert await ask("TriggerMessage", {"requestedMessage": "Heartbeat"}) == {"status": "Accepted"}
    assert await ask("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 9}) == {
        "status": "Rejected"
    }

    diagnostics = await ask("GetDiagnostics", {"location": f"{file_server}/uploads/"})
    assert diagnostics["fileName"].startswith(f"{identity}-diagnostics-")
    await eventually(
        orm(lambda: ChargePoint.objects.filter(identity=identity, diagnostics_status="Uploaded").exists()),
        what="DiagnosticsStatusNotification Uploaded",
    )
    assert _Uploads.received[f"/uploads/{diagnostics['fileName']}"].startswith(
        f"identity={identity}".encode()
    )
    failed = await ask("GetDiagnostics", {"location": "ftp://127.0.0.1/diagnostics/"})
    assert failed["fileName"]
    await eventually(
        orm(
            lambda: ChargePoint.objects.filter(identity=identity, diagnostics_status="UploadFailed").exists()
        ),
        what="DiagnosticsStatusNotification UploadFailed",
    )

    firmware = {"location": f"{file_server}/firmware/acme-2.4.1.bin", "retrieveDate": "2020-01-01T00:00:00Z"}
    assert await ask("UpdateFirmware", firmware) == {}
    await eventually(
        orm(
            lambda: ChargePoint.objects.filter(
                identity=identity, firmware_status="Installed", firmware_version="acme-2.4.1"
            ).exists()
        ),
        what="FirmwareStatusNotification Installed after the reboot",
    )
    assert charger.stats.reboots == 1

    assert await ask("Reset", {"type": "Soft"}) == {"status": "Accepted"}
    await eventually(
        lambda: _async(charger.stats.boots_accepted == 3 and charger.accepted), what="booted after the reset"
    )
    # Configuration and the local list survive reboots, as on a real charger.
    assert charger.config.get("MeterValueSampleInterval") == "5"
    assert await ask("GetLocalListVersion", {}) == {"listVersion": 4}
    await asyncio.sleep(0)


async def test_diagnostics_and_firmware_through_the_products_own_endpoints(fleet, server):
    identity = "SIM-00003"
    charger = fleet[identity]
    base_url = f"http://127.0.0.1:{server.port}"

    def issue_upload() -> tuple[int, str]:
        issued = transfers.diagnostics_upload_issue(
            charge_point=ChargePoint.objects.get(identity=identity), base_url=base_url
        )
        return issued.upload.pk, issued.url

    upload_id, location = await orm(issue_upload)()
    answer = answered(await command(identity, "GetDiagnostics", {"location": location}), "GetDiagnostics")
    slot = await eventually(
        orm(lambda: DiagnosticsUpload.objects.filter(pk=upload_id, uploaded_at__isnull=False).first()),
        what="the diagnostics file stored by the product",
    )
    assert slot.filename == answer["fileName"]
    # The server stores into the media folder this process shares with it.
    assert (Path(settings.MEDIA_ROOT) / slot.file.name).read_text().startswith(f"identity={identity}\n")
    await eventually(
        orm(lambda: ChargePoint.objects.filter(identity=identity, diagnostics_status="Uploaded").exists()),
        what="DiagnosticsStatusNotification Uploaded",
    )

    def add_firmware() -> str:
        org = ChargePoint.objects.get(identity=identity).organisation
        firmware = FirmwareFile(
            organisation=org,
            vendor="CPO-Sim",
            model="SIM-AC22",
            version="2.4.1",
            file=SimpleUploadedFile("sim-2.4.1.bin", b"\x7fFIRMWARE" * 512),
        )
        transfers.firmware_fingerprint(firmware=firmware)
        firmware.save()
        return transfers.firmware_url(firmware=firmware, base_url=base_url)

    url = await orm(add_firmware)()
    answered(
        await command(identity, "UpdateFirmware", {"location": url, "retrieveDate": "2020-01-01T00:00:00Z"}),
        "UpdateFirmware",
    )
    await eventually(
        orm(
            lambda: ChargePoint.objects.filter(
                identity=identity, firmware_status="Installed", firmware_version="sim-2.4.1"
            ).exists()
        ),
        what="the firmware downloaded from the product, installed, and reported after the reboot",
    )
    assert charger.stats.reboots == 1


async def test_a_new_authorization_key_is_used_on_the_next_connect(fleet):
    identity = "SIM-00002"
    charger = fleet[identity]
    new_key = "fedcba9876543210fedcba9876543210"
    answer = answered(
        await command(identity, "ChangeConfiguration", {"key": "AuthorizationKey", "value": new_key}),
        "ChangeConfiguration",
    )
    assert answer == {"status": "Accepted"}

    # The charger disconnects and connects with the new key (security whitepaper A01); the product
    # accepts only the new key from now on.
    await eventually(
        lambda: _async(charger.stats.boots_accepted == 2 and charger.accepted),
        what="the charger back with its new key",
    )
    assert charger.config.get("AuthorizationKey") == new_key
    stored = await orm(lambda: ChargePoint.objects.get(identity=identity).auth_key_hash)()
    assert keys.verify_key(new_key, stored) and not keys.verify_key(KEY, stored)
    stored_payload = await orm(
        lambda: (
            OcppCommand.objects.filter(charge_point__identity=identity, action="ChangeConfiguration")
            .get()
            .payload
        )
    )()
    assert stored_payload == {"key": "AuthorizationKey", "value": "***"}

    answer = answered(
        await command(identity, "GetConfiguration", {"key": ["AuthorizationKey"]}), "GetConfiguration"
    )
    assert answer == {"configurationKey": [{"key": "AuthorizationKey", "readonly": False}]}
