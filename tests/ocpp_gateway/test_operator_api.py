"""The operator API (/api/v1/operator/): staff API tokens only, each endpoint's answers and filters,
commands through the command service (201 at once, 409 offline, 404 foreign, 400 naming the member)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.choices import IdTokenStatus
from apps.accounts.models import AuditRecord, IdToken
from apps.accounts.services import api_token_create, api_token_revoke
from apps.ocpp_gateway.choices import CommandStatus, Direction
from apps.ocpp_gateway.models import OcppCommand
from cpo import clock
from tests.factories import (
    ChargePointFactory,
    ChargingLimitFactory,
    ChargingSessionFactory,
    ConnectorFactory,
    DriverFactory,
    EvseFactory,
    IdTokenFactory,
    OcppCommandFactory,
    OcppMessageFactory,
    ReservationFactory,
)
from tests.ocpp_gateway.operator import API, appear_online, staff_client, token_client

pytestmark = pytest.mark.django_db


# --- who gets in ----------------------------------------------------------------------------------


def test_a_staff_token_gets_in_and_notes_when_it_was_used(org_a):
    user, client = staff_client(org_a)
    response = client.get(API + "charge-points")
    assert response.status_code == 200
    assert user.api_tokens.get().last_used_at is not None


@pytest.mark.parametrize(
    "header",
    ["Token cpo_not-a-real-key", "Token", "Token a b", "Bearer cpo_x", ""],
)
def test_no_or_a_wrong_token_is_401(org_a, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(API + "charge-points")
    assert response.status_code == 401
    assert response.json()["code"] in {"token_invalid", "not_authenticated"}


def test_a_revoked_token_or_a_deactivated_member_is_401(org_a):
    user, client = staff_client(org_a)
    api_token_revoke(token=user.api_tokens.get())
    assert client.get(API + "charge-points").json()["code"] == "token_invalid"

    other, other_client = staff_client(org_a)
    other.is_active = False
    other.save()
    assert other_client.get(API + "charge-points").status_code == 401


def test_driver_jwts_do_not_open_the_operator_api_and_staff_tokens_not_the_driver_api(org_a):
    driver = DriverFactory()
    jwt = APIClient()
    jwt.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(driver)}")
    assert jwt.get(API + "charge-points").status_code == 401
    assert jwt.get("/api/v1/me").status_code == 200  # the same JWT works where it belongs

    _user, staff = staff_client(org_a)
    assert staff.get("/api/v1/me").status_code == 401
    assert staff.get("/api/v1/sessions").status_code == 401


def test_the_admin_session_cookie_does_not_open_the_operator_api(client, staff_a):
    client.force_login(staff_a)
    assert client.get(API + "charge-points").status_code == 401


def test_tokens_are_only_for_staff(org_a):
    from cpo.exceptions import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        api_token_create(user=DriverFactory())
    assert caught.value.code == "not_staff"


# --- charge points ----------------------------------------------------------------------------------


def test_charge_points_show_live_presence_and_connector_statuses(org_a, org_b):
    online = ChargePointFactory(organisation=org_a, identity="A-ONLINE", ocpp_protocol="ocpp1.6")
    evse = EvseFactory(charge_point=online, evse_id=1)
    ConnectorFactory(evse=evse, connector_id=1, status="Faulted", error_code="GroundFailure")
    ChargePointFactory(organisation=org_a, identity="A-OFFLINE")
    ChargePointFactory(organisation=org_b, identity="B-HIDDEN")
    appear_online("A-ONLINE")
    _user, client = staff_client(org_a, role="Finance")

    body = client.get(API + "charge-points").json()

    by_identity = {cp["identity"]: cp for cp in body["results"]}
    assert set(by_identity) == {"A-ONLINE", "A-OFFLINE"}
    assert by_identity["A-ONLINE"]["online"] is True and by_identity["A-ONLINE"]["connected_at"]
    assert by_identity["A-OFFLINE"]["online"] is False and by_identity["A-OFFLINE"]["connected_at"] is None
    assert by_identity["A-ONLINE"]["evses"] == [
        {
            "evse_id": 1,
            "availability": "Operative",
            "connectors": [
                {
                    "connector_id": 1,
                    "status": "Faulted",
                    "error_code": "GroundFailure",
                    "status_info": "",
                    "status_at": None,
                }
            ],
        }
    ]
    online_only = client.get(API + "charge-points", {"online": "true"}).json()["results"]
    assert [cp["identity"] for cp in online_only] == ["A-ONLINE"]
    assert client.get(API + "charge-points/A-ONLINE").json()["online"] is True
    assert client.get(API + "charge-points/B-HIDDEN").status_code == 404
    assert client.get(API + "charge-points/NOPE").json()["code"] == "charge_point_not_found"
    assert client.get(API + "charge-points", {"location": "x"}).json()["fields"] == {
        "location": ["A valid integer is required."]
    }


# --- commands --------------------------------------------------------------------------------------


def test_a_command_to_a_connected_charger_is_answered_201_at_once_with_its_id(org_a):
    cp = ChargePointFactory(organisation=org_a, identity="A-1")
    appear_online("A-1")
    user, client = staff_client(org_a, role="Technician")

    response = client.post(
        API + "charge-points/A-1/commands", {"action": "Reset", "payload": {"type": "Soft"}}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    command = OcppCommand.objects.get(pk=body["id"])
    assert (command.charge_point, command.action, command.payload) == (cp, "Reset", {"type": "Soft"})
    assert (command.source, command.requested_by, command.status) == ("api", user, CommandStatus.SENT)
    assert body["status"] == "sent" and body["requested_by"] == user.email
    audit = AuditRecord.objects.get(action="ocpp.Reset")
    assert (audit.actor, audit.source, audit.detail) == (user, "api", {"command_id": command.pk})

    outcome = client.get(API + f"commands/{command.pk}").json()
    assert outcome["id"] == command.pk and outcome["status"] == "sent"


def test_the_outcome_is_read_back_once_final(org_a):
    command = OcppCommandFactory(
        charge_point=ChargePointFactory(organisation=org_a),
        status=CommandStatus.ANSWERED,
        response={"status": "Rejected"},
    )
    _user, client = staff_client(org_a, role="Support")
    body = client.get(API + f"commands/{command.pk}").json()
    assert (body["status"], body["response"]) == ("answered", {"status": "Rejected"})
    listed = client.get(API + "commands", {"charge_point": command.charge_point.identity}).json()
    assert [c["id"] for c in listed["results"]] == [command.pk]


def test_an_offline_charger_is_409_charger_offline_and_the_command_is_recorded(org_a):
    ChargePointFactory(organisation=org_a, identity="A-OFF")
    _user, client = staff_client(org_a)

    response = client.post(
        API + "charge-points/A-OFF/commands", {"action": "Reset", "payload": {"type": "Hard"}}, format="json"
    )

    assert response.status_code == 409 and response.json()["code"] == "charger_offline"
    command = OcppCommand.objects.get()
    assert command.status == CommandStatus.CHARGER_OFFLINE
    assert str(command.pk) in response.json()["detail"]
    assert AuditRecord.objects.filter(action="ocpp.Reset").count() == 1


def test_an_unknown_or_foreign_charger_is_404_and_nothing_is_recorded(org_a, org_b):
    ChargePointFactory(organisation=org_b, identity="B-1")
    appear_online("B-1")
    _user, client = staff_client(org_a)
    for identity in ("B-1", "NOBODY"):
        response = client.post(
            API + f"charge-points/{identity}/commands",
            {"action": "Reset", "payload": {"type": "Soft"}},
            format="json",
        )
        assert response.status_code == 404 and response.json()["code"] == "charge_point_not_found"
    assert not OcppCommand.objects.exists() and not AuditRecord.objects.filter(action="ocpp.Reset").exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "Medium"}, "payload.type"),
        ({}, "payload.type"),
        ({"type": "Soft", "extra": 1}, "payload.extra"),
    ],
)
def test_a_payload_that_breaks_the_schema_is_400_naming_the_member(org_a, payload, field):
    ChargePointFactory(organisation=org_a, identity="A-1")
    appear_online("A-1")
    _user, client = staff_client(org_a)

    response = client.post(
        API + "charge-points/A-1/commands", {"action": "Reset", "payload": payload}, format="json"
    )

    body = response.json()
    assert response.status_code == 400 and body["code"] == "invalid_payload", body
    assert field in body["fields"] and "payload" in body["fields"]
    assert not OcppCommand.objects.exists()


def test_a_nested_member_is_named_with_its_path(org_a):
    ChargePointFactory(organisation=org_a, identity="A-201", ocpp_protocol="ocpp2.0.1")
    appear_online("A-201")
    _user, client = staff_client(org_a)
    response = client.post(
        API + "charge-points/A-201/commands",
        {"action": "RequestStartTransaction", "payload": {"idToken": {"idToken": "04A1", "type": "Bogus"}}},
        format="json",
    )
    assert response.status_code == 400
    assert "payload.idToken.type" in response.json()["fields"]


def test_an_action_the_chargers_version_does_not_take_is_400_unknown_action(org_a):
    ChargePointFactory(organisation=org_a, identity="A-16", ocpp_protocol="ocpp1.6")
    appear_online("A-16")
    _user, client = staff_client(org_a)
    for action in ("GetVariables", "BootNotification", "Nonsense"):
        response = client.post(API + "charge-points/A-16/commands", {"action": action}, format="json")
        assert response.status_code == 400 and response.json()["code"] == "unknown_action"
        assert "action" in response.json()["fields"]
    response = client.post(API + "charge-points/A-16/commands", {"payload": {}}, format="json")
    assert response.status_code == 400 and "action" in response.json()["fields"]


def test_a_2_0_1_charger_gets_its_own_commands_with_the_id_filled_in(org_a):
    ChargePointFactory(organisation=org_a, identity="A-201", ocpp_protocol="ocpp2.0.1")
    appear_online("A-201")
    _user, client = staff_client(org_a)
    response = client.post(
        API + "charge-points/A-201/commands",
        {
            "action": "RequestStartTransaction",
            "payload": {"idToken": {"idToken": "04A1", "type": "ISO14443"}},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["payload"]["remoteStartId"] == response.json()["id"]


# --- transactions, reservations, profiles, messages ------------------------------------------------


def test_transactions_are_filtered_by_charger_token_and_state(org_a, org_b):
    cp1 = ChargePointFactory(organisation=org_a, identity="A-1")
    cp2 = ChargePointFactory(organisation=org_a, identity="A-2")
    active = ChargingSessionFactory(charge_point=cp1, id_tag="04AAAA")
    done = ChargingSessionFactory(charge_point=cp2, id_tag="04BBBB", status="COMPLETED", meter_stop_wh=5000)
    foreign = ChargingSessionFactory(charge_point=ChargePointFactory(organisation=org_b), id_tag="04AAAA")
    _user, client = staff_client(org_a, role="Finance")

    def ids(**params):
        response = client.get(API + "transactions", params)
        assert response.status_code == 200, response.json()
        return {t["id"] for t in response.json()["results"]}

    assert ids() == {active.pk, done.pk}
    assert ids(charge_point="A-2") == {done.pk}
    assert ids(token="04aaaa") == {active.pk}
    assert ids(state="COMPLETED") == {done.pk}
    assert client.get(API + "transactions", {"state": "Nope"}).json()["fields"].keys() == {"state"}
    assert client.get(API + f"transactions/{done.pk}").json()["energy_wh"] == 4000
    assert client.get(API + f"transactions/{foreign.pk}").status_code == 404


def test_reservations_and_charging_profiles_are_read(org_a, org_b):
    mine = ReservationFactory(charge_point=ChargePointFactory(organisation=org_a, identity="A-R"))
    ReservationFactory(charge_point=ChargePointFactory(organisation=org_b))
    profile = ChargingLimitFactory(charge_point=ChargePointFactory(organisation=org_a, identity="A-P"))
    ChargingLimitFactory(charge_point=ChargePointFactory(organisation=org_b))
    _user, client = staff_client(org_a)

    reservations = client.get(API + "reservations").json()["results"]
    assert [(r["id"], r["charge_point"], r["status"]) for r in reservations] == [(mine.pk, "A-R", "RESERVED")]
    profiles = client.get(API + "charging-profiles", {"charge_point": "A-P"}).json()["results"]
    assert [(p["id"], p["limit_a"], p["status"]) for p in profiles] == [(profile.pk, "16.0", "accepted")]
    assert client.get(API + f"charging-profiles/{profile.pk}").json()["purpose"] == "TxProfile"


def test_the_message_log_is_filtered_and_paginated(org_a, org_b):
    cp = ChargePointFactory(organisation=org_a, identity="A-M")
    now = clock.now()
    for n in range(5):
        OcppMessageFactory(charge_point=cp, action="Heartbeat", at=now - timedelta(minutes=n))
    OcppMessageFactory(charge_point=cp, action="Reset", direction=Direction.OUT, at=now)
    OcppMessageFactory(charge_point=ChargePointFactory(organisation=org_b), action="Heartbeat", at=now)
    _user, client = staff_client(org_a, role="Technician")

    first = client.get(API + "messages", {"action": "Heartbeat", "page_size": 3}).json()
    assert len(first["results"]) == 3 and first["next"]
    rest = client.get(first["next"]).json()
    assert len(rest["results"]) == 2 and rest["next"] is None
    assert {m["charge_point"] for m in first["results"] + rest["results"]} == {"A-M"}
    outgoing = client.get(API + "messages", {"direction": "out"}).json()["results"]
    assert [m["action"] for m in outgoing] == ["Reset"]
    recent = client.get(API + "messages", {"since": (now - timedelta(seconds=90)).isoformat()}).json()
    assert len(recent["results"]) == 3  # two heartbeats and the Reset
    assert client.get(API + "messages", {"since": "yesterday"}).json()["fields"].keys() == {"since"}


# --- id tokens -------------------------------------------------------------------------------------


def test_tokens_are_created_blocked_and_expired_also_into_the_past(org_a):
    _user, client = staff_client(org_a)

    created = client.post(API + "tokens", {"uid": "04:a1:b2:c3", "label": "Fleet 1"}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["uid"], body["status"], body["organisation"]) == ("04A1B2C3", "Accepted", org_a.slug)
    assert body["label"] == "Fleet 1"
    token = IdToken.objects.get(pk=body["id"])

    blocked = client.post(API + f"tokens/{token.pk}/block")
    assert blocked.status_code == 200 and blocked.json()["status"] == "Blocked"

    past = clock.now() - timedelta(days=1)
    expired = client.post(API + f"tokens/{token.pk}/expire", {"expires_at": past.isoformat()}, format="json")
    assert expired.status_code == 200
    token.refresh_from_db()
    assert token.expires_at == past
    assert [r.action for r in AuditRecord.objects.filter(target_id=str(token.pk)).order_by("at", "pk")] == [
        "idtoken.create",
        "idtoken.block",
        "idtoken.expire",
    ]
    again = client.post(API + "tokens", {"uid": "04A1B2C3"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "token_exists"


def test_an_accepted_token_expired_in_the_past_is_answered_expired(org_a):
    token = IdTokenFactory(organisation=org_a, status=IdTokenStatus.ACCEPTED)
    _user, client = staff_client(org_a, role="Support")
    response = client.post(API + f"tokens/{token.pk}/expire", {}, format="json")
    assert response.status_code == 200
    assert response.json()["effective_status"] == "Expired" and response.json()["status"] == "Accepted"


def test_token_input_errors_name_the_field(org_a, org_b):
    _user, client = staff_client(org_a)
    bad_uid = client.post(API + "tokens", {"uid": "not hex!"}, format="json").json()
    assert "uid" in bad_uid["fields"]
    bad_type = client.post(API + "tokens", {"uid": "X1", "type": "Card"}, format="json").json()
    assert "type" in bad_type["fields"]
    foreign = client.post(API + "tokens", {"uid": "04A1B2C4", "organisation": org_b.slug}, format="json")
    assert foreign.status_code == 400 and "organisation" in foreign.json()["fields"]
    assert not IdToken.objects.exists()


def test_a_drivers_card_seen_at_our_chargers_cannot_be_blocked_by_us(org_a):
    card = IdTokenFactory(owner=DriverFactory(), organisation=None, label="Jane Doe's card")
    ChargingSessionFactory(
        charge_point=ChargePointFactory(organisation=org_a), id_token=card, id_tag=card.uid
    )
    _user, client = staff_client(org_a)
    shown = client.get(API + f"tokens/{card.pk}")
    assert shown.status_code == 200 and shown.json()["label"] == ""  # the driver's words stay theirs
    assert "Jane" not in shown.content.decode()
    response = client.post(API + f"tokens/{card.pk}/block")
    assert response.status_code == 403 and response.json()["code"] == "token_not_yours"
    card.refresh_from_db()
    assert card.status == IdTokenStatus.ACCEPTED


def test_a_token_created_with_the_command_works_with_the_api(org_a, capsys):
    from django.core.management import call_command

    user, _client = staff_client(org_a)
    call_command("api_token_create", user.email, "--name", "ticketing")
    key = capsys.readouterr().out.strip()
    assert token_client(key).get(API + "charge-points").status_code == 200
