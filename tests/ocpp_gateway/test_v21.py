"""OCPP 2.1 on the same gateway, as 2.0.1 is tested: the subprotocol is negotiated; a 2.1 charger boots,
authorises and runs TransactionEvents into a charging session; it takes RequestStart/StopTransaction,
Reset, ChangeAvailability and Get/SetVariables from the command service and the admin; the driver API
starts and stops it. Every frame is checked against the 2.1 schemas both ways: the charger's CALLs and
our CALLRESULTs (the test settings validate our answers), our CALLs and the charger's CALLRESULTs.
What 2.1 changes is tested too: its own schema rules, idTokens longer than we store, the ImmediateAndResume
reset, and the OCPP-J 2.1 message types CALLRESULTERROR and SEND."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django import db
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.models import User
from apps.charging.models import ChargingSession, DriverSession, MeterSample
from apps.ocpp_gateway import messagelog, protocol, versions
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.commands_catalog import catalogue_for, command_send_form
from apps.ocpp_gateway.forms import CommandContext
from apps.ocpp_gateway.models import OcppCommand, OcppMessage
from apps.ocpp_gateway.services import chargepoint_accept, command_wait
from apps.stations import keys
from apps.stations.models import ChargePoint, DeviceVariable
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    DriverFactory,
    EvseFactory,
    IdTokenFactory,
    StaffUserFactory,
)
from tests.ocpp_gateway.conftest import Charger, connect
from tests.ocpp_gateway.test_v201_commands import CASES as V201_CASES

pytestmark = pytest.mark.django_db(transaction=True)

V21 = "ocpp2.1"
BOOT = {
    "chargingStation": {"model": "BiDi-11", "vendorName": "ACME", "firmwareVersion": "3.1"},
    "reason": "PowerUp",
}


def check(action: str, payload: Any, kind: int) -> None:
    """Fail unless `payload` is valid for `action` under the OCPP 2.1 schema (CALL or CALLRESULT)."""
    protocol.validate(action, payload, "2.1", versions.V21.codes, kind=kind)


class Charger21(Charger):
    """A raw 2.1 client that checks every answer it gets against the 2.1 CALLRESULT schema."""

    async def call(self, action: str, payload: Any) -> list:
        answer = await super().call(action, payload)
        if answer[0] == protocol.CALLRESULT:
            check(action, answer[2], protocol.CALLRESULT)
        return answer

    async def command(self, action: str) -> list:
        """The next frame: our CALL of `action`, checked against the 2.1 CALL schema."""
        call = await self.receive()
        assert call[0] == protocol.CALL and call[2] == action, call
        check(action, call[3], protocol.CALL)
        return call

    async def answer(self, call: list, payload: dict[str, Any]) -> None:
        check(call[2], payload, protocol.CALLRESULT)
        await self.send_raw(json.dumps([3, call[1], payload]))


async def booted(subprotocols: list[str] | None = None) -> tuple[Any, Charger21]:
    comm, connected, subprotocol = await connect(subprotocols=subprotocols or [V21])
    assert connected and subprotocol == V21
    charger = Charger21(comm)
    answer = await charger.call("BootNotification", BOOT)
    assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    return comm, charger


def in_thread(fn):
    """Run `fn` as another process would (admin request, shell, API): its own thread and connection."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


def event(event_type: str, seq_no: int, *, tx: str = "TX-21", **extra: Any) -> dict[str, Any]:
    payload = {
        "eventType": event_type,
        "timestamp": extra.pop("ts", "2026-11-20T10:00:00Z"),
        "triggerReason": extra.pop("trigger", "MeterValuePeriodic"),
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx, **extra.pop("info", {})},
        **extra,
    }
    check("TransactionEvent", payload, protocol.CALL)
    return payload


def energy(wh: int, context: str, ts: str = "2026-11-20T10:00:00Z", **sampled: Any) -> list[dict[str, Any]]:
    value = {"value": wh, "measurand": "Energy.Active.Import.Register", "context": context, **sampled}
    return [{"timestamp": ts, "sampledValue": [value]}]


# --- the registry ----------------------------------------------------------------------------------


