"""The admin, `ocpp_call` and the operator API send a command through the same command service: for the
same command to the same charger (connected over a real WebSocket, answering), each leaves the same
command record with the same outcome and the same audit record; only who asked and through what differ."""

from __future__ import annotations

import asyncio
import json
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django import db
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from apps.accounts.models import AuditRecord, User
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.services import command_wait
from tests.factories import StaffUserFactory
from tests.ocpp_gateway.conftest import Charger, connect
from tests.ocpp_gateway.operator import staff_client

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def in_thread(fn):
    """Each entry point runs in its own thread with its own connection, as in production."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _by_admin(user_pk: int, charge_point_pk: int) -> None:
    client = Client()
    client.force_login(User.objects.get(pk=user_pk))
    url = reverse("admin:ocpp_gateway_ocppcommand_send", args=[charge_point_pk])
    response = client.post(url, {"action": "Reset", "type": "Soft", "timeout_s": "10"})
    assert response.status_code == 302, response.content.decode()[:2000]


def _by_cli(identity: str) -> None:
    out = StringIO()
    try:
        call_command("ocpp_call", identity, "Reset", '{"type": "Soft"}', "--timeout", "10", stdout=out)
    except CommandError as exc:  # pragma: no cover - the assertion below says what happened
        raise AssertionError(f"ocpp_call failed: {exc}") from exc


def _by_api(organisation_pk: int, identity: str) -> int:
    from apps.accounts.models import Organisation

    _user, client = staff_client(Organisation.objects.get(pk=organisation_pk), role="Technician")
    response = client.post(
        f"/api/v1/operator/charge-points/{identity}/commands",
        {"action": "Reset", "payload": {"type": "Soft"}, "timeout_s": 10},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()["id"]


async def test_admin_ocpp_call_and_the_api_leave_the_same_records(charge_point):
    admin_pk = await sync_to_async(
        lambda: StaffUserFactory(organisation=charge_point.organisation, role="Technician").pk
    )()
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "AC22"})

    senders = {
        "admin": lambda: in_thread(_by_admin)(admin_pk, charge_point.pk),
        "cli": lambda: in_thread(_by_cli)(charge_point.identity),
        "api": lambda: in_thread(_by_api)(charge_point.organisation_id, charge_point.identity),
    }
    for source, send in senders.items():
        sending = asyncio.ensure_future(send())
        call = await charger.receive()
        assert call[2:] == ["Reset", {"type": "Soft"}], source
        await charger.send_raw(json.dumps([3, call[1], {"status": "Accepted"}]))
        await sending

    def records():
        # In a thread of its own: the consumer records the charger's answers through the thread its
        # database calls run in, which a waiter must not hold.
        found = {}
        for command in OcppCommand.objects.order_by("created_at"):
            outcome = command_wait(command_id=command.pk, timeout_s=10)  # final once the answer is in
            command.refresh_from_db()
            audit = AuditRecord.objects.select_related("target_type").get(
                action="ocpp.Reset", detail__command_id=command.pk
            )
            found[command.source] = (command, outcome, audit)
        return found

    found = await in_thread(records)()
    assert set(found) == {"admin", "cli", "api"}
    shapes = set()
    for source, (command, outcome, audit) in found.items():
        assert audit.source == source
        assert (audit.target_type.model, audit.target_id) == ("chargepoint", str(charge_point.pk))
        shapes.add(
            (
                command.action,
                json.dumps(command.payload, sort_keys=True),
                command.status,
                json.dumps(command.response, sort_keys=True),
                json.dumps({k: v for k, v in outcome.items() if k != "id"}, sort_keys=True),
                audit.action,
                audit.outcome,
                audit.organisation_id,
                audit.target_repr,
            )
        )
    assert len(shapes) == 1, "\n".join(map(str, shapes))
    assert next(iter(shapes))[2] == "answered"
    assert found["cli"][0].requested_by_id is None
    assert found["admin"][0].requested_by_id == admin_pk
    assert (
        found["api"][0].requested_by_id is not None
        and found["api"][2].actor_id == found["api"][0].requested_by_id
    )
    await comm.disconnect()
