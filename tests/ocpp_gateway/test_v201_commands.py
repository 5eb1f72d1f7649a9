"""OCPP 2.0.1 commands through the same command service, admin page and `ocpp_call` as 1.6: every 2.0.1
catalogue form builds a schema-valid payload or says clearly what is wrong; the send page and the shell
reach a 2.0.1 charger; answers update the device model, apply a new Basic-auth password and record the
local list version; RequestStartTransaction's remoteStartId (the command's id) comes back on the session."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django import db
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from apps.accounts.models import AuditRecord
from apps.charging.models import ChargingSession
from apps.ocpp_gateway import localauth
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.commands_catalog import catalogue_for
from apps.ocpp_gateway.forms import CommandContext, payload_check
from apps.ocpp_gateway.management.commands.ocpp_call import EXIT_INVALID
from apps.ocpp_gateway.masking import mask_payload
from apps.ocpp_gateway.models import DiagnosticsUpload, LocalAuthListMember, OcppCommand
from apps.ocpp_gateway.services import (
    chargepoint_accept,
    command_id_field,
    command_record_outcome,
    command_send,
    command_wait,
)
from apps.ocpp_gateway.versions import V201 as V201_VERSION
from apps.reservations.choices import ReservationStatus
from apps.reservations.models import Reservation
from apps.stations import keys
from apps.stations.models import ChargePoint, DeviceVariable
from cpo import clock
from cpo.exceptions import ValidationFailed
from tests.factories import (
    ChargePointFactory,
    DeviceVariableFactory,
    DiagnosticsUploadFactory,
    EvseFactory,
    FirmwareFileFactory,
    IdTokenFactory,
    LocalAuthListFactory,
    OcppCommandFactory,
    StaffUserFactory,
)
from tests.ocpp_gateway.conftest import KEY, Charger, connect

V201 = "ocpp2.0.1"
BOOT = {"chargingStation": {"model": "AC22", "vendorName": "ACME"}, "reason": "PowerUp"}
PROFILE = {
    "id": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": [
        {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}
    ],
}
TX_PROFILE = {**PROFILE, "chargingProfilePurpose": "TxProfile"}
FUTURE = (clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
PAST = (clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
BASE_URL = "https://cpo.example.com"
NEW_KEY = "NewBasicAuthPassword-2026"


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


def send_url(charge_point) -> str:
    return reverse("admin:ocpp_gateway_ocppcommand_send", args=[charge_point.pk])


def in_thread(fn):
    """Run `fn` as another process would (admin request, shell): its own thread and connection."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


async def booted_v201(key: str = KEY):
    """A 2.0.1 charger connected as CP-1 and accepted (its BootNotification records the protocol)."""
    comm, connected, subprotocol = await connect(key=key, subprotocols=[V201])
    assert connected and subprotocol == V201
    charger = Charger(comm)
    answer = await charger.call("BootNotification", BOOT)
    assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    return comm, charger


# --- every catalogue form ------------------------------------------------------------------------

