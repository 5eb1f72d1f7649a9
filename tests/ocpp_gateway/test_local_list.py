"""Local authorisation lists: versions grow with every change; full and differential SendLocalList
payloads hold exactly what they should; what each charger accepted or reports is recorded from its
answers; the admin edits lists and sends them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django import db
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.accounts.models import IdToken, User
from apps.ocpp_gateway import localauth
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.forms import payload_check
from apps.ocpp_gateway.models import LocalAuthList, LocalAuthListEntry, LocalAuthListMember, OcppCommand
from apps.ocpp_gateway.services import command_record_outcome
from cpo.exceptions import Conflict
from tests.factories import (
    ChargePointFactory,
    IdTokenFactory,
    LocalAuthListFactory,
    OcppCommandFactory,
    OrganisationFactory,
    StaffUserFactory,
)
from tests.ocpp_gateway.conftest import Charger, connect

EXPIRY = datetime(2027, 1, 31, 23, 0, tzinfo=UTC)


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def setup(db):
    org = OrganisationFactory()
    local_list = LocalAuthListFactory(organisation=org, name="Depot")
    cp = ChargePointFactory(organisation=org, identity="CP-LL")
    member = LocalAuthListMember.objects.create(local_list=local_list, charge_point=cp)
    tokens = {
        "a": IdTokenFactory(uid="04AA0001", group_id="FLEET1", expires_at=EXPIRY),
        "b": IdTokenFactory(uid="04AA0002"),
        "c": IdTokenFactory(uid="04AA0003", status="Blocked"),
    }
    return local_list, member, tokens


def accept(member, prepared):
    """The charger accepted `prepared` (as the command path would record it)."""
    command = OcppCommandFactory(
        charge_point=member.charge_point,
        action="SendLocalList",
        payload=prepared.payload,
        status=CommandStatus.SENT,
        response=None,
        completed_at=None,
    )
    localauth.local_list_sent(prepared=prepared, command=command)
    command_record_outcome(
        command_id=command.pk, status=CommandStatus.ANSWERED, response={"status": "Accepted"}
    )
    member.refresh_from_db()
    return command


def test_version_grows_only_when_the_entries_change(setup):
    local_list, _member, tokens = setup
    assert local_list.version == 1
    local_list = localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"], tokens["b"]])
    assert local_list.version == 2
    assert (
        localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["b"], tokens["a"]]).version
        == 2
    )
    assert localauth.local_list_refresh(local_list=local_list).version == 2
    local_list = localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"]])
    assert local_list.version == 3
    assert LocalAuthListEntry.objects.get(id_tag="04AA0002").removed is True


def test_full_payload_holds_every_active_entry_with_its_current_status(setup):
    local_list, member, tokens = setup
    other_org = OrganisationFactory()
    tokens["b"].valid_at.add(other_org)  # not valid at this operator
    localauth.local_list_set_members(local_list=local_list, id_tokens=list(tokens.values()))
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"], tokens["b"], tokens["c"]])
    prepared = localauth.local_list_payload(member=member, update_type="Full")
    assert prepared.payload == {
        "listVersion": 2,
        "updateType": "Full",
        "localAuthorizationList": [
            {
                "idTag": "04AA0001",
                "idTagInfo": {
                    "status": "Accepted",
                    "parentIdTag": "FLEET1",
                    "expiryDate": "2027-01-31T23:00:00.000Z",
                },
            },
            {"idTag": "04AA0002", "idTagInfo": {"status": "Invalid"}},
            {"idTag": "04AA0003", "idTagInfo": {"status": "Blocked"}},
        ],
    }
    payload_check(action="SendLocalList", payload=prepared.payload, version="1.6")


def test_differential_payload_holds_the_changes_since_the_accepted_version(setup):
    local_list, member, tokens = setup
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"], tokens["b"]])
    accept(member, localauth.local_list_payload(member=member, update_type="Full"))
    assert member.accepted_version == 2

    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"], tokens["c"]])  # -b +c: v3
    IdToken.objects.filter(pk=tokens["a"].pk).update(status="Blocked")  # noticed at send time: v4
    prepared = localauth.local_list_payload(member=member, update_type="Differential")
    assert prepared.payload == {
        "listVersion": 4,
        "updateType": "Differential",
        "localAuthorizationList": [
            {
                "idTag": "04AA0001",
                "idTagInfo": {
                    "status": "Blocked",
                    "parentIdTag": "FLEET1",
                    "expiryDate": "2027-01-31T23:00:00.000Z",
                },
            },
            {"idTag": "04AA0002"},  # no idTagInfo: remove it
            {"idTag": "04AA0003", "idTagInfo": {"status": "Blocked"}},
        ],
    }
    payload_check(action="SendLocalList", payload=prepared.payload, version="1.6")
    accept(member, prepared)
    assert member.accepted_version == 4
    nothing = localauth.local_list_payload(member=member, update_type="Differential")
    assert nothing.payload["localAuthorizationList"] == [] and nothing.version == 4


def test_differential_needs_a_known_accepted_version(setup):
    local_list, member, tokens = setup
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"]])
    with pytest.raises(Conflict, match="send a full update"):
        localauth.local_list_payload(member=member, update_type="Differential")


def test_tokens_too_long_for_ocpp16_are_left_out(setup):
    local_list, member, _tokens = setup
    long_token = IdTokenFactory(uid="A" * 24, type="Central")
    localauth.local_list_set_members(local_list=local_list, id_tokens=[long_token])
    prepared = localauth.local_list_payload(member=member, update_type="Full")
    assert prepared.payload["localAuthorizationList"] == [] and prepared.skipped == ["A" * 24]


def test_answers_update_what_the_charger_holds(setup):
    local_list, member, tokens = setup
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"]])
    accept(member, localauth.local_list_payload(member=member, update_type="Full"))
    assert (member.accepted_version, member.last_status) == (2, "Accepted")

    # The charger reports the version it holds: a match keeps the differential base.
    version = OcppCommandFactory(
        charge_point=member.charge_point,
        action="GetLocalListVersion",
        payload={},
        status=CommandStatus.SENT,
        response=None,
    )
    command_record_outcome(command_id=version.pk, status=CommandStatus.ANSWERED, response={"listVersion": 2})
    member.refresh_from_db()
    assert (member.reported_version, member.accepted_version) == (2, 2)

    # A version we never sent (a reset charger reports 0): the next update must be full.
    version = OcppCommandFactory(
        charge_point=member.charge_point,
        action="GetLocalListVersion",
        payload={},
        status=CommandStatus.SENT,
        response=None,
    )
    command_record_outcome(command_id=version.pk, status=CommandStatus.ANSWERED, response={"listVersion": 0})
    member.refresh_from_db()
    assert (member.reported_version, member.accepted_version) == (0, None)


def test_a_failed_differential_forgets_the_accepted_version(setup):
    local_list, member, tokens = setup
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"]])
    accept(member, localauth.local_list_payload(member=member, update_type="Full"))
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"], tokens["b"]])
    prepared = localauth.local_list_payload(member=member, update_type="Differential")
    command = OcppCommandFactory(
        charge_point=member.charge_point,
        action="SendLocalList",
        payload=prepared.payload,
        status=CommandStatus.SENT,
        response=None,
    )
    localauth.local_list_sent(prepared=prepared, command=command)
    command_record_outcome(
        command_id=command.pk,
        status=CommandStatus.ANSWERED,
        response={"status": "VersionMismatch"},
    )
    member.refresh_from_db()
    assert (member.last_status, member.accepted_version, member.sent_version) == ("VersionMismatch", None, 3)


def test_a_list_sent_by_other_means_is_not_taken_for_ours(setup):
    local_list, member, tokens = setup
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"]])
    accept(member, localauth.local_list_payload(member=member, update_type="Full"))
    foreign = OcppCommandFactory(
        charge_point=member.charge_point,
        action="SendLocalList",
        payload={"listVersion": 99, "updateType": "Full"},
        status=CommandStatus.SENT,
        response=None,
    )
    command_record_outcome(
        command_id=foreign.pk, status=CommandStatus.ANSWERED, response={"status": "Accepted"}
    )
    member.refresh_from_db()
    assert member.accepted_version is None


def test_send_falls_back_to_full_and_skips_chargers_that_are_up_to_date(setup):
    local_list, member, tokens = setup
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"]])
    up_to_date = LocalAuthListMember.objects.create(
        local_list=local_list,
        charge_point=ChargePointFactory(organisation=local_list.organisation, identity="CP-LL2"),
    )
    accept(up_to_date, localauth.local_list_payload(member=up_to_date, update_type="Full"))

    results = localauth.local_list_send(local_list=local_list, update_type="Differential")
    by_charger = {r.charge_point.identity: r for r in results}
    assert by_charger["CP-LL"].update_type == "Full"
    assert by_charger["CP-LL"].command.status == CommandStatus.CHARGER_OFFLINE
    assert by_charger["CP-LL2"].up_to_date is True and by_charger["CP-LL2"].command is None
    member.refresh_from_db()
    assert (member.sent_version, member.sent_update_type) == (2, "Full")


def test_one_charger_is_sent_its_list_by_the_service_every_interface_uses(setup):
    """The admin's SendLocalList form only validates; composing the list and remembering what was sent
    is `local_list_send_to`'s work, as for any other caller."""
    local_list, member, tokens = setup
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"], tokens["b"]])
    command, skipped = localauth.local_list_send_to(member=member, update_type="Full", source="api")
    member.refresh_from_db()
    local_list.refresh_from_db()
    assert skipped == [] and command.action == "SendLocalList" and command.source == "api"
    assert (member.sent_command, member.sent_version, member.sent_update_type) == (
        command,
        local_list.version,
        "Full",
    )
    assert command.payload["listVersion"] == local_list.version


