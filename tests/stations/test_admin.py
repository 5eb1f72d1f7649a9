"""Station registry admin: bad input gets a clear message and stores nothing; authorisation keys are
write-only; the key action shows a key once and audits it; choices are scoped to the staff's operator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from apps.accounts.models import AuditRecord
from apps.stations import keys
from apps.stations.models import ChargePoint, Connector, Location
from cpo import clock
from tests.factories import ChargePointFactory, ConnectorFactory, EvseFactory, LocationFactory

pytestmark = pytest.mark.django_db

KEY = "s3cret-key-0123456789"


def management_form(prefix: str, total: int = 0, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def chargepoint_data(**overrides) -> dict[str, str]:
    data = {
        "identity": "CP-NEW",
        "organisation": "",
        "location": "",
        "vendor": "ACME",
        "model": "AC22",
        "serial_number": "",
        "max_power_w": "22000",
        "ocpp_protocol": "ocpp1.6",
        "registration_status": "Accepted",
        "availability": "Operative",
        "security_profile": "0",
        "set_auth_key": "",
        **management_form("evses"),
    }
    data.update({key: str(value) for key, value in overrides.items()})
    return data


def location_data(organisation, **overrides) -> dict[str, str]:
    data = {
        "organisation": str(organisation.pk),
        "name": "Hauptbahnhof",
        "is_published": "on",
        "address": "Europaplatz 1",
        "postal_code": "10557",
        "city": "Berlin",
        "country": "DE",
        "time_zone": "Europe/Berlin",
        "latitude": "52.5251",
        "longitude": "13.3694",
        "point": "",
        "opening_hours": '{"twentyfourseven": true}',
    }
    data.update({key: str(value) for key, value in overrides.items()})
    return data


def form_errors(response) -> list[str]:
    """Every error message of the admin form and its inline formsets."""
    messages = [str(m) for errors in response.context["adminform"].form.errors.values() for m in errors]
    for inline in response.context["inline_admin_formsets"]:
        messages += [str(m) for m in inline.formset.non_form_errors()]
        messages += [
            str(m) for form_errors in inline.formset.errors for ms in form_errors.values() for m in ms
        ]
    return messages


# --- locations -----------------------------------------------------------------------------------


def test_location_is_created_from_typed_coordinates(admin_client, org_a):
    response = admin_client.post(reverse("admin:stations_location_add"), location_data(org_a))

    assert response.status_code == 302, form_errors(response)
    location = Location.objects.get(name="Hauptbahnhof")
    assert (location.latitude, location.longitude) == pytest.approx((52.5251, 13.3694))


def test_location_without_coordinates_is_refused_with_a_clear_message(admin_client, org_a):
    response = admin_client.post(
        reverse("admin:stations_location_add"), location_data(org_a, latitude="", longitude="")
    )

    assert response.status_code == 200
    assert form_errors(response) == ["A location needs coordinates (latitude and longitude)."]
    assert "A location needs coordinates" in response.content.decode()
    assert not Location.objects.exists()


def test_location_with_only_a_latitude_names_the_missing_coordinate(admin_client, org_a):
    response = admin_client.post(reverse("admin:stations_location_add"), location_data(org_a, longitude=""))

    assert response.context["adminform"].form.errors["longitude"] == [
        "A location needs coordinates (latitude and longitude)."
    ]
    assert not Location.objects.exists()


def test_location_change_page_renders_the_map_widget_without_network(admin_client):
    location = LocationFactory()

    response = admin_client.get(reverse("admin:stations_location_change", args=[location.pk]))

    content = response.content.decode()
    assert response.status_code == 200
    assert 'name="point"' in content
    assert "ol.js" in content  # OpenLayers is loaded by the staff's browser, not by the server
    assert response.context["adminform"].form.initial["latitude"] == pytest.approx(location.latitude)


def test_location_changelist_counts_charge_points(admin_client):
    location = LocationFactory()
    ChargePointFactory.create_batch(2, organisation=location.organisation, location=location)

    response = admin_client.get(reverse("admin:stations_location_changelist"))

    row = next(obj for obj in response.context["cl"].result_list if obj.pk == location.pk)
    assert row.charge_point_count == 2
    assert f"?location__id__exact={location.pk}" in response.content.decode()


# --- charge points -------------------------------------------------------------------------------


def test_duplicate_identity_differing_in_case_is_refused(admin_client, org_a):
    ChargePointFactory(identity="CP-ABC", organisation=org_a)

    response = admin_client.post(
        reverse("admin:stations_chargepoint_add"), chargepoint_data(identity="cp-abc", organisation=org_a.pk)
    )

    assert response.status_code == 200
    assert "A charge point with this OCPP identity already exists." in form_errors(response)
    assert ChargePoint.objects.count() == 1


def test_location_of_another_operator_is_refused(admin_client, org_a, org_b):
    location_b = LocationFactory(organisation=org_b)

    response = admin_client.post(
        reverse("admin:stations_chargepoint_add"),
        chargepoint_data(organisation=org_a.pk, location=location_b.pk),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["location"] == [
        "The location belongs to another operator."
    ]
    assert not ChargePoint.objects.exists()


def test_staff_cannot_choose_another_operators_location(client, staff_a, org_a, org_b):
    own, other = LocationFactory(organisation=org_a), LocationFactory(organisation=org_b)
    client.force_login(staff_a)

    page = client.get(reverse("admin:stations_chargepoint_add"))
    choices = page.context["adminform"].form.fields["location"].queryset
    assert list(choices) == [own]
    assert list(page.context["adminform"].form.fields["organisation"].queryset) == [org_a]

    response = client.post(
        reverse("admin:stations_chargepoint_add"), chargepoint_data(organisation=org_a.pk, location=other.pk)
    )
    assert "Select a valid choice" in response.context["adminform"].form.errors["location"][0]
    assert not ChargePoint.objects.exists()


def test_set_auth_key_is_hashed_and_never_shown(admin_client, org_a):
    response = admin_client.post(
        reverse("admin:stations_chargepoint_add"),
        chargepoint_data(organisation=org_a.pk, security_profile=1, set_auth_key=KEY),
    )

    assert response.status_code == 302, form_errors(response)
    charge_point = ChargePoint.objects.get(identity="CP-NEW")
    assert keys.verify_key(KEY, charge_point.auth_key_hash)
    page = admin_client.get(
        reverse("admin:stations_chargepoint_change", args=[charge_point.pk])
    ).content.decode()
    assert charge_point.auth_key_hash not in page
    assert KEY not in page
    assert 'name="auth_key_hash"' not in page
    record = AuditRecord.objects.get(action="chargepoint.create", source="admin")
    assert KEY not in str(record.detail)


def test_set_auth_key_turns_profile_0_into_1(admin_client, org_a):
    charge_point = ChargePointFactory(organisation=org_a, security_profile=0, auth_key_hash="", location=None)

    response = admin_client.post(
        reverse("admin:stations_chargepoint_change", args=[charge_point.pk]),
        chargepoint_data(
            identity=charge_point.identity, organisation=org_a.pk, security_profile=0, set_auth_key=KEY
        ),
    )

    assert response.status_code == 302, form_errors(response)
    charge_point.refresh_from_db()
    assert charge_point.security_profile == 1
    assert keys.verify_key(KEY, charge_point.auth_key_hash)


def test_too_short_key_is_refused_and_the_stored_key_kept(admin_client, org_a):
    charge_point = ChargePointFactory(organisation=org_a, location=None)
    stored = charge_point.auth_key_hash

    response = admin_client.post(
        reverse("admin:stations_chargepoint_change", args=[charge_point.pk]),
        chargepoint_data(
            identity=charge_point.identity, organisation=org_a.pk, security_profile=1, set_auth_key="short"
        ),
    )

    assert response.context["adminform"].form.errors["set_auth_key"] == [
        "An authorisation key must have 16 to 40 characters."
    ]
    charge_point.refresh_from_db()
    assert charge_point.auth_key_hash == stored


def test_basic_auth_without_any_key_is_refused(admin_client, org_a):
    response = admin_client.post(
        reverse("admin:stations_chargepoint_add"), chargepoint_data(organisation=org_a.pk, security_profile=1)
    )

    assert response.status_code == 200
    assert "Security profiles 1 and 2 need an authorisation key" in form_errors(response)[0]
    assert not ChargePoint.objects.exists()


def test_generate_key_action_shows_the_key_once_stores_its_hash_and_audits(client, staff_a, org_a):
    charge_point = ChargePointFactory(organisation=org_a)
    old_hash = charge_point.auth_key_hash
    client.force_login(staff_a)

    response = client.post(
        reverse("admin:stations_chargepoint_changelist"),
        {"action": "generate_auth_key", "_selected_action": [charge_point.pk]},
        follow=True,
    )

    shown = [str(m) for m in get_messages(response.wsgi_request)] or [
        str(m) for m in response.context["messages"]
    ]
    shown = [m for m in shown if "no tariff in force" not in m]  # the list's own warning, if any
    assert len(shown) == 1
    key = shown[0].split("<code>")[1].split("</code>")[0]
    charge_point.refresh_from_db()
    assert charge_point.auth_key_hash != old_hash
    assert keys.verify_key(key, charge_point.auth_key_hash)
    assert key not in charge_point.auth_key_hash
    record = AuditRecord.objects.get(action="chargepoint.generate_key", target_id=str(charge_point.pk))
    assert record.actor == staff_a
    assert record.organisation_id == org_a.pk
    assert key not in str(record.detail)
    again = client.get(reverse("admin:stations_chargepoint_changelist")).content.decode()
    assert key not in again


def test_generate_key_action_never_touches_another_operators_charge_point(client, staff_a, org_b):
    other = ChargePointFactory(organisation=org_b)
    old_hash = other.auth_key_hash
    client.force_login(staff_a)

    client.post(
        reverse("admin:stations_chargepoint_changelist"),
        {"action": "generate_auth_key", "_selected_action": [other.pk]},
    )

    other.refresh_from_db()
    assert other.auth_key_hash == old_hash
    assert not AuditRecord.objects.filter(action="chargepoint.generate_key").exists()


def test_connected_column_and_filter_follow_presence(admin_client, org_a):
    now = clock.now()
    fresh = ChargePointFactory(organisation=org_a, last_seen_at=now - timedelta(seconds=500), is_online=True)
    stale = ChargePointFactory(organisation=org_a, last_seen_at=now - timedelta(seconds=700), is_online=False)
    never = ChargePointFactory(organisation=org_a, last_seen_at=None)
    changelist = reverse("admin:stations_chargepoint_changelist")

    online = admin_client.get(changelist, {"connected": "yes"}).context["cl"].result_list
    offline = admin_client.get(changelist, {"connected": "no"}).context["cl"].result_list

    assert list(online) == [fresh]
    assert set(offline) == {stale, never}


def test_relation_filters_list_only_the_staffs_own_operators(client, staff_a, org_a, org_b):
    ChargePointFactory(organisation=org_a)
    ChargePointFactory(organisation=org_b, location=LocationFactory(organisation=org_b, name="Beta Hof"))
    client.force_login(staff_a)

    content = client.get(reverse("admin:stations_chargepoint_changelist")).content.decode()

    assert "Alpha Charging" in content
    assert "Beta Power" not in content
    assert "Beta Hof" not in content


def test_changelist_search_finds_by_location_name(admin_client, org_a):
    location = LocationFactory(organisation=org_a, name="Kaufland Parkdeck")
    wanted = ChargePointFactory(organisation=org_a, location=location)
    ChargePointFactory(organisation=org_a)

    response = admin_client.get(reverse("admin:stations_chargepoint_changelist"), {"q": "parkdeck"})

    assert list(response.context["cl"].result_list) == [wanted]


# --- EVSEs and connectors ------------------------------------------------------------------------


def evse_data(evse, rows: list[dict], initial: int = 0) -> dict[str, str]:
    data = {
        "charge_point": str(evse.charge_point_id),
        "evse_id": str(evse.evse_id),
        "emi3_id": "",
        "availability": "Operative",
        **management_form("connectors", total=len(rows), initial=initial),
    }
    for index, row in enumerate(rows):
        values = {
            "standard": "IEC_62196_T2",
            "format": "SOCKET",
            "power_type": "AC_3_PHASE",
            "max_voltage_v": "400",
            "max_current_a": "32",
            "max_power_w": "22000",
            "evse": str(evse.pk),
            **row,
        }
        data.update({f"connectors-{index}-{key}": str(value) for key, value in values.items()})
    return data


def test_connector_number_clash_between_new_inline_rows_is_refused(admin_client):
    evse = EvseFactory()

    response = admin_client.post(
        reverse("admin:stations_evse_change", args=[evse.pk]),
        evse_data(evse, [{"connector_id": 1}, {"connector_id": 1}]),
    )

    assert response.status_code == 200
    assert "This EVSE already has a connector with this number." in form_errors(response)
    assert not Connector.objects.exists()


def test_connector_number_clash_with_a_stored_connector_is_refused(admin_client):
    existing = ConnectorFactory(connector_id=1)
    evse = existing.evse

    response = admin_client.post(
        reverse("admin:stations_evse_change", args=[evse.pk]),
        evse_data(evse, [{"id": existing.pk, "connector_id": 1}, {"connector_id": 1}], initial=1),
    )

    assert response.status_code == 200
    assert "This EVSE already has a connector with this number." in form_errors(response)
    assert Connector.objects.count() == 1


def test_connectors_are_added_through_the_evse_inline(admin_client):
    evse = EvseFactory()

    response = admin_client.post(
        reverse("admin:stations_evse_change", args=[evse.pk]),
        evse_data(evse, [{"connector_id": 1}, {"connector_id": 2, "standard": "IEC_62196_T2_COMBO"}]),
    )

    assert response.status_code == 302, form_errors(response)
    assert list(evse.connectors.values_list("connector_id", "standard")) == [
        (1, "IEC_62196_T2"),
        (2, "IEC_62196_T2_COMBO"),
    ]


def test_charge_point_page_lists_its_evses_with_connectors(admin_client):
    connector = ConnectorFactory()
    charge_point = connector.evse.charge_point

    response = admin_client.get(reverse("admin:stations_chargepoint_change", args=[charge_point.pk]))

    assert response.status_code == 200
    assert "1: IEC 62196 Type 2 (Unknown)" in response.content.decode()
    assert reverse("admin:stations_evse_change", args=[connector.evse.pk]) in response.content.decode()


def test_accept_pending_action_leads_to_the_accept_page_which_gives_a_key(admin_client, org_a):
    """The action goes to the gateway's accept page (one charger at a time: the page shows the connection
    that will get the key); accepting there gives the key, shown once."""
    pending = ChargePointFactory(
        organisation=org_a, registration_status="Pending", security_profile=0, auth_key_hash=""
    )
    accepted = ChargePointFactory(organisation=org_a)
    changelist = reverse("admin:stations_chargepoint_changelist")
    response = admin_client.post(
        changelist, {"action": "accept_pending", "_selected_action": [pending.pk, accepted.pk]}, follow=True
    )
    assert any("one charge point at a time" in str(m) for m in get_messages(response.wsgi_request))
    pending.refresh_from_db()
    assert pending.registration_status == "Pending"

    response = admin_client.post(changelist, {"action": "accept_pending", "_selected_action": [pending.pk]})
    page = reverse("admin:ocpp_gateway_ocppcommand_accept", args=[pending.pk])
    assert response.status_code == 302 and response["Location"] == page
    assert "is not connected" in admin_client.get(page).content.decode()
    response = admin_client.post(page, {"epoch": "0"}, follow=True)  # the page showed no connection
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    pending.refresh_from_db()
    assert pending.registration_status == "Accepted"
    assert pending.security_profile == 0  # until the charger has stored its new key
    assert any(pending.identity in t and "offline" in t and "<code>" in t for t in texts)
    response = admin_client.post(
        reverse("admin:ocpp_gateway_ocppcommand_accept", args=[accepted.pk]), {}, follow=True
    )
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert f"{accepted.identity} is already accepted." in texts
    assert AuditRecord.objects.filter(action="chargepoint.accept", target_id=str(pending.pk)).count() == 1
    assert not AuditRecord.objects.filter(action="chargepoint.accept", target_id=str(accepted.pk)).exists()


def test_change_page_links_to_commands_and_logs_for_permitted_users(admin_client, client, staff_a, org_a):
    cp = ChargePointFactory(organisation=org_a)
    url = reverse("admin:stations_chargepoint_change", args=[cp.pk])
    page = admin_client.get(url).content.decode()
    assert reverse("admin:ocpp_gateway_ocppcommand_send", args=[cp.pk]) in page
    assert f"{reverse('admin:ocpp_gateway_ocppmessage_changelist')}?charge_point__id__exact={cp.pk}" in page
    from django.contrib.auth.models import Group

    technician = staff_a
    technician.groups.set([Group.objects.get(name="Support")])
    client.force_login(technician)
    page = client.get(url).content.decode()
    assert reverse("admin:ocpp_gateway_ocppcommand_send", args=[cp.pk]) not in page  # support may not send