# action -> (valid input, the payload it must become (None: checked by shape), invalid input,
#            the field that reports the problem, a fragment of the message)
CASES = {
    # The reservation is chosen among the charger's active ones (never typed).
    "CancelReservation": (
        {"reservation": "{reservation}"},
        None,
        {"reservation": "-1"},
        "reservation",
        "Select a valid choice",
    ),
    "ChangeAvailability": (
        {"operational_status": "Inoperative", "evse_id": "1", "connector_id": "1"},
        {"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}},
        {"operational_status": "Operative", "connector_id": "1"},
        "connector_id",
        "Choose the EVSE this connector belongs to.",
    ),
    "ClearCache": ({}, {}, {"timeout_s": "0"}, "timeout_s", "greater than or equal to 1"),
    "ClearChargingProfile": (
        {"evse_id": "0", "charging_profile_purpose": "TxDefaultProfile", "stack_level": "2"},
        {
            "chargingProfileCriteria": {
                "evseId": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "stackLevel": 2,
            }
        },
        {"charging_profile_purpose": "ChargePointMaxProfile"},
        "charging_profile_purpose",
        "Select a valid choice",
    ),
    "CostUpdated": (
        {"transaction_id": "TX-1", "total_cost": "12.34"},
        {"transactionId": "TX-1", "totalCost": 12.34},
        {"transaction_id": "TX-1", "total_cost": "-1"},
        "total_cost",
        "greater than or equal to 0",
    ),
    "DataTransfer": (
        {"vendor_id": "com.acme", "message_id": "ping", "vendor_data": '{"a": [1, 2]}', "data_is_json": "on"},
        {"vendorId": "com.acme", "messageId": "ping", "data": {"a": [1, 2]}},
        {"vendor_id": "com.acme", "vendor_data": "{a", "data_is_json": "on"},
        "vendor_data",
        "This is not JSON",
    ),
    "GetBaseReport": (
        {"report_base": "FullInventory"},
        {"reportBase": "FullInventory"},
        {"report_base": "Everything"},
        "report_base",
        "Select a valid choice",
    ),
    "GetChargingProfiles": (
        {
            "evse_id": "1",
            "charging_profile_purpose": "TxProfile",
            "profile_ids": "3, 4",
            "charging_limit_sources": ["CSO"],
        },
        {
            "evseId": 1,
            "chargingProfile": {
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileId": [3, 4],
                "chargingLimitSource": ["CSO"],
            },
        },
        {"profile_ids": "3, x"},
        "profile_ids",
        "Charging profile ids are whole numbers: x",
    ),
    "GetCompositeSchedule": (
        {"evse_id": "0", "duration": "3600", "charging_rate_unit": "W"},
        {"evseId": 0, "duration": 3600, "chargingRateUnit": "W"},
        {"evse_id": "1", "duration": "0"},
        "duration",
        "greater than or equal to 1",
    ),
    "GetLocalListVersion": ({}, {}, {"timeout_s": "4000"}, "timeout_s", "less than or equal to 3600"),
    "GetLog": (
        {
            "log_type": "SecurityLog",
            "start_time": "2026-01-01T00:00",
            "stop_time": "2026-01-02T00:00",
            "retries": "2",
        },
        None,
        {"log_type": "SecurityLog", "start_time": "2026-01-02T00:00", "stop_time": "2026-01-01T00:00"},
        "stop_time",
        "The end must be after the start.",
    ),
    "GetReport": (
        {
            "component_criteria": ["Problem"],
            "component_variables": "EVSE@1\n\nOCPPCommCtrlr.HeartbeatInterval",
        },
        {
            "componentCriteria": ["Problem"],
            "componentVariable": [
                {"component": {"name": "EVSE", "evse": {"id": 1}}},
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            ],
        },
        {"component_variables": "EVSE@1\nOCPPCommCtrlr..HeartbeatInterval"},
        "component_variables",
        "Line 2: OCPPCommCtrlr..HeartbeatInterval is not Component.Variable",
    ),
    "GetVariables": (
        {
            "variables": "OCPPCommCtrlr.HeartbeatInterval\nConnector:main@1/2.AvailabilityState:x",
            "attribute_type": "Actual",
        },
        {
            "getVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeType": "Actual",
                },
                {
                    "component": {
                        "name": "Connector",
                        "instance": "main",
                        "evse": {"id": 1, "connectorId": 2},
                    },
                    "variable": {"name": "AvailabilityState", "instance": "x"},
                    "attributeType": "Actual",
                },
            ]
        },
        {"variables": "OCPPCommCtrlr", "attribute_type": "Actual"},
        "variables",
        "Line 1: OCPPCommCtrlr names no variable",
    ),
    "RequestStartTransaction": (
        {
            "id_token": "04A1B2C3",
            "id_token_type": "ISO14443",
            "evse_id": "1",
            "group_id_token": "FLEET1",
            "charging_profile": json.dumps(TX_PROFILE),
        },
        {
            "idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},
            "evseId": 1,
            "groupIdToken": {"idToken": "FLEET1", "type": "Central"},
            "chargingProfile": TX_PROFILE,
        },
        {"id_token": "04A1B2C3", "id_token_type": "ISO14443", "charging_profile": json.dumps(PROFILE)},
        "charging_profile",
        "A charging profile sent with a start has purpose TxProfile.",
    ),
    "RequestStopTransaction": (
        {"transaction_id": "TX-1"},
        {"transactionId": "TX-1"},
        {"transaction_id": "T" * 37},
        "transaction_id",
        "at most 36 characters",
    ),
    "ReserveNow": (
        {"expiry_date": FUTURE, "id_token": "04A1B2C3", "id_token_type": "ISO14443", "evse_id": "1"},
        None,
        {"expiry_date": PAST, "id_token": "04A1B2C3", "id_token_type": "ISO14443", "evse_id": "1"},
        "expiry_date",
        "must end in the future",
    ),
    "Reset": (
        {"type": "OnIdle", "evse_id": "2"},
        {"type": "OnIdle", "evseId": 2},
        {"type": "Soft"},
        "type",
        "Select a valid choice",
    ),
    "SendLocalList": (
        {"update_type": "Full"},
        None,
        {"update_type": "Differential"},
        "update_type",
        "has not accepted a version",
    ),
    "SetChargingProfile": (
        {"evse_id": "0", "charging_profile": json.dumps(PROFILE)},
        {"evseId": 0, "chargingProfile": PROFILE},
        {"evse_id": "0", "charging_profile": json.dumps({**PROFILE, "chargingSchedule": []})},
        "__all__",
        "The SetChargingProfile payload is invalid: chargingProfile/chargingSchedule",
    ),
    "SetVariables": (
        {
            "assignments": "OCPPCommCtrlr.HeartbeatInterval = 300\nTxCtrlr.EVConnectionTimeOut=60",
            "attribute_type": "Actual",
            "basic_auth_password": NEW_KEY,
        },
        {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeType": "Actual",
                    "attributeValue": "300",
                },
                {
                    "component": {"name": "TxCtrlr"},
                    "variable": {"name": "EVConnectionTimeOut"},
                    "attributeType": "Actual",
                    "attributeValue": "60",
                },
                {
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                    "attributeValue": NEW_KEY,
                },
            ]
        },
        {"attribute_type": "Actual", "basic_auth_password": "too-short"},
        "basic_auth_password",
        "An authorisation key must have 16 to 40 characters.",
    ),
    "TriggerMessage": (
        {"requested_message": "StatusNotification", "evse_id": "1", "connector_id": "1"},
        {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
        {"requested_message": "DiagnosticsStatusNotification"},
        "requested_message",
        "Select a valid choice",
    ),
    "UnlockConnector": (
        {"evse_id": "2", "connector_id": "1"},
        {"evseId": 2, "connectorId": 1},
        {"evse_id": "3", "connector_id": "1"},
        "evse_id",
        "not one of the available",
    ),
    "UpdateFirmware": (
        {"firmware": "{firmware}", "retrieve_date": "2026-12-01T10:00", "install_date": "2026-12-02T03:00"},
        None,
        {"firmware": "{other_firmware}", "retrieve_date": "2026-12-01T10:00"},
        "firmware",
        "This file is for OTHER X9",
    ),
}