def test_the_registry_knows_each_version_once():
    assert versions.subprotocols() == ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]
    assert versions.by_subprotocol(V21) is versions.by_key("2.1") is versions.V21
    assert versions.negotiate([" OCPP2.1 ", "ocpp1.6"]) is versions.V21
    assert versions.negotiate(["ocpp1.6", "ocpp2.1"]) is versions.V16
    assert versions.negotiate(["ocpp2.2", "ocpp1.5"]) is None
    with pytest.raises(versions.UnknownVersion):
        versions.by_subprotocol("ocpp2.2")
    assert versions.for_charge_point(ChargePoint(ocpp_protocol="")) is versions.V16
    assert versions.for_charge_point(ChargePoint(ocpp_protocol=V21)) is versions.V21
    # 2.1 reuses the 2.0.1 handlers, spellings and command ids, and knows the 2.1 actions.
    assert issubclass(versions.V21.handlers, versions.V201.handlers)
    assert versions.V21.codes.occurrence == "OccurrenceConstraintViolation"
    assert versions.V21.command_id_field("RequestStartTransaction") == "remoteStartId"
    assert "BatterySwap" in versions.V21.known_actions
    assert "BatterySwap" not in versions.V201.known_actions


def test_every_version_package_has_the_same_modules():
    root = Path(versions.__file__).parent
    modules = {
        v.key: sorted(p.name for p in (root / v.package.rsplit(".", 1)[1]).glob("*.py"))
        for v in versions.VERSIONS
    }
    assert modules == {
        key: ["__init__.py", "commands.py", "handlers.py", "payloads.py"] for key in ("1.6", "2.0.1", "2.1")
    }
    for version in versions.VERSIONS:
        assert version.catalogue and all(spec.version == version.key for spec in version.catalogue.values())
        assert all(spec.form_class.version == version.key for spec in version.catalogue.values())


