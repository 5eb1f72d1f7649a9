"""Commands from the admin: every catalogue form builds a schema-valid payload or says clearly what is
wrong; the send page round-trips with a charger answering; an offline charger fails at once; the logs
are read-only and tenant-scoped; failed messages replay idempotently; orphan stops are resolved."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django import db
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.accounts.models import AuditRecord
from apps.charging.models import ChargingSession, OrphanStop
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.forms import CommandContext, payload_check
from apps.ocpp_gateway.masking import mask_payload
from apps.ocpp_gateway.models import DiagnosticsUpload, LocalAuthListMember, OcppCommand, OcppFailedMessage
from apps.ocpp_gateway.replay import failed_message_replay
from apps.ocpp_gateway.versions import V16
from apps.reservations.choices import ReservationStatus
from apps.reservations.models import Reservation
from cpo import clock
from tests.factories import (
    ChargePointFactory,
    EvseFactory,
    FirmwareFileFactory,
    IdTokenFactory,
    LocalAuthListFactory,
    OcppCommandFactory,
    OcppFailedMessageFactory,
    OcppMessageFactory,
    OrphanStopFactory,
    StaffUserFactory,
)
from tests.ocpp_gateway.conftest import Charger, connect

PROFILE = {
    "chargingProfileId": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
    },
}
TX_PROFILE = {**PROFILE, "chargingProfilePurpose": "TxProfile"}
FUTURE = (clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
PAST = (clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
BASE_URL = "https://cpo.example.com"


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


def send_url(charge_point) -> str:
    return reverse("admin:ocpp_gateway_ocppcommand_send", args=[charge_point.pk])


# --- every catalogue form ------------------------------------------------------------------------

# action -> (valid input, the payload it must become (None: checked by shape), invalid input,
#            the field that reports the problem, a fragment of the message)
CASES = {
    # The reservation is chosen among the charger's active ones (never typed): "{reservation}" is the
    # fixture's.
    "CancelReservation": (
        {"reservation": "{reservation}"},
        None,
        {"reservation": "999999"},
        "reservation",
        "Select a valid choice",
    ),
    "ChangeAvailability": (
        {"connector_id": "0", "type": "Inoperative"},
        {"connectorId": 0, "type": "Inoperative"},
        {"connector_id": "7", "type": "Operative"},
        "connector_id",
        "not one of the available",
    ),
    "ChangeConfiguration": (
        {"key": "HeartbeatInterval", "value": "120"},
        {"key": "HeartbeatInterval", "value": "120"},
        {"key": "K" * 51, "value": "1"},
        "key",
        "at most 50 characters",
    ),
    "ClearCache": ({}, {}, {"timeout_s": "0"}, "timeout_s", "greater than or equal to 1"),
    "ClearChargingProfile": (
        {"charging_profile_purpose": "TxDefaultProfile", "stack_level": "2"},
        {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2},
        {"charging_profile_purpose": "Sometimes"},
        "charging_profile_purpose",
        "Select a valid choice",
    ),
    "DataTransfer": (
        {"vendor_id": "com.acme", "message_id": "ping", "vendor_data": '{"a": 1}'},
        {"vendorId": "com.acme", "messageId": "ping", "data": '{"a": 1}'},
        {"message_id": "ping"},
        "vendor_id",
        "required",
    ),
    "GetCompositeSchedule": (
        {"connector_id": "1", "duration": "3600", "charging_rate_unit": "W"},
        {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"},
        {"connector_id": "1", "duration": "0"},
        "duration",
        "greater than or equal to 1",
    ),
    "GetConfiguration": (
        {"keys": "HeartbeatInterval\n\nMeterValueSampleInterval\n"},
        {"key": ["HeartbeatInterval", "MeterValueSampleInterval"]},
        {"keys": "K" * 51},
        "keys",
        "at most 50 characters",
    ),
    "GetDiagnostics": (
        {"start_time": "2026-01-01T00:00", "stop_time": "2026-01-02T00:00", "retries": "2"},
        None,
        {"start_time": "2026-01-02T00:00", "stop_time": "2026-01-01T00:00"},
        "stop_time",
        "The end must be after the start.",
    ),
    "GetLocalListVersion": ({}, {}, {"timeout_s": "4000"}, "timeout_s", "less than or equal to 3600"),
    "RemoteStartTransaction": (
        {"id_tag": "04A1B2C3", "connector_id": "1", "charging_profile": json.dumps(TX_PROFILE)},
        {"idTag": "04A1B2C3", "connectorId": 1, "chargingProfile": TX_PROFILE},
        {"id_tag": "04A1B2C3", "charging_profile": '{"chargingProfileId": 1}'},
        "__all__",
        "The RemoteStartTransaction payload is invalid: chargingProfile",
    ),
    "RemoteStopTransaction": (
        {"transaction_id": "42"},
        {"transactionId": 42},
        {"transaction_id": ""},
        "transaction_id",
        "required",
    ),
    "ReserveNow": (
        {"connector_id": "1", "expiry_date": FUTURE, "id_tag": "04A1B2C3"},
        None,
        {"connector_id": "1", "expiry_date": PAST, "id_tag": "04A1B2C3"},
        "expiry_date",
        "must end in the future",
    ),
    "Reset": ({"type": "Hard"}, {"type": "Hard"}, {"type": "Medium"}, "type", "Select a valid choice"),
    "SendLocalList": (
        {"update_type": "Full"},
        None,
        {"update_type": "Differential"},
        "update_type",
        "has not accepted a version",
    ),
    "SetChargingProfile": (
        {"connector_id": "0", "cs_charging_profiles": json.dumps(PROFILE)},
        {"connectorId": 0, "csChargingProfiles": PROFILE},
        {
            "connector_id": "0",
            "cs_charging_profiles": json.dumps({**PROFILE, "chargingProfilePurpose": "Sometimes"}),
        },
        "__all__",
        "csChargingProfiles/chargingProfilePurpose: 'Sometimes' is not one of",
    ),
    "TriggerMessage": (
        {"requested_message": "StatusNotification", "connector_id": "1"},
        {"requestedMessage": "StatusNotification", "connectorId": 1},
        {"requested_message": "SignChargePointCertificate"},
        "requested_message",
        "Select a valid choice",
    ),
    "UnlockConnector": (
        {"connector_id": "2"},
        {"connectorId": 2},
        {"connector_id": "0"},
        "connector_id",
        "not one of the available",
    ),
    "UpdateFirmware": (
        {"firmware": "{firmware}", "retrieve_date": "2026-12-01T10:00"},
        None,
        {"firmware": "{other_firmware}", "retrieve_date": "2026-12-01T10:00"},
        "firmware",
        "This file is for OTHER X9",
    ),
}


def test_every_catalogue_command_has_a_form_case():
    assert set(CASES) == set(V16.catalogue)
    assert len(V16.catalogue) == 19


@pytest.fixture
def catalogue_env(db, staff_a):
    cp = ChargePointFactory(
        organisation=staff_a.organisation, identity="CP-FORMS", vendor="ACME", model="AC22"
    )
    EvseFactory(charge_point=cp, evse_id=1)
    EvseFactory(charge_point=cp, evse_id=2)
    local_list = LocalAuthListFactory(organisation=cp.organisation)
    LocalAuthListMember.objects.create(local_list=local_list, charge_point=cp)
    from apps.ocpp_gateway.localauth import local_list_set_members

    local_list_set_members(local_list=local_list, id_tokens=[IdTokenFactory(uid="04AA0001")])
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
    spec = V16.catalogue[action]
    # "{firmware}" stands for the id of a record the fixture made.
    data = {
        key: str(env[value[1:-1]]) if isinstance(value, str) and value[1:-1] in env else value
        for key, value in data.items()
    }
    context = CommandContext(charge_point=env["cp"], actor=env["actor"], base_url=BASE_URL)
    return spec.form_class(data, context=context)


@pytest.mark.parametrize("action", sorted(CASES))
def test_catalogue_form_builds_a_schema_valid_payload(action, catalogue_env):
    valid, expected, _invalid, _field, _message = CASES[action]
    form = _form(action, valid, catalogue_env)
    assert form.is_valid(), form.errors
    command = form.send(source="admin")  # offline: recorded with the payload it would have sent
    payload = command.payload
    payload_check(action=action, payload=payload, version="1.6")
    if expected is not None:
        assert payload == mask_payload(expected)
    if action == "GetDiagnostics":
        assert payload["location"].startswith(f"{BASE_URL}/ocpp/uploads/diagnostics/")
        assert payload["startTime"] == "2026-01-01T00:00:00.000Z" and payload["retries"] == 2
        assert DiagnosticsUpload.objects.get(charge_point=catalogue_env["cp"]).command == command
    if action == "UpdateFirmware":
        assert payload["location"].startswith(f"{BASE_URL}/ocpp/firmware/")
        assert payload["retrieveDate"] == "2026-12-01T10:00:00.000Z"
    if action == "SendLocalList":
        assert payload["updateType"] == "Full"
        assert payload["localAuthorizationList"] == [
            {"idTag": "04AA0001", "idTagInfo": {"status": "Accepted"}}
        ]
    if action == "ReserveNow":
        # Our id, allocated by the reservations service (the form has no id field).
        reservation = Reservation.objects.get(reserve_command_id=command.pk)
        assert payload["reservationId"] == reservation.pk and payload["expiryDate"].endswith("Z")
        assert payload["idTag"] == "04A1B2C3" and payload["connectorId"] == 1
    if action == "CancelReservation":
        assert payload == {"reservationId": catalogue_env["reservation"]}
        assert Reservation.objects.get(pk=catalogue_env["reservation"]).status == ReservationStatus.CANCELLED


@pytest.mark.parametrize("action", sorted(CASES))
def test_catalogue_form_reports_invalid_input_clearly(action, catalogue_env):
    _valid, _expected, invalid, field, message = CASES[action]
    form = _form(action, invalid, catalogue_env)
    assert not form.is_valid()
    errors = form.errors.get(field) or []
    assert any(message in str(error) for error in errors), form.errors
    assert form.payload is None


# --- the send page -------------------------------------------------------------------------------


@pytest.fixture
def sender(db, staff_a):
    return grant(staff_a, "add_ocppcommand", "view_ocppcommand")


def test_send_page_lists_the_catalogue_and_renders_a_form(client, sender):
    cp = ChargePointFactory(organisation=sender.organisation)
    client.force_login(sender)
    page = client.get(send_url(cp))
    assert page.status_code == 200
    assert "UpdateFirmware" in page.content.decode() and "SendLocalList" in page.content.decode()
    page = client.get(send_url(cp), {"action": "ChangeConfiguration"})
    assert page.status_code == 200
    assert 'name="key"' in page.content.decode() and "HeartbeatInterval" in page.content.decode()


def test_offline_charger_fails_at_once_and_is_audited(client, sender):
    cp = ChargePointFactory(organisation=sender.organisation, identity="CP-OFF")
    client.force_login(sender)
    response = client.post(send_url(cp), {"action": "Reset", "type": "Soft"}, follow=True)
    command = OcppCommand.objects.get(charge_point=cp)
    assert command.status == CommandStatus.CHARGER_OFFLINE
    assert response.redirect_chain[-1][0] == reverse(
        "admin:ocpp_gateway_ocppcommand_change", args=[command.pk]
    )
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["Reset not sent: CP-OFF is offline (charger_offline)."]
    audit = AuditRecord.objects.get(action="ocpp.Reset")
    assert audit.actor == sender and audit.source == "admin" and audit.detail == {"command_id": command.pk}


def test_invalid_input_is_shown_on_the_form_and_nothing_is_sent(client, sender):
    cp = ChargePointFactory(organisation=sender.organisation)
    client.force_login(sender)
    response = client.post(
        send_url(cp),
        {
            "action": "SetChargingProfile",
            "connector_id": "0",
            "cs_charging_profiles": '{"chargingProfileId": 1}',
        },
    )
    assert response.status_code == 200
    assert "The SetChargingProfile payload is invalid" in response.content.decode()
    assert not OcppCommand.objects.exists()
    assert not AuditRecord.objects.filter(action__startswith="ocpp.").exists()


def test_send_page_is_404_for_another_operators_charger_and_403_without_permission(client, sender, staff_b):
    other = ChargePointFactory(organisation=staff_b.organisation)
    client.force_login(sender)
    assert client.get(send_url(other)).status_code == 404
    assert client.post(send_url(other), {"action": "Reset", "type": "Soft"}).status_code == 404
    viewer = grant(StaffUserFactory(organisation=sender.organisation), "view_ocppcommand")
    client.force_login(viewer)
    mine = ChargePointFactory(organisation=sender.organisation)
    assert client.post(send_url(mine), {"action": "Reset", "type": "Soft"}).status_code == 403
    assert not OcppCommand.objects.exists()


def test_command_pages_link_to_the_send_page(client, sender):
    command = OcppCommandFactory(charge_point=ChargePointFactory(organisation=sender.organisation))
    client.force_login(sender)
    page = client.get(reverse("admin:ocpp_gateway_ocppcommand_change", args=[command.pk])).content.decode()
    assert send_url(command.charge_point) in page
    listing = client.get(
        reverse("admin:ocpp_gateway_ocppcommand_changelist"),
        {"charge_point__id__exact": command.charge_point_id},
    ).content.decode()
    assert send_url(command.charge_point) in listing


def in_thread(fn):
    """The admin runs in its own thread with its own connection, as a request would in production."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _admin_post(user_pk, url, data):
    from apps.accounts.models import User

    client = Client()
    client.force_login(User.objects.get(pk=user_pk))
    response = client.post(url, data, follow=True)
    return (
        response.status_code,
        [str(m) for m in get_messages(response.wsgi_request)],
        response.content.decode(),
    )


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_send_page_round_trip_with_a_charger_answering(charge_point):
    @sync_to_async
    def setup():
        user = grant(
            StaffUserFactory(organisation=charge_point.organisation), "add_ocppcommand", "view_ocppcommand"
        )
        return user.pk

    user_pk = await setup()
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "AC22"})
    import asyncio

    posting = asyncio.ensure_future(
        in_thread(_admin_post)(
            user_pk,
            send_url(charge_point),
            {"action": "ChangeAvailability", "connector_id": "0", "type": "Inoperative", "timeout_s": "10"},
        )
    )
    call = await charger.receive()
    assert (
        call[0] == 2
        and call[2] == "ChangeAvailability"
        and call[3] == {"connectorId": 0, "type": "Inoperative"}
    )
    await charger.send_raw(json.dumps([3, call[1], {"status": "Scheduled"}]))
    status, texts, page = await posting
    assert status == 200
    assert texts == ['ChangeAvailability to CP-1: answered {"status": "Scheduled"}']
    assert "Scheduled" in page and "Answered" in page  # the command record is shown

    @sync_to_async
    def stored():
        command = OcppCommand.objects.get()
        audit = AuditRecord.objects.get(action="ocpp.ChangeAvailability")
        return command, audit

    command, audit = await stored()
    assert command.status == CommandStatus.ANSWERED and command.response == {"status": "Scheduled"}
    assert command.requested_by_id == user_pk and command.source == "admin"
    assert audit.actor_id == user_pk and audit.detail == {"command_id": command.pk}
    await comm.disconnect()