def test_every_v201_catalogue_command_has_a_form_case():
    assert set(CASES) == set(V201_VERSION.catalogue)
    assert len(V201_VERSION.catalogue) == 23
    assert all(spec.form_class.version == "2.0.1" for spec in V201_VERSION.catalogue.values())


@pytest.fixture
def catalogue_env(db, staff_a):
    cp = ChargePointFactory(
        organisation=staff_a.organisation,
        identity="CS-FORMS",
        ocpp_protocol=V201,
        vendor="ACME",
        model="AC22",
    )
    EvseFactory(charge_point=cp, evse_id=1)
    EvseFactory(charge_point=cp, evse_id=2)
    local_list = LocalAuthListFactory(organisation=cp.organisation)
    LocalAuthListMember.objects.create(local_list=local_list, charge_point=cp)
    localauth.local_list_set_members(
        local_list=local_list,
        id_tokens=[
            IdTokenFactory(uid="04AA0001", group_id="FLEET1"),
            IdTokenFactory(uid="A" * 30, type="Central"),
        ],
    )
    firmware = FirmwareFileFactory(organisation=cp.organisation, vendor="ACME", model="AC22", version="2.0")
    other = FirmwareFileFactory(organisation=cp.organisation, vendor="OTHER", model="X9", version="9.9")
    IdTokenFactory(uid="04A1B2C3")
    reservation = Reservation.objects.create(
        organisation=cp.organisation,
        charge_point=cp,
        evse_id=2,
        id_tag="04AA0001",
        status=ReservationStatus.RESERVED,
        expires_at=clock.now() + timedelta(minutes=10),
    )
    return {
        "cp": cp,
        "actor": staff_a,
        "firmware": firmware.pk,
        "other_firmware": other.pk,
        "reservation": reservation.pk,
    }