# --- the charger's requests ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_boot_authorise_and_a_transaction_make_a_session(charge_point):
    await sync_to_async(IdTokenFactory)(uid="04A1B2C3", group_id="G1")
    comm, charger = await booted()
    cp = await sync_to_async(ChargePoint.objects.get)(pk=charge_point.pk)
    assert (cp.ocpp_protocol, cp.vendor, cp.model, cp.firmware_version) == (V21, "ACME", "BiDi-11", "3.1")
    status = await charger.call(
        "StatusNotification",
        {"timestamp": "2026-11-20T10:00:00Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    )
    assert status == [3, status[1], {}]
    authorised = await charger.call("Authorize", {"idToken": {"idToken": "04a1b2c3", "type": "ISO14443"}})
    assert authorised[2] == {
        "idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "G1", "type": "Central"}}
    }
    # 2.1 members the gateway does not use (operation mode, EV sleep, preconditioning, a signed value
    # without the 2.0.1-required signingMethod and publicKey) are accepted and change nothing.
    started = await charger.call(
        "TransactionEvent",
        event(
            "Started",
            0,
            trigger="Authorized",
            idToken={"idToken": "04a1b2c3", "type": "ISO14443"},
            evse={"id": 1, "connectorId": 1},
            meterValue=energy(
                1000,
                "Transaction.Begin",
                signedMeterValue={"signedMeterData": "c2lnbmVk", "encodingMethod": "OCMF"},
            ),
            evseSleep=False,
            preconditioningStatus="Ready",
            info={"chargingState": "Charging", "operationMode": "ChargingOnly"},
        ),
    )
    assert started[2]["idTokenInfo"]["status"] == "Accepted"
    updated = await charger.call(
        "TransactionEvent",
        event("Updated", 1, meterValue=energy(6000, "Sample.Periodic", "2026-11-20T10:30:00Z")),
    )
    assert updated[2] == {}
    ended = await charger.call(
        "TransactionEvent",
        event(
            "Ended",
            2,
            ts="2026-11-20T11:00:00Z",
            trigger="EVDeparted",
            meterValue=energy(11000, "Transaction.End", "2026-11-20T11:00:00Z"),
            info={"chargingState": "Idle", "stoppedReason": "EVDisconnected"},
        ),
    )
    assert ended[0] == 3

    @sync_to_async
    def stored():
        s = ChargingSession.objects.get(transaction_ref="TX-21")
        return (
            (s.status, s.protocol, s.id_tag, s.auth_status, s.meter_start_wh, s.meter_stop_wh, s.energy_wh),
            MeterSample.objects.filter(session=s).count(),
        )

    assert await stored() == (("COMPLETED", V21, "04A1B2C3", "Accepted", 1000, 11000, 10000), 3)
    await comm.disconnect()


@pytest.mark.asyncio
async def test_a_token_longer_than_we_store_is_invalid_and_the_transaction_is_kept(charge_point):
    """2.1 allows idTokens of 255 characters (2.0.1: 36); no token of ours is longer than 36."""
    long_token = {"idToken": "E" * 80, "type": "eMAID"}
    comm, charger = await booted()
    authorised = await charger.call("Authorize", {"idToken": long_token})
    assert authorised[2] == {"idTokenInfo": {"status": "Invalid"}}
    started = await charger.call(
        "TransactionEvent",
        event(
            "Started",
            0,
            tx="TX-LONG",
            trigger="Authorized",
            idToken=long_token,
            evse={"id": 1, "connectorId": 1},
            meterValue=energy(500, "Transaction.Begin"),
        ),
    )
    assert started[0] == 3 and started[2]["idTokenInfo"] == {"status": "Invalid"}
    session = await sync_to_async(ChargingSession.objects.get)(transaction_ref="TX-LONG")
    assert (session.status, session.id_tag, session.meter_start_wh) == ("ACTIVE", "", 500)
    await comm.disconnect()
    # The same token is no 2.0.1 token at all: that schema refuses it.
    comm, connected, _ = await connect(subprotocols=["ocpp2.0.1"])
    assert connected
    refused = await Charger(comm).call("Authorize", {"idToken": long_token})
    assert refused[:3] == [4, refused[1], "PropertyConstraintViolation"]
    await comm.disconnect()


@pytest.mark.asyncio
async def test_schema_violations_get_the_2_1_error_codes(charge_point):
    comm, charger = await booted()
    assert (await charger.call("Heartbeat", []))[2] == "FormatViolation"
    assert (await charger.call("Authorize", {}))[2] == "OccurrenceConstraintViolation"
    assert (await charger.call("Heartbeat", {"extra": 1}))[2] == "FormatViolation"
    assert (await charger.call("StatusNotification", {"evseId": "1"}))[2] in (
        "OccurrenceConstraintViolation",
        "TypeConstraintViolation",
    )
    # An idToken type is any string of up to 20 characters in 2.1 (an enum in 2.0.1).
    free_type = await charger.call("Authorize", {"idToken": {"idToken": "04A1", "type": "VIN"}})
    assert free_type[0] == 3
    too_long_type = await charger.call("Authorize", {"idToken": {"idToken": "04A1", "type": "X" * 21}})
    assert too_long_type[2] == "PropertyConstraintViolation"
    # seqNo has a minimum of 0 in 2.1 only.
    negative = event("Started", 0, tx="TX-NEG")
    negative["seqNo"] = -1
    assert (await charger.call("TransactionEvent", negative))[2] == "PropertyConstraintViolation"
    assert not await sync_to_async(ChargingSession.objects.exists)()
    await charger.send_raw("this is not json")
    assert (await charger.receive())[:3] == [4, "-1", "RpcFrameworkError"]
    await charger.send_raw(json.dumps([7, "abc", "Heartbeat", {}]))
    assert (await charger.receive())[:3] == [4, "abc", "MessageTypeNotSupported"]
    # A 2.1 request the gateway has no handler for is NotSupported (2.0.1: an unknown action).
    assert (await charger.call("BatterySwap", {}))[2] == "NotSupported"
    assert (await charger.call("Heartbeat", {}))[0] == 3  # the connection is kept
    await comm.disconnect()


@pytest.mark.asyncio
async def test_callresulterror_and_send_are_kept_and_never_answered(charge_point):
    """OCPP-J 2.1 message types 5 (CALLRESULTERROR) and 6 (SEND) expect no answer; 2.0.1 knows neither."""
    comm, charger = await booted()
    await charger.send_raw(json.dumps([5, "r-1", "FormatViolation", "your answer was wrong", {}]))
    await charger.send_raw(
        json.dumps(
            [6, "s-1", "NotifyPeriodicEventStream", {"id": 1, "pending": 0, "basetime": "x", "data": []}]
        )
    )
    heartbeat = await charger.call("Heartbeat", {})
    assert heartbeat[0] == 3 and heartbeat[1] == f"m{charger.n}"  # the next frame out answers the Heartbeat
    await messagelog.flush_now()
    kept = await sync_to_async(
        lambda: sorted(
            OcppMessage.objects.filter(message_type__in=[5, 6]).values_list("message_type", "unique_id")
        )
    )()
    assert kept == [(5, "r-1"), (6, "s-1")]
    await comm.disconnect()
    comm, connected, _ = await connect(subprotocols=["ocpp2.0.1"])
    assert connected
    await comm.send_to(text_data=json.dumps([6, "s-2", "NotifyPeriodicEventStream", {}]))
    assert (await Charger(comm).receive())[:3] == [4, "s-2", "MessageTypeNotSupported"]
    await comm.disconnect()


# --- commands ------------------------------------------------------------------------------------

# action -> (form input, what the charger answers)
COMMANDS: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "RequestStartTransaction": (
        {"id_token": "04A1B2C3", "id_token_type": "ISO14443", "evse_id": "1"},
        {"status": "Accepted", "transactionId": "TX-R"},
    ),
    "RequestStopTransaction": ({"transaction_id": "TX-R"}, {"status": "Accepted"}),
    "Reset": ({"type": "ImmediateAndResume"}, {"status": "Scheduled"}),
    "ChangeAvailability": (
        {"operational_status": "Inoperative", "evse_id": "1", "connector_id": "1"},
        {"status": "Accepted"},
    ),
    "GetVariables": (
        {"variables": "OCPPCommCtrlr.HeartbeatInterval", "attribute_type": "Actual"},
        {
            "getVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "attributeValue": "300",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                }
            ]
        },
    ),
    "SetVariables": (
        {"assignments": "TxCtrlr.EVConnectionTimeOut = 90", "attribute_type": "Actual"},
        {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "TxCtrlr"},
                    "variable": {"name": "EVConnectionTimeOut"},
                }
            ]
        },
    ),
}


