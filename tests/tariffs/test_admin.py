"""Tariff admin: the example-session preview, tenancy, the tariff shown on locations and charge points,
and CDR credits from the list."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from apps.tariffs.choices import CdrKind
from apps.tariffs.models import ChargeDetailRecord, Tariff
from cpo import clock
from tests.factories import (
    ChargeDetailRecordFactory,
    ChargePointFactory,
    ChargingSessionFactory,
    ConnectorFactory,
    EvseFactory,
    LocationFactory,
    StaffUserFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def example(org_a):
    tariff = TariffFactory(organisation=org_a, name="Standard")
    TariffElementFactory(
        tariff=tariff, position=0, energy_price=None, parking_price=D("3.00"), min_duration_s=7200
    )
    TariffElementFactory(tariff=tariff, position=1, energy_price=D("0.30"), flat_price=D("1.00"))
    return tariff


def preview(client, tariff, **data):
    return client.get(reverse("admin:tariffs_tariff_preview", args=[tariff.pk]), data)


def test_preview_prices_the_example_session(client, staff_a, example):
    client.force_login(staff_a)
    response = preview(
        client,
        example,
        start="2025-05-06T10:00",
        time_zone="Europe/Berlin",
        country="DE",
        energy_kwh="31.4",
        charging_minutes=110,
        idle_minutes=45,
    )
    assert response.status_code == 200
    breakdown = response.context["breakdown"]
    assert (breakdown["net"], breakdown["vat"], breakdown["gross"]) == ("12.17", "2.31", "14.48")
    html = response.content.decode()
    assert 'id="preview-gross">14.48<' in html
    assert "PARKING_TIME" in html


def test_preview_form_alone_and_its_errors(client, staff_a, example):
    client.force_login(staff_a)
    assert preview(client, example).status_code == 200
    response = preview(
        client,
        example,
        start="x",
        time_zone="Mars/Base",
        country="DE",
        energy_kwh="-1",
        charging_minutes=10,
        idle_minutes=0,
    )
    assert response.status_code == 200
    assert response.context["breakdown"] is None
    assert set(response.context["form"].errors) == {"start", "time_zone", "energy_kwh"}


def test_tariff_page_links_to_the_preview(client, staff_a, example):
    client.force_login(staff_a)
    html = client.get(reverse("admin:tariffs_tariff_change", args=[example.pk])).content.decode()
    assert reverse("admin:tariffs_tariff_preview", args=[example.pk]) in html


def test_staff_of_another_operator_see_neither_the_tariff_nor_its_preview(client, staff_b, example):
    client.force_login(staff_b)
    assert client.get(reverse("admin:tariffs_tariff_change", args=[example.pk])).status_code == 404
    assert preview(client, example).status_code == 404
    listed = client.get(reverse("admin:tariffs_tariff_changelist")).context["cl"].queryset
    assert example not in listed


def test_location_and_charge_point_pages_show_the_tariff_in_force(client, staff_a, org_a, example):
    location = LocationFactory(organisation=org_a)
    cp = ChargePointFactory(organisation=org_a, location=location)
    client.force_login(staff_a)
    html = client.get(reverse("admin:stations_chargepoint_change", args=[cp.pk])).content.decode()
    assert "none: sessions here are free" in html
    TariffAssignmentFactory(tariff=example, location=location)
    for url in (
        reverse("admin:stations_chargepoint_change", args=[cp.pk]),
        reverse("admin:stations_location_change", args=[location.pk]),
    ):
        html = client.get(url).content.decode()
        assert reverse("admin:tariffs_tariff_change", args=[example.pk]) in html
    listed = client.get(
        reverse("admin:tariffs_tariffassignment_changelist"), {"location__id__exact": location.pk}
    )
    assert [a.tariff for a in listed.context["cl"].queryset] == [example]


def test_tariff_is_created_with_its_elements_inline(client, staff_a, org_a):
    client.force_login(staff_a)
    prefix = "elements"
    data = {
        "organisation": org_a.pk,
        "name": "Night",
        "currency": "EUR",
        "tariff_type": "",
        "alt_text": '{"en": "Night"}',
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-0-position": "0",
        f"{prefix}-0-energy_price": "0.25",
        f"{prefix}-0-start_time": "22:00",
        f"{prefix}-0-end_time": "06:00",
        f"{prefix}-0-energy_step_wh": "0",
        f"{prefix}-0-time_step_s": "0",
        f"{prefix}-0-parking_step_s": "0",
        f"{prefix}-0-day_of_week": ["SATURDAY", "SUNDAY"],
        "assignments-TOTAL_FORMS": "0",
        "assignments-INITIAL_FORMS": "0",
    }
    response = client.post(reverse("admin:tariffs_tariff_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tariff = Tariff.objects.get(name="Night")
    element = tariff.elements.get()
    assert (element.energy_price, element.day_of_week) == (D("0.25"), ["SATURDAY", "SUNDAY"])


def test_element_without_any_price_is_refused(client, staff_a, org_a):
    client.force_login(staff_a)
    data = {
        "organisation": org_a.pk,
        "name": "Empty",
        "currency": "EUR",
        "alt_text": "{}",
        "elements-TOTAL_FORMS": "1",
        "elements-INITIAL_FORMS": "0",
        "elements-0-position": "0",
        "elements-0-energy_step_wh": "0",
        "elements-0-time_step_s": "0",
        "elements-0-parking_step_s": "0",
        "elements-0-start_time": "08:00",
        "assignments-TOTAL_FORMS": "0",
        "assignments-INITIAL_FORMS": "0",
    }
    response = client.post(reverse("admin:tariffs_tariff_add"), data)
    assert response.status_code == 200
    assert not Tariff.objects.filter(name="Empty").exists()
    assert "An element needs at least one price." in response.content.decode()


def test_cdrs_are_read_only_and_credited_from_the_list(client, org_a):
    finance = StaffUserFactory(organisation=org_a, role="Finance")
    cdr = ChargeDetailRecordFactory(
        session=ChargingSessionFactory(
            charge_point=ChargePointFactory(organisation=org_a), status="COMPLETED", meter_stop_wh=11000
        )
    )
    client.force_login(finance)
    page = client.get(reverse("admin:tariffs_chargedetailrecord_change", args=[cdr.pk]))
    assert page.status_code == 200
    assert b'name="gross"' not in page.content  # read-only
    response = client.post(
        reverse("admin:tariffs_chargedetailrecord_changelist"),
        {"action": "credit", "_selected_action": [cdr.pk]},
    )
    assert response.status_code == 302
    credit = ChargeDetailRecord.objects.get(kind=CdrKind.CREDIT)
    assert (credit.credits_id, credit.gross) == (cdr.pk, -cdr.gross)


def _warnings(response):
    return [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]


def _charger(org, location=None, connectors=1):
    cp = ChargePointFactory(organisation=org, location=location or LocationFactory(organisation=org))
    evse = EvseFactory(charge_point=cp, evse_id=1)
    return cp, [ConnectorFactory(evse=evse, connector_id=n) for n in range(1, connectors + 1)]


def test_charge_point_list_warns_about_charge_points_without_tariff_in_force(
    client, staff_a, staff_b, org_a, org_b, example
):
    bare, _c = _charger(org_a)
    by_location, _c = _charger(org_a)
    TariffAssignmentFactory(tariff=example, location=by_location.location)
    half, (covered, _uncovered) = _charger(org_a, connectors=2)
    TariffAssignmentFactory(tariff=example, connector=covered)
    whole, connectors = _charger(org_a, connectors=2)
    for connector in connectors:
        TariffAssignmentFactory(tariff=example, connector=connector)
    fleet_only, _c = _charger(org_a)  # a tariff only for a token group: other drivers charge free
    TariffAssignmentFactory(tariff=example, charge_point=fleet_only, token_group_id="FLEET")
    expired = TariffFactory(organisation=org_a, name="Old", valid_until=clock.now() - timedelta(days=1))
    TariffElementFactory(tariff=expired)
    ended, _c = _charger(org_a)
    TariffAssignmentFactory(tariff=expired, charge_point=ended)
    _charger(org_b)  # another operator's: never counted for org_a's staff
    changelist = reverse("admin:stations_chargepoint_changelist")

    client.force_login(staff_a)
    response = client.get(changelist)

    assert response.status_code == 200
    (warning,) = _warnings(response)
    assert warning.startswith("4 charge points have no tariff in force: sessions there are free.")
    assert f'href="{changelist}?tariff=none"' in warning
    none = client.get(changelist, {"tariff": "none"}).context["cl"].queryset
    assert set(none) == {bare, half, fleet_only, ended}
    assert set(client.get(changelist, {"tariff": "yes"}).context["cl"].queryset) == {by_location, whole}
    page = client.get(reverse("admin:stations_chargepoint_change", args=[bare.pk]))
    assert _warnings(page) == [
        "This charge point has no tariff in force: sessions here are free. Assign a tariff to it, its "
        "location or the operator."
    ]
    assert _warnings(client.get(reverse("admin:stations_chargepoint_change", args=[whole.pk]))) == []

    TariffAssignmentFactory(tariff=example)  # the operator's default covers all of them
    assert _warnings(client.get(changelist)) == []

    client.force_login(staff_b)
    (warning,) = _warnings(client.get(changelist))
    assert warning.startswith("1 charge point has no tariff in force: sessions there are free.")


def test_cdr_list_shows_the_receipt_number(client, staff_a, org_a):
    cdr = ChargeDetailRecordFactory(
        session=ChargingSessionFactory(
            charge_point=ChargePointFactory(organisation=org_a), status="COMPLETED", meter_stop_wh=11000
        ),
        number="ALPHA-2026-000007",
    )
    client.force_login(staff_a)
    html = client.get(reverse("admin:tariffs_chargedetailrecord_changelist")).content.decode()
    assert cdr.number in html