def _form(action, data, env):
    spec = catalogue_for(env["cp"])[action]
    # "{firmware}" stands for the id of a record the fixture made.
    data = {
        key: str(env[value[1:-1]]) if isinstance(value, str) and value[1:-1] in env else value
        for key, value in data.items()
    }
    context = CommandContext(charge_point=env["cp"], actor=env["actor"], base_url=BASE_URL)
    return spec.form_class(data, context=context)


@pytest.mark.parametrize("action", sorted(CASES))
def test_v201_form_builds_a_schema_valid_payload(action, catalogue_env):
    valid, expected, _invalid, _field, _message = CASES[action]
    form = _form(action, valid, catalogue_env)
    assert form.is_valid(), form.errors
    own_id = command_id_field(action=action, version="2.0.1")
    assert own_id not in form.payload if form.payload is not None else True  # left to command_send
    command = form.send(source="admin")  # offline: recorded with the payload it would have sent
    payload = dict(command.payload)
    payload_check(action=action, payload=payload, version="2.0.1")
    if own_id:
        assert payload.pop(own_id) == command.pk  # command_send gave it the command's id
    if expected is not None:
        assert payload == mask_payload(expected)
    if action == "GetLog":
        assert payload["logType"] == "SecurityLog" and payload["retries"] == 2
        assert payload["log"]["remoteLocation"].startswith(f"{BASE_URL}/ocpp/uploads/diagnostics/")
        assert payload["log"]["oldestTimestamp"] == "2026-01-01T00:00:00.000Z"
        assert payload["log"]["latestTimestamp"] == "2026-01-02T00:00:00.000Z"
        assert DiagnosticsUpload.objects.get(charge_point=catalogue_env["cp"]).command == command
    if action == "UpdateFirmware":
        firmware = payload["firmware"]
        assert firmware["location"].startswith(f"{BASE_URL}/ocpp/firmware/")
        assert firmware["retrieveDateTime"] == "2026-12-01T10:00:00.000Z"
        assert firmware["installDateTime"] == "2026-12-02T03:00:00.000Z"
    if action == "SendLocalList":
        assert payload["updateType"] == "Full" and "listVersion" not in payload
        assert payload["localAuthorizationList"] == [
            {
                "idToken": {"idToken": "04AA0001", "type": "ISO14443"},
                "idTokenInfo": {
                    "status": "Accepted",
                    "groupIdToken": {"idToken": "FLEET1", "type": "Central"},
                },
            },
            {"idToken": {"idToken": "A" * 30, "type": "Central"}, "idTokenInfo": {"status": "Accepted"}},
        ]
        assert form.notes == []  # 2.0.1 takes uids of up to 36 characters: nothing left out
    if action == "ReserveNow":
        # Our id, allocated by the reservations service (the form has no id field).
        reservation = Reservation.objects.get(reserve_command_id=command.pk)
        assert payload["id"] == reservation.pk and payload["expiryDateTime"].endswith("Z")
        assert payload["idToken"] == {"idToken": "04A1B2C3", "type": "ISO14443"}
        assert payload["evseId"] == 1
    if action == "CancelReservation":
        assert payload == {"reservationId": catalogue_env["reservation"]}


@pytest.mark.parametrize("action", sorted(CASES))
def test_v201_form_reports_invalid_input_clearly(action, catalogue_env):
    _valid, _expected, invalid, field, message = CASES[action]
    form = _form(action, invalid, catalogue_env)
    assert not form.is_valid()
    errors = form.errors.get(field) or []
    assert any(message in str(error) for error in errors), form.errors
    assert form.payload is None