def _send_form(charge_point_id: int, actor_id: int | None, action: str, data: dict[str, str]) -> int:
    """Send what the admin's form for `action` composes, as the admin does; the command's id."""
    cp = ChargePoint.objects.get(pk=charge_point_id)
    actor = User.objects.get(pk=actor_id) if actor_id else None
    form = catalogue_for(cp)[action].form_class(
        {**data, "timeout_s": "10"}, context=CommandContext(charge_point=cp, actor=actor)
    )
    assert form.is_valid(), form.errors
    return command_send_form(form=form).pk


def _send_and_wait(charge_point_id: int, action: str, data: dict[str, str]) -> dict[str, Any]:
    return command_wait(command_id=_send_form(charge_point_id, None, action, data))


@pytest.mark.asyncio
async def test_the_commands_reach_a_2_1_charger_and_its_answers_are_recorded(charge_point):
    comm, charger = await booted()
    for action, (data, answer) in COMMANDS.items():
        waiting = asyncio.ensure_future(in_thread(_send_and_wait)(charge_point.pk, action, data))
        call = await charger.command(action)
        await charger.answer(call, answer)
        outcome = await waiting
        assert (outcome["status"], outcome["response"]) == (CommandStatus.ANSWERED, answer), action
        if action == "RequestStartTransaction":
            assert call[3]["remoteStartId"] == outcome["id"]  # the command's own id, as for 2.0.1
        if action == "Reset":
            assert call[3] == {"type": "ImmediateAndResume"}

    @sync_to_async
    def device_model():
        return sorted(
            DeviceVariable.objects.filter(charge_point=charge_point).values_list(
                "component", "variable", "value"
            )
        )

    assert await device_model() == [
        ("OCPPCommCtrlr", "HeartbeatInterval", "300"),
        ("TxCtrlr", "EVConnectionTimeOut", "90"),
    ]
    await comm.disconnect()