# --- logs and tenancy ----------------------------------------------------------------------------


def test_other_operators_commands_and_messages_are_404(client, staff_a, staff_b):
    user = grant(staff_a, "view_ocppcommand", "view_ocppmessage")
    other_cp = ChargePointFactory(organisation=staff_b.organisation)
    command, message = OcppCommandFactory(charge_point=other_cp), OcppMessageFactory(charge_point=other_cp)
    client.force_login(user)
    assert client.get(reverse("admin:ocpp_gateway_ocppcommand_change", args=[command.pk])).status_code == 404
    assert client.get(reverse("admin:ocpp_gateway_ocppmessage_change", args=[message.pk])).status_code == 404
    listing = client.get(reverse("admin:ocpp_gateway_ocppmessage_changelist"), {"q": other_cp.identity})
    assert list(listing.context["cl"].queryset) == []


def test_message_log_filters_and_search(client, staff_a):
    user = grant(staff_a, "view_ocppmessage")
    cp, other = (
        ChargePointFactory(organisation=staff_a.organisation),
        ChargePointFactory(organisation=staff_a.organisation),
    )
    boot = OcppMessageFactory(charge_point=cp, action="BootNotification", unique_id="boot-1")
    out = OcppMessageFactory(charge_point=cp, direction="out", action="Reset", unique_id="reset-1")
    OcppMessageFactory(charge_point=other, action="Heartbeat")
    client.force_login(user)
    url = reverse("admin:ocpp_gateway_ocppmessage_changelist")

    def listed(**params):
        response = client.get(url, params)
        assert response.status_code == 200
        return set(response.context["cl"].queryset.values_list("pk", flat=True))

    assert listed(q=cp.identity.lower()) == {boot.pk, out.pk}
    assert listed(q="reset-1") == {out.pk}
    assert listed(direction__exact="out") == {out.pk}
    assert listed(action="BootNotification") == {boot.pk}
    assert listed(charge_point__id__exact=cp.pk) == {boot.pk, out.pk}
    assert client.get(url).context["cl"].show_full_result_count is False