def test_set_variables_keeps_the_password_out_of_the_variables_field(catalogue_env):
    form = _form(
        "SetVariables",
        {"assignments": f"SecurityCtrlr.BasicAuthPassword = {NEW_KEY}", "attribute_type": "Actual"},
        catalogue_env,
    )
    assert not form.is_valid()
    assert form.errors["assignments"] == ["Set BasicAuthPassword in its own field, where it is hidden."]
    empty = _form("SetVariables", {"attribute_type": "Actual"}, catalogue_env)
    assert not empty.is_valid()
    assert empty.errors["__all__"] == ["Give at least one variable to set, or a new password."]


def test_send_page_offers_the_v201_catalogue(client, catalogue_env):
    user = grant(catalogue_env["actor"], "add_ocppcommand", "view_ocppcommand")
    client.force_login(user)
    page = client.get(send_url(catalogue_env["cp"])).content.decode()
    assert "RequestStartTransaction" in page and "GetVariables" in page
    assert "RemoteStartTransaction" not in page and "ChangeConfiguration" not in page
    page = client.get(send_url(catalogue_env["cp"]), {"action": "Reset"}).content.decode()
    assert "OnIdle: restart once no transaction is running" in page and "EVSE 2" in page
    for action in V201_VERSION.catalogue:
        page = client.get(send_url(catalogue_env["cp"]), {"action": action})
        assert page.status_code == 200 and page.context["form"].action == action
    page = client.get(send_url(catalogue_env["cp"]), {"action": "GetVariables"}).content.decode()
    assert "Connector@1/2.AvailabilityState" in page  # the reference syntax is explained on the form
    # A 1.6 command is no command for this charger: no form, nothing sent.
    response = client.post(send_url(catalogue_env["cp"]), {"action": "RemoteStartTransaction", "id_tag": "X"})
    assert response.status_code == 200 and response.context["form"] is None
    assert not OcppCommand.objects.exists()


# --- the command service -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_command_id_becomes_remote_start_id_and_request_id():
    cp = ChargePointFactory(ocpp_protocol=V201)
    start = command_send(
        charge_point=cp,
        action="RequestStartTransaction",
        payload={"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}},
    )
    log = command_send(
        charge_point=cp,
        action="GetLog",
        payload={"logType": "DiagnosticsLog", "log": {"remoteLocation": "https://cpo.example.com/up"}},
    )
    explicit = command_send(
        charge_point=cp,
        action="RequestStartTransaction",
        payload={"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}, "remoteStartId": 99},
    )
    assert start.payload["remoteStartId"] == start.pk
    assert log.payload["requestId"] == log.pk and log.pk > start.pk
    assert explicit.payload["remoteStartId"] == 99  # the caller's own id is kept
    with pytest.raises(ValidationFailed) as refused:
        command_send(charge_point=cp, action="RequestStartTransaction", payload={})
    # Only what the caller must give is reported; the id the service fills in is not.
    assert refused.value.detail == (
        "The RequestStartTransaction payload is invalid: payload: 'idToken' is a required property"
    )
    assert OcppCommand.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_an_invalid_new_password_is_refused_before_anything_is_stored():
    cp = ChargePointFactory(ocpp_protocol=V201)
    payload = {
        "setVariableData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "attributeValue": "short",
            }
        ]
    }
    with pytest.raises(ValidationFailed, match="16 to 40 characters"):
        command_send(charge_point=cp, action="SetVariables", payload=payload)
    assert not OcppCommand.objects.exists()
    assert not AuditRecord.objects.filter(action="ocpp.SetVariables").exists()


def _password_command(cp):
    """A SetVariables of a new password, sent and awaiting its answer (as command_send leaves it)."""
    return OcppCommandFactory(
        charge_point=cp,
        action="SetVariables",
        payload={
            "setVariableData": [
                {
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                    "attributeValue": "***",
                }
            ]
        },
        new_key_hash=keys.hash_key(NEW_KEY),
        status=CommandStatus.SENT,
        response=None,
        completed_at=None,
    )