@pytest.mark.asyncio
async def test_an_answer_that_breaks_the_2_1_schema_gets_a_callresulterror(charge_point):
    comm, charger = await booted()
    waiting = asyncio.ensure_future(in_thread(_send_and_wait)(charge_point.pk, "Reset", COMMANDS["Reset"][0]))
    call = await charger.command("Reset")
    await charger.send_raw(json.dumps([3, call[1], {"status": "Maybe"}]))
    error = await charger.receive()
    assert error[:3] == [5, call[1], "PropertyConstraintViolation"] and "status" in error[3]
    outcome = await waiting
    assert (outcome["status"], outcome["error_code"]) == (CommandStatus.CALL_ERROR, "InvalidResponse")
    await comm.disconnect()


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


def _admin_post(user_pk: int, url: str, data: dict[str, str]) -> list[tuple[str, str]]:
    client = Client()
    client.force_login(User.objects.get(pk=user_pk))
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


@pytest.mark.asyncio
async def test_the_admin_send_page_offers_and_sends_the_2_1_commands(charge_point):
    @sync_to_async
    def page_and_user():
        user = grant(
            StaffUserFactory(organisation=charge_point.organisation), "add_ocppcommand", "view_ocppcommand"
        )
        client = Client()
        client.force_login(user)
        url = reverse("admin:ocpp_gateway_ocppcommand_send", args=[charge_point.pk])
        return user.pk, url, client.get(url).content.decode(), client.get(url, {"action": "Reset"})

    comm, charger = await booted()
    user_pk, url, page, reset_page = await page_and_user()
    for action in COMMANDS:
        assert action in page
    assert "RemoteStartTransaction" not in page and "GetLog" not in page
    assert reset_page.context["form"].action == "Reset"
    assert "ImmediateAndResume: restart now and resume the transactions" in reset_page.content.decode()
    posting = asyncio.ensure_future(
        in_thread(_admin_post)(
            user_pk, url, {"action": "Reset", "type": "ImmediateAndResume", "timeout_s": "10"}
        )
    )
    call = await charger.command("Reset")
    await charger.answer(call, {"status": "Accepted"})
    assert await posting == [("success", 'Reset to CP-1: answered {"status": "Accepted"}')]
    command = await sync_to_async(OcppCommand.objects.get)()
    assert (command.status, command.source, command.requested_by_id) == (
        CommandStatus.ANSWERED,
        "admin",
        user_pk,
    )
    await comm.disconnect()


def test_the_2_1_forms_build_2_1_payloads(staff_a):
    cp = ChargePointFactory(organisation=staff_a.organisation, ocpp_protocol=V21)
    EvseFactory(charge_point=cp, evse_id=1)
    EvseFactory(charge_point=cp, evse_id=2)
    catalogue = catalogue_for(cp)
    assert sorted(catalogue) == sorted([*COMMANDS, "ClearCache", "GetBaseReport", "UnlockConnector"])
    context = CommandContext(charge_point=cp, actor=staff_a)
    for action, spec in catalogue.items():
        valid, expected, invalid, field, message = V201_CASES[action]
        form = spec.form_class(valid, context=context)
        assert form.is_valid(), (action, form.errors)
        payload = form.payload  # what send() hands to command_send
        assert payload == expected, action
        own_id = versions.V21.command_id_field(action)
        check(action, {**payload, own_id: 1} if own_id else payload, protocol.CALL)
        refused = spec.form_class(invalid, context=context)
        assert not refused.is_valid()
        assert any(message in str(error) for error in refused.errors.get(field) or []), refused.errors
    # ImmediateAndResume is a 2.1 reset; the 2.0.1 form does not offer it.
    assert catalogue["Reset"].form_class({"type": "ImmediateAndResume"}, context=context).is_valid()
    v201_reset = versions.V201.catalogue["Reset"].form_class({"type": "ImmediateAndResume"}, context=context)
    assert not v201_reset.is_valid()