def test_a_refused_differential_list_leaves_nothing_sent(setup):
    _local_list, member, _tokens = setup
    with pytest.raises(Conflict):
        localauth.local_list_send_to(member=member, update_type="Differential")
    member.refresh_from_db()
    assert member.sent_command is None and not OcppCommand.objects.exists()


# --- admin ---------------------------------------------------------------------------------------


def list_data(organisation, name, tokens, chargers=()):
    data = {
        "organisation": organisation.pk,
        "name": name,
        "members": [t.pk for t in tokens],
        "members-TOTAL_FORMS": str(len(chargers)),
        "members-INITIAL_FORMS": "0",
        "members-MIN_NUM_FORMS": "0",
        "members-MAX_NUM_FORMS": "1000",
    }
    for i, cp in enumerate(chargers):
        data[f"members-{i}-charge_point"] = cp.pk
    return data


def test_admin_creates_a_list_with_tokens_and_chargers(client, staff_a):
    user = grant(staff_a, "add_localauthlist", "change_localauthlist", "view_localauthlist", "view_idtoken")
    tokens = [
        IdTokenFactory(uid="04BB0001", organisation=staff_a.organisation),
        IdTokenFactory(uid="04BB0002"),  # a driver's own card, restricted to this operator's network
    ]
    tokens[1].valid_at.add(staff_a.organisation)
    cp = ChargePointFactory(organisation=staff_a.organisation)
    client.force_login(user)
    response = client.post(
        reverse("admin:ocpp_gateway_localauthlist_add"),
        list_data(staff_a.organisation, "Depot", tokens, [cp]),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    local_list = LocalAuthList.objects.get()
    assert local_list.version == 2
    assert sorted(local_list.entries.values_list("id_tag", flat=True)) == ["04BB0001", "04BB0002"]
    assert local_list.members.get().charge_point == cp

    response = client.post(
        reverse("admin:ocpp_gateway_localauthlist_add"),
        list_data(staff_a.organisation, "Second", tokens, [cp]),
    )
    assert response.status_code == 200
    assert "This charge point is already on a local authorisation list." in response.content.decode()
    assert LocalAuthList.objects.count() == 1


def test_admin_refuses_a_charger_of_another_operator(client, staff_a, staff_b, superuser):
    user = grant(staff_a, "add_localauthlist", "change_localauthlist", "view_localauthlist")
    theirs = ChargePointFactory(organisation=staff_b.organisation)
    client.force_login(user)
    response = client.post(
        reverse("admin:ocpp_gateway_localauthlist_add"),
        list_data(staff_a.organisation, "Depot", [], [theirs]),
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    client.force_login(superuser)  # sees every charger, and still may not mix operators
    response = client.post(
        reverse("admin:ocpp_gateway_localauthlist_add"),
        list_data(staff_a.organisation, "Depot", [], [theirs]),
    )
    assert response.status_code == 200
    assert "The charge point belongs to another operator than the list." in response.content.decode()
    assert not LocalAuthList.objects.exists()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_send_action_reaches_the_charger_and_records_its_answer(charge_point):
    @sync_to_async
    def prepare():
        local_list = LocalAuthListFactory(organisation=charge_point.organisation)
        LocalAuthListMember.objects.create(local_list=local_list, charge_point=charge_point)
        localauth.local_list_set_members(local_list=local_list, id_tokens=[IdTokenFactory(uid="04CC0001")])
        user = grant(
            StaffUserFactory(organisation=charge_point.organisation),
            "change_localauthlist",
            "view_localauthlist",
            "add_ocppcommand",
        )
        return local_list.pk, local_list.name, user.pk

    list_pk, list_name, user_pk = await prepare()
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)

    def post_action():
        try:
            client = Client()
            client.force_login(User.objects.get(pk=user_pk))
            response = client.post(
                reverse("admin:ocpp_gateway_localauthlist_changelist"),
                {"action": "send_full", "_selected_action": [list_pk]},
                follow=True,
            )
            return [str(m) for m in get_messages(response.wsgi_request)]
        finally:
            db.connection.close()

    texts = await sync_to_async(post_action, thread_sensitive=False)()
    assert texts == [f"{list_name} sent to CP-1 (Full, version 2)."]
    call = await charger.receive()
    assert call[2] == "SendLocalList"
    assert call[3] == {
        "listVersion": 2,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": "04CC0001", "idTagInfo": {"status": "Accepted"}}],
    }
    await charger.send_raw(json.dumps([3, call[1], {"status": "Accepted"}]))

    @sync_to_async
    def member_state():
        member = LocalAuthListMember.objects.get(charge_point=charge_point)
        return member.accepted_version, member.last_status, OcppCommand.objects.get().status

    for _ in range(50):  # the consumer records the answer right after publishing it
        state = await member_state()
        if state[0] is not None:
            break
        await asyncio.sleep(0.1)
    assert state == (2, "Accepted", CommandStatus.ANSWERED)
    await comm.disconnect()


def test_member_state_is_shown_read_only(client, setup):
    local_list, member, _tokens = setup
    staff = grant(
        StaffUserFactory(organisation=local_list.organisation), "view_localauthlist", "change_localauthlist"
    )
    member.accepted_version, member.accepted_at = 1, datetime.now(UTC) - timedelta(minutes=1)
    member.save()
    client.force_login(staff)
    page = client.get(reverse("admin:ocpp_gateway_localauthlist_change", args=[local_list.pk]))
    assert page.status_code == 200
    assert 'name="members-0-accepted_version"' not in page.content.decode()


def test_a_renamed_or_deleted_token_is_removed_at_the_next_send(setup):
    local_list, member, tokens = setup
    localauth.local_list_set_members(local_list=local_list, id_tokens=[tokens["a"], tokens["b"]])
    accept(member, localauth.local_list_payload(member=member, update_type="Full"))
    IdToken.objects.filter(pk=tokens["a"].pk).update(uid="04AA0009")
    tokens["b"].delete()
    prepared = localauth.local_list_payload(member=member, update_type="Differential")
    assert prepared.version == 3
    assert prepared.payload["localAuthorizationList"] == [
        {"idTag": "04AA0001"},
        {"idTag": "04AA0002"},
        {
            "idTag": "04AA0009",
            "idTagInfo": {
                "status": "Accepted",
                "parentIdTag": "FLEET1",
                "expiryDate": "2027-01-31T23:00:00.000Z",
            },
        },
    ]


def test_admin_keeps_tokens_the_user_cannot_see(client, staff_a, staff_b):
    user = grant(staff_a, "change_localauthlist", "view_localauthlist")
    local_list = LocalAuthListFactory(organisation=staff_a.organisation, name="Shared")
    theirs = IdTokenFactory(uid="04DD0001", organisation=staff_b.organisation)
    mine = IdTokenFactory(uid="04DD0002", organisation=staff_a.organisation)
    localauth.local_list_set_members(local_list=local_list, id_tokens=[theirs])
    client.force_login(user)
    data = list_data(staff_a.organisation, "Shared", [mine])
    response = client.post(reverse("admin:ocpp_gateway_localauthlist_change", args=[local_list.pk]), data)
    assert response.status_code == 302
    active = set(local_list.entries.filter(removed=False).values_list("id_tag", flat=True))
    assert active == {"04DD0001", "04DD0002"}