@pytest.mark.parametrize(
    ("attribute_status", "applied"), [("Accepted", True), ("RebootRequired", True), ("Rejected", False)]
)
def test_new_password_is_applied_only_when_the_charger_stores_it(db, attribute_status, applied):
    cp = ChargePointFactory(ocpp_protocol=V201)
    command = _password_command(cp)
    result = {
        "attributeStatus": attribute_status,
        "component": {"name": "SecurityCtrlr"},
        "variable": {"name": "BasicAuthPassword"},
    }
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"setVariableResult": [result]},
    )
    cp.refresh_from_db()
    assert keys.verify_key(NEW_KEY, cp.auth_key_hash) is applied
    assert keys.verify_key(KEY, cp.auth_key_hash) is not applied
    assert AuditRecord.objects.filter(action="chargepoint.key_changed").exists() is applied
    assert not DeviceVariable.objects.filter(variable="BasicAuthPassword").exists()


def test_get_log_answer_keeps_the_announced_file_name(db):
    cp = ChargePointFactory(ocpp_protocol=V201)
    command = OcppCommandFactory(
        charge_point=cp, action="GetLog", status=CommandStatus.SENT, response=None, completed_at=None
    )
    upload = DiagnosticsUploadFactory(charge_point=cp, command=command)
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"status": "Accepted", "filename": "security-2026.log"},
    )
    upload.refresh_from_db()
    assert upload.announced_filename == "security-2026.log"


def test_v201_local_list_differential_deletes_by_id_token_and_records_the_accepted_version(db):
    cp = ChargePointFactory(ocpp_protocol=V201)
    local_list = LocalAuthListFactory(organisation=cp.organisation)
    member = LocalAuthListMember.objects.create(local_list=local_list, charge_point=cp)
    kept, dropped = IdTokenFactory(uid="04AA0001"), IdTokenFactory(uid="EMAID-1", type="eMAID")
    localauth.local_list_set_members(local_list=local_list, id_tokens=[kept, dropped])
    full = localauth.local_list_payload(member=member, update_type=localauth.FULL)
    command = OcppCommandFactory(
        charge_point=cp,
        action="SendLocalList",
        payload=full.payload,
        status=CommandStatus.SENT,
        response=None,
    )
    localauth.local_list_sent(prepared=full, command=command)
    command_record_outcome(
        command_id=command.pk, status=CommandStatus.ANSWERED, response={"status": "Accepted"}
    )
    member.refresh_from_db()
    assert member.accepted_version == full.version == full.payload["versionNumber"]

    localauth.local_list_set_members(local_list=local_list, id_tokens=[kept])
    changes = localauth.local_list_payload(member=member, update_type=localauth.DIFFERENTIAL)
    assert changes.payload == {
        "versionNumber": full.version + 1,
        "updateType": "Differential",
        "localAuthorizationList": [{"idToken": {"idToken": "EMAID-1", "type": "eMAID"}}],
    }
    payload_check(action="SendLocalList", payload=changes.payload, version="2.0.1")

    accept = OcppCommandFactory(
        charge_point=cp,
        action="SendLocalList",
        payload=changes.payload,
        status=CommandStatus.SENT,
        response=None,
    )
    localauth.local_list_sent(prepared=changes, command=accept)
    command_record_outcome(
        command_id=accept.pk, status=CommandStatus.ANSWERED, response={"status": "Accepted"}
    )
    member.refresh_from_db()
    assert member.accepted_version == changes.version
    nothing = localauth.local_list_payload(member=member, update_type=localauth.DIFFERENTIAL)
    # An empty 2.0.1 list is left out (the schema wants at least one element when it is there).
    assert nothing.payload == {"versionNumber": full.version + 1, "updateType": "Differential"}
    payload_check(action="SendLocalList", payload=nothing.payload, version="2.0.1")


# --- with a 2.0.1 charger on the line ------------------------------------------------------------


