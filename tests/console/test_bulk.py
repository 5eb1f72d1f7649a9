"""Bulk operations from the charge point list: one command per charger in its version, one outcome per
charger, and the failed ones selectable for a retry."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.console import bulk
from apps.ocpp_gateway.models import OcppCommand
from tests.console.conftest import put_presence
from tests.factories import ChargePointFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


def test_each_charger_gets_the_command_of_its_version_and_its_own_outcome(org_a, monkeypatch):
    old = ChargePointFactory(organisation=org_a, identity="BULK-16", ocpp_protocol="ocpp1.6")
    new = ChargePointFactory(organisation=org_a, identity="BULK-201", ocpp_protocol="ocpp2.0.1")
    away = ChargePointFactory(organisation=org_a, identity="BULK-AWAY", ocpp_protocol="ocpp1.6")
    put_presence("BULK-16")
    put_presence("BULK-201")
    answers = {"BULK-16": {"status": "Accepted"}, "BULK-201": {"status": "Rejected"}}

    def answered(*, command_id, timeout_s):
        command = OcppCommand.objects.select_related("charge_point").get(pk=command_id)
        if command.status != "sent":  # final already (the offline one)
            return command.outcome()
        return {"status": "answered", "response": answers[command.charge_point.identity]}

    monkeypatch.setattr(bulk, "command_wait", answered)
    user = StaffUserFactory(organisation=org_a, role="Technician")
    results = bulk.bulk_run(operation="inoperative", charge_points=[old, new, away], actor=user)
    outcomes = {r.charge_point.identity: (r.ok, r.summary) for r in results}
    assert outcomes == {
        "BULK-16": (True, "Accepted"),
        "BULK-201": (False, "Rejected"),
        "BULK-AWAY": (False, "charger_offline"),
    }
    payloads = dict(OcppCommand.objects.values_list("charge_point__identity", "payload"))
    assert payloads["BULK-16"] == {"connectorId": 0, "type": "Inoperative"}
    assert payloads["BULK-201"] == {"operationalStatus": "Inoperative"}
    assert sorted(bulk.failed_ids(user)) == sorted([new.pk, away.pk])


def test_the_list_action_reports_per_charger_and_offers_the_failed_ones(client, org_a, org_b):
    mine = ChargePointFactory(organisation=org_a, identity="LIST-1", ocpp_protocol="ocpp1.6")
    theirs = ChargePointFactory(organisation=org_b, identity="LIST-B", ocpp_protocol="ocpp1.6")
    user = StaffUserFactory(organisation=org_a, role="Technician")
    client.force_login(user)
    changelist = reverse("admin:stations_chargepoint_changelist")
    response = client.post(
        changelist, {"action": "bulk_reset", "_selected_action": [mine.pk, theirs.pk]}, follow=True
    )
    texts = [str(m) for m in response.context["messages"]]
    assert "LIST-1: charger_offline" in texts
    assert not any(
        "LIST-B" in text for text in texts
    )  # another organisation's charger is never sent anything
    assert OcppCommand.objects.filter(charge_point=theirs).count() == 0
    retry = client.get(changelist + "?bulk_failed=yes")
    assert [cp.identity for cp in retry.context["cl"].result_list] == ["LIST-1"]


def test_finance_has_no_bulk_actions(client, org_a):
    ChargePointFactory(organisation=org_a)
    client.force_login(StaffUserFactory(organisation=org_a, role="Finance"))
    page = client.get(reverse("admin:stations_chargepoint_changelist")).content.decode()
    assert "bulk_reset" not in page