# --- failed messages -----------------------------------------------------------------------------

START = {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 1000, "timestamp": "2026-03-01T10:00:00Z"}


@pytest.mark.django_db(transaction=True)
def test_replaying_a_failed_message_twice_stores_it_once():
    cp = ChargePointFactory(identity="CP-REPLAY")
    IdTokenFactory(uid="04A1B2C3")
    failed = OcppFailedMessageFactory(charge_point=cp, action="StartTransaction", payload=START)

    failed_message_replay(failed=failed)
    failed.refresh_from_db()
    assert failed.replayed_at is not None and failed.replay_error == ""
    failed_message_replay(failed=failed)

    session = ChargingSession.objects.get(charge_point=cp)
    assert session.meter_start_wh == 1000 and session.id_tag == "04A1B2C3"
    answers = [r.detail["answer"] for r in AuditRecord.objects.filter(action="ocpp.replay.StartTransaction")]
    assert len(answers) == 2
    assert (
        answers[0]
        == answers[1]
        == {"transactionId": session.ocpp16_transaction_id, "idTagInfo": {"status": "Accepted"}}
    )


@pytest.mark.django_db(transaction=True)
def test_replay_of_an_invalid_message_records_the_error():
    failed = OcppFailedMessageFactory(action="StartTransaction", payload={"connectorId": 1})
    failed_message_replay(failed=failed)
    failed.refresh_from_db()
    assert failed.replay_error.startswith("OccurenceConstraintViolation: ")
    assert not ChargingSession.objects.exists()
    assert AuditRecord.objects.get(action="ocpp.replay.StartTransaction").outcome == "failed"