def _admin_post(user_pk, url, data):
    from apps.accounts.models import User

    client = Client()
    client.force_login(User.objects.get(pk=user_pk))
    response = client.post(url, data, follow=True)
    return response.status_code, [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_send_page_round_trip_and_get_variables_answer_updates_the_device_model(charge_point):
    @sync_to_async
    def setup():
        user = grant(
            StaffUserFactory(organisation=charge_point.organisation), "add_ocppcommand", "view_ocppcommand"
        )
        # What NotifyReport said earlier about the variable stays; only the value changes.
        DeviceVariableFactory(
            charge_point=charge_point,
            component="OCPPCommCtrlr",
            variable="HeartbeatInterval",
            value="60",
            mutability="ReadWrite",
            data_type="integer",
        )
        return user.pk

    user_pk = await setup()
    comm, charger = await booted_v201()
    posting = asyncio.ensure_future(
        in_thread(_admin_post)(
            user_pk,
            send_url(charge_point),
            {
                "action": "GetVariables",
                "variables": "\n".join(
                    [
                        "OCPPCommCtrlr.HeartbeatInterval",
                        "EVSE@1.AvailabilityState",
                        "TxCtrlr.EVConnectionTimeOut",
                    ]
                ),
                "attribute_type": "Actual",
                "timeout_s": "10",
            },
        )
    )
    call = await charger.receive()
    assert call[0] == 2 and call[2] == "GetVariables"
    assert [item["variable"]["name"] for item in call[3]["getVariableData"]] == [
        "HeartbeatInterval",
        "AvailabilityState",
        "EVConnectionTimeOut",
    ]
    assert call[3]["getVariableData"][1]["component"] == {"name": "EVSE", "evse": {"id": 1}}
    answer = {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "attributeValue": "300",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
            {
                "attributeStatus": "Accepted",
                "attributeValue": "Available",
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "AvailabilityState"},
            },
            {
                "attributeStatus": "UnknownVariable",
                "component": {"name": "TxCtrlr"},
                "variable": {"name": "EVConnectionTimeOut"},
            },
        ]
    }
    await charger.send_raw(json.dumps([3, call[1], answer]))
    status, texts = await posting
    assert status == 200
    # One variable is unknown to the charger: the operator is warned, not congratulated.
    assert texts == [("warning", f"GetVariables to CP-1: answered {json.dumps(answer)}")]

    @sync_to_async
    def stored():
        command = OcppCommand.objects.get()
        rows = sorted(
            DeviceVariable.objects.filter(charge_point=charge_point).values_list(
                "component", "evse_id", "variable", "attribute_type", "value", "mutability", "data_type"
            ),
            key=str,
        )
        return command, rows

    command, rows = await stored()
    assert (command.status, command.source, command.requested_by_id) == (
        CommandStatus.ANSWERED,
        "admin",
        user_pk,
    )
    assert rows == [
        ("EVSE", 1, "AvailabilityState", "Actual", "Available", "", ""),
        ("OCPPCommCtrlr", None, "HeartbeatInterval", "Actual", "300", "ReadWrite", "integer"),
    ]
    await comm.disconnect()


def _ocpp_call(*args: str) -> tuple[int, str, str]:
    out = StringIO()
    try:
        call_command("ocpp_call", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), ""


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_ocpp_call_remote_start_links_the_session_by_remote_start_id(charge_point):
    await sync_to_async(IdTokenFactory)(uid="04A1B2C3")
    comm, charger = await booted_v201()
    start = {"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}, "evseId": 1}
    calling = asyncio.ensure_future(
        in_thread(_ocpp_call)("CP-1", "RequestStartTransaction", json.dumps(start), "--timeout", "10")
    )
    call = await charger.receive()
    assert call[2] == "RequestStartTransaction"
    remote_start_id = call[3]["remoteStartId"]
    assert call[3] == {**start, "remoteStartId": remote_start_id}
    await charger.send_raw(json.dumps([3, call[1], {"status": "Accepted"}]))
    code, out, problem = await calling
    assert (code, problem) == (0, "")
    outcome = json.loads(out)
    assert outcome["status"] == "answered" and outcome["response"] == {"status": "Accepted"}

    command = await sync_to_async(OcppCommand.objects.get)()
    assert remote_start_id == command.pk == outcome["id"]
    assert command.payload["remoteStartId"] == command.pk and command.source == "cli"

    started = await charger.call(
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": "2026-11-20T10:00:00Z",
            "triggerReason": "RemoteStart",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "TX-REMOTE", "remoteStartId": remote_start_id},
            "idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
        },
    )
    assert started[0] == 3 and started[2]["idTokenInfo"]["status"] == "Accepted"
    session = await sync_to_async(ChargingSession.objects.get)(transaction_ref="TX-REMOTE")
    assert session.remote_start_id == command.pk and session.id_tag == "04A1B2C3"
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
def test_ocpp_call_checks_the_payload_against_the_chargers_version(charge_point):
    ChargePoint.objects.filter(pk=charge_point.pk).update(ocpp_protocol=V201)
    code, out, problem = _ocpp_call("CP-1", "RemoteStartTransaction", '{"idTag": "04A1B2C3"}')
    assert (code, out) == (EXIT_INVALID, "")
    assert "RemoteStartTransaction is not an OCPP 2.0.1 command." in problem
    code, _out, problem = _ocpp_call("CP-1", "Reset", '{"type": "Soft"}')
    assert code == EXIT_INVALID and "The Reset payload is invalid: type: 'Soft'" in problem
    assert not OcppCommand.objects.exists()


