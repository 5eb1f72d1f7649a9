"""The charge point page's console panel: live state, connectors, sessions, boot, configuration, commands
with their outcomes; command buttons only for those who may send; tenancy."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.console.conftest import charger, put_presence
from tests.factories import (
    ChargerConfigurationKeyFactory,
    ChargingSessionFactory,
    LocationFactory,
    OcppCommandFactory,
    OcppMessageFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def cp(org_a):
    cp = charger(org_a, LocationFactory(organisation=org_a), "PAGE-1", "Charging", "Faulted")
    cp.ocpp_protocol, cp.firmware_version = "ocpp1.6", "4.2.1"
    cp.save()
    put_presence("PAGE-1")
    ChargingSessionFactory(charge_point=cp, status="ACTIVE", id_tag="TAG-LIVE")
    ChargerConfigurationKeyFactory(charge_point=cp, key="HeartbeatInterval", value="300", readonly=False)
    OcppCommandFactory(charge_point=cp, action="Reset", response={"status": "Rejected"})
    OcppMessageFactory(charge_point=cp, identity=cp.identity, action="StatusNotification", direction="in")
    return cp


def _page(client, user, cp):
    client.force_login(user)
    return client.get(reverse("admin:stations_chargepoint_change", args=[cp.pk]))


def test_technician_sees_the_live_panel_and_command_buttons(client, org_a, cp):
    page = _page(client, StaffUserFactory(organisation=org_a, role="Technician"), cp).content.decode()
    assert 'id="console-chargepoint"' in page
    assert 'data-state="faulted"' in page
    assert 'data-connector="1-1"' in page and ">Charging<" in page and ">Faulted<" in page
    assert "TAG-LIVE" in page and "4.2.1" in page
    assert "Answered: Rejected" in page
    send = reverse("admin:ocpp_gateway_ocppcommand_send", args=[cp.pk])
    assert f'href="{send}?action=Reset" data-action="Reset"' in page
    assert f"{send}?action=ChangeConfiguration&amp;key=HeartbeatInterval&amp;value=300" in page
    log = reverse("admin:ocpp_gateway_ocppmessage_changelist") + f"?charge_point__id__exact={cp.pk}"
    assert f'{log}&amp;action=StatusNotification">StatusNotification</a>' in page
    assert f"{log}&amp;direction__exact=in" in page


def test_finance_sees_no_command_buttons_and_may_not_open_the_send_page(client, org_a, cp):
    finance = StaffUserFactory(organisation=org_a, role="Finance")
    page = _page(client, finance, cp).content.decode()
    assert 'id="console-chargepoint"' in page
    assert 'data-role="command-buttons"' not in page and "?action=" not in page
    assert 'data-table="messages"' not in page  # finance may not read the message log
    send = reverse("admin:ocpp_gateway_ocppcommand_send", args=[cp.pk])
    assert client.get(send + "?action=Reset").status_code == 403


def test_another_organisations_charge_point_is_a_404(client, org_b, cp):
    assert _page(client, StaffUserFactory(organisation=org_b, role="Operator admin"), cp).status_code == 404
    live = reverse("admin:console_chargepoint_live", args=[cp.pk])
    assert client.get(live).status_code == 404


def test_the_live_feed_of_the_page(client, org_a, cp):
    client.force_login(StaffUserFactory(organisation=org_a, role="Support"))
    data = client.get(reverse("admin:console_chargepoint_live", args=[cp.pk])).json()
    assert (data["state"], data["online"]) == ("faulted", True)
    assert [(c["evse_id"], c["status"]) for c in data["connectors"]] == [(1, "Charging"), (2, "Faulted")]


def test_the_send_page_takes_initial_values_from_the_link(client, org_a, cp):
    client.force_login(StaffUserFactory(organisation=org_a, role="Technician"))
    send = reverse("admin:ocpp_gateway_ocppcommand_send", args=[cp.pk])
    page = client.get(send + "?action=ChangeConfiguration&key=HeartbeatInterval&value=120").content.decode()
    assert 'value="HeartbeatInterval"' in page and 'value="120"' in page


def test_a_201_chargers_writable_device_model_links_to_set_variables(client, org_a):
    from tests.factories import DeviceVariableFactory

    station = charger(org_a, LocationFactory(organisation=org_a), "PAGE-201", "Available")
    station.ocpp_protocol = "ocpp2.0.1"
    station.save()
    DeviceVariableFactory(
        charge_point=station,
        component="OCPPCommCtrlr",
        variable="HeartbeatInterval",
        value="300",
        mutability="ReadWrite",
    )
    DeviceVariableFactory(
        charge_point=station,
        component="EVSE",
        evse_id=1,
        variable="Power",
        value="22000",
        mutability="ReadOnly",
    )
    client.force_login(StaffUserFactory(organisation=org_a, role="Technician"))
    page = client.get(reverse("admin:stations_chargepoint_change", args=[station.pk])).content.decode()
    send = reverse("admin:ocpp_gateway_ocppcommand_send", args=[station.pk])
    assert (
        f"{send}?action=SetVariables&amp;assignments=OCPPCommCtrlr.HeartbeatInterval+%3D+300&amp;attribute_type=Actual"
        in page
    )
    assert page.count("action=SetVariables") == 1  # the read-only one has no link
    form = client.get(
        send + "?action=SetVariables&assignments=OCPPCommCtrlr.HeartbeatInterval+%3D+300"
    ).content.decode()
    assert "OCPPCommCtrlr.HeartbeatInterval = 300</textarea>" in form