@pytest.mark.django_db(transaction=True)
def test_replay_admin_action(client):
    cp = ChargePointFactory(identity="CP-REPLAY2")
    user = grant(
        StaffUserFactory(organisation=cp.organisation), "view_ocppfailedmessage", "change_ocppfailedmessage"
    )
    failed = OcppFailedMessageFactory(charge_point=cp, action="StartTransaction", payload=START)
    client.force_login(user)
    url = reverse("admin:ocpp_gateway_ocppfailedmessage_changelist")
    for _ in range(2):
        response = client.post(url, {"action": "replay", "_selected_action": [failed.pk]}, follow=True)
        assert [str(m) for m in get_messages(response.wsgi_request)] == ["1 message replayed."]
    assert ChargingSession.objects.filter(charge_point=cp).count() == 1
    assert OcppFailedMessage.objects.get().replay_error == ""


# --- stops for unknown transactions --------------------------------------------------------------


def test_orphan_stop_resolve_action(client, staff_a, staff_b):
    user = grant(staff_a, "view_orphanstop", "change_orphanstop")
    mine = OrphanStopFactory(charge_point=ChargePointFactory(organisation=staff_a.organisation))
    theirs = OrphanStopFactory(charge_point=ChargePointFactory(organisation=staff_b.organisation))
    client.force_login(user)
    url = reverse("admin:charging_orphanstop_changelist")
    response = client.post(
        url, {"action": "mark_resolved", "_selected_action": [mine.pk, theirs.pk]}, follow=True
    )
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["1 stop marked resolved."]
    assert OrphanStop.objects.get(pk=mine.pk).resolved is True
    assert OrphanStop.objects.get(pk=theirs.pk).resolved is False
    audit = AuditRecord.objects.get(action="orphanstop.resolve")
    assert audit.actor == user and audit.detail["orphan_stop_id"] == mine.pk

    response = client.post(url, {"action": "mark_resolved", "_selected_action": [mine.pk]}, follow=True)
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["0 stops marked resolved."]
    assert AuditRecord.objects.filter(action="orphanstop.resolve").count() == 1