def _send_password(identity: str) -> int:
    cp = ChargePoint.objects.get(identity=identity)
    payload = {
        "setVariableData": [
            {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "attributeValue": "300",
            },
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "attributeValue": NEW_KEY,
            },
        ]
    }
    return command_send(charge_point=cp, action="SetVariables", payload=payload, timeout_s=10).pk


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_set_variables_new_password_is_masked_applied_on_acceptance_and_required_after(charge_point):
    comm, charger = await booted_v201()
    command_id = await in_thread(_send_password)("CP-1")
    call = await charger.receive()
    assert call[2] == "SetVariables"
    assert call[3]["setVariableData"][1]["attributeValue"] == NEW_KEY  # the charger gets the real one
    results = [
        {"attributeStatus": "Accepted", "component": item["component"], "variable": item["variable"]}
        for item in call[3]["setVariableData"]
    ]
    await charger.send_raw(json.dumps([3, call[1], {"setVariableResult": results}]))
    outcome = await in_thread(command_wait)(command_id=command_id, timeout_s=5)
    assert outcome["status"] == CommandStatus.ANSWERED

    @sync_to_async
    def stored():
        cp = ChargePoint.objects.get(pk=charge_point.pk)
        command = OcppCommand.objects.get(pk=command_id)
        variables = list(DeviceVariable.objects.filter(charge_point=cp).values_list("variable", "value"))
        audit = AuditRecord.objects.filter(action="chargepoint.key_changed").count()
        return cp, command, variables, audit

    cp, command, variables, audits = await stored()
    assert command.payload["setVariableData"][1]["attributeValue"] == "***"  # never stored in clear
    assert NEW_KEY not in json.dumps(command.payload)
    assert keys.verify_key(NEW_KEY, cp.auth_key_hash) and not keys.verify_key(KEY, cp.auth_key_hash)
    assert cp.security_profile >= 1 and audits == 1
    assert variables == [("HeartbeatInterval", "300")]  # the password is not part of the device model
    await comm.disconnect()

    _refused, connected, _ = await connect(key=KEY, subprotocols=[V201])
    assert not connected
    comm, connected, _ = await connect(key=NEW_KEY, subprotocols=[V201])
    assert connected
    await comm.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_accepting_a_pending_v201_charger_sends_its_password_as_basic_auth_password(charge_point):
    comm, charger = await booted_v201()
    await sync_to_async(ChargePoint.objects.filter(pk=charge_point.pk).update)(registration_status="Pending")
    _cp, key, command = await in_thread(chargepoint_accept)(charge_point=charge_point)
    call = await charger.receive()
    assert call[2] == "SetVariables" and call[3] == {
        "setVariableData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "attributeValue": key,
            }
        ]
    }
    result = {
        "attributeStatus": "Accepted",
        **{k: call[3]["setVariableData"][0][k] for k in ("component", "variable")},
    }
    await charger.send_raw(json.dumps([3, call[1], {"setVariableResult": [result]}]))
    outcome = await in_thread(command_wait)(command_id=command.pk, timeout_s=5)
    assert outcome["status"] == CommandStatus.ANSWERED
    cp = await sync_to_async(ChargePoint.objects.get)(pk=charge_point.pk)
    assert keys.verify_key(key, cp.auth_key_hash) and cp.registration_status == "Accepted"
    await comm.disconnect()