# --- the driver API --------------------------------------------------------------------------------


def _api(driver_id: int, method: str, path: str, **data: Any) -> tuple[int, dict[str, Any]]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(User.objects.get(pk=driver_id))}")
    response = getattr(client, method)(path, data or None, format="json", HTTP_IDEMPOTENCY_KEY="k-21")
    return response.status_code, response.json()


async def eventually(read, expected, timeout: float = 20.0) -> None:
    """Wait until `read()` returns `expected` (what the charger's messages and the command outcomes set
    is applied off the test's task), at most `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await sync_to_async(read)()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"still {value!r}, not {expected!r}"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_the_driver_app_starts_and_stops_a_2_1_charger(charge_point):
    @sync_to_async
    def setup() -> int:
        cache.clear()
        ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1), status="Available")
        return DriverFactory().pk

    driver_id = await setup()
    comm, charger = await booted()
    code, body = await in_thread(_api)(
        driver_id, "post", "/api/v1/sessions", charge_point=charge_point.pk, connector=1
    )
    assert code == 201 and body["status"] == "STARTING", body
    session_id = body["id"]
    call = await charger.command("RequestStartTransaction")
    assert call[3]["evseId"] == 1 and call[3]["idToken"]["type"] == "Central"
    await charger.answer(call, {"status": "Accepted"})
    started = await charger.call(
        "TransactionEvent",
        event(
            "Started",
            0,
            tx="TX-APP",
            trigger="RemoteStart",
            idToken=call[3]["idToken"],
            evse={"id": 1, "connectorId": 1},
            meterValue=energy(2000, "Transaction.Begin"),
            info={"remoteStartId": call[3]["remoteStartId"], "chargingState": "Charging"},
        ),
    )
    assert started[2]["idTokenInfo"]["status"] == "Accepted"

    def status() -> str:
        return DriverSession.objects.get(pk=session_id).status

    await eventually(status, "ACTIVE")
    code, body = await in_thread(_api)(driver_id, "post", f"/api/v1/sessions/{session_id}/stop")
    assert code == 202 and body["status"] == "STOPPING", body
    stop = await charger.command("RequestStopTransaction")
    assert stop[3] == {"transactionId": "TX-APP"}
    await charger.answer(stop, {"status": "Accepted"})
    await charger.call(
        "TransactionEvent",
        event(
            "Ended",
            1,
            tx="TX-APP",
            ts="2026-11-20T11:00:00Z",
            trigger="RemoteStop",
            meterValue=energy(9000, "Transaction.End", "2026-11-20T11:00:00Z"),
            info={"stoppedReason": "Remote", "chargingState": "Idle"},
        ),
    )
    await eventually(status, "COMPLETED")
    charging = await sync_to_async(lambda: DriverSession.objects.get(pk=session_id).charging_session)()
    assert (charging.protocol, charging.energy_wh) == (V21, 7000)
    await comm.disconnect()


@pytest.mark.asyncio
async def test_accepting_a_pending_2_1_charger_sends_its_password_as_basic_auth_password(charge_point):
    comm, charger = await booted()
    await sync_to_async(ChargePoint.objects.filter(pk=charge_point.pk).update)(registration_status="Pending")
    _cp, key, command = await in_thread(chargepoint_accept)(charge_point=charge_point)
    call = await charger.command("SetVariables")
    item = call[3]["setVariableData"][0]
    assert (item["component"], item["variable"], item["attributeValue"]) == (
        {"name": "SecurityCtrlr"},
        {"name": "BasicAuthPassword"},
        key,
    )
    await charger.answer(
        call,
        {
            "setVariableResult": [
                {"attributeStatus": "Accepted", "component": item["component"], "variable": item["variable"]}
            ]
        },
    )
    outcome = await in_thread(command_wait)(command_id=command.pk, timeout_s=5)
    assert outcome["status"] == CommandStatus.ANSWERED
    cp = await sync_to_async(ChargePoint.objects.get)(pk=charge_point.pk)
    assert keys.verify_key(key, cp.auth_key_hash) and cp.registration_status == "Accepted"
    await comm.disconnect()
