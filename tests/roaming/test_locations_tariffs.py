"""Locations and tariffs senders: our stations and tariffs in OCPI shape (validated against the
specification), pagination with Link / X-Total-Count / X-Limit, date_from / date_to, single objects."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from apps.roaming.protocol import format_datetime
from apps.stations.models import Connector, Location
from cpo import clock
from tests.factories import ChargePointFactory, ConnectorFactory, EvseFactory, LocationFactory
from tests.roaming import ocpi_spec


def test_a_location_with_its_evse_connector_status_and_tariff(registered, site, emsp, ocpi):
    Connector.objects.filter(pk=site.connector.pk).update(status="Charging", status_received_at=clock.now())
    status, body, response = ocpi("GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token)
    assert status == 200 and body["status_code"] == 1000
    assert response["X-Total-Count"] == "1" and response["X-Limit"] == "50"
    assert not response.has_header("Link")
    [location] = body["data"]
    ocpi_spec.validate(location, "Location")
    assert location["id"] == str(site.location.pk)
    assert (location["country_code"], location["party_id"], location["country"]) == ("DE", "CPO", "DEU")
    assert location["coordinates"] == {"latitude": "52.521900", "longitude": "13.413200"}
    assert location["opening_times"] == {"twentyfourseven": True}
    [evse] = location["evses"]
    assert evse["uid"] == str(site.evse.pk) and evse["status"] == "CHARGING"
    assert "REMOTE_START_STOP_CAPABLE" in evse["capabilities"]
    [connector] = evse["connectors"]
    assert connector["tariff_ids"] == [str(site.tariff.pk)]
    assert (connector["standard"], connector["power_type"], connector["max_electric_power"]) == (
        "IEC_62196_T2",
        "AC_3_PHASE",
        22000,
    )
    # the same objects one by one
    base = f"/ocpi/2.2.1/locations/{site.location.pk}"
    assert ocpi("GET", base, token=emsp.cpo_token)[1]["data"] == location
    assert ocpi("GET", f"{base}/{site.evse.pk}", token=emsp.cpo_token)[1]["data"] == evse
    assert ocpi("GET", f"{base}/{site.evse.pk}/1", token=emsp.cpo_token)[1]["data"] == connector
    status, body, _ = ocpi("GET", f"{base}/{site.evse.pk}/9", token=emsp.cpo_token)
    assert (status, body["status_code"]) == (404, 2003)
    status, body, _ = ocpi("GET", "/ocpi/2.2.1/locations/999999", token=emsp.cpo_token)
    assert (status, body["status_code"]) == (404, 2003)


def test_unpublished_locations_and_other_operators_are_not_shared(registered, site, emsp, ocpi):
    LocationFactory(organisation=site.org, is_published=False)
    ChargePointFactory()  # another operator's charger and location
    _status, body, _ = ocpi("GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token)
    assert [x["id"] for x in body["data"]] == [str(site.location.pk)]


def test_pages_follow_the_link_header_with_the_filters_kept(registered, site, emsp, ocpi, settings):
    settings.CPO_OCPI_PAGE_LIMIT = 2
    for _ in range(4):
        cp = ChargePointFactory(organisation=site.org, location=LocationFactory(organisation=site.org))
        ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1))
    since = format_datetime(clock.now() - timedelta(hours=1))
    seen = []
    status, body, response = ocpi(
        "GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token, limit="10", date_from=since
    )
    while True:
        assert status == 200 and response["X-Total-Count"] == "5" and response["X-Limit"] == "2"
        seen += [x["id"] for x in body["data"]]
        for location in body["data"]:
            ocpi_spec.validate(location, "Location")
        if not response.has_header("Link"):
            break
        link = response["Link"]
        assert link.endswith('>; rel="next"')
        query = parse_qs(urlsplit(link[1:].split(">")[0]).query)
        assert query["date_from"] == [since]
        status, body, response = ocpi(
            "GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token, **{k: v[0] for k, v in query.items()}
        )
    expected = [
        str(pk)
        for pk in Location.objects.filter(organisation=site.org)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    ]
    assert seen == expected


def test_date_from_and_date_to_filter_by_last_updated_and_bad_values_are_2001(registered, site, emsp, ocpi):
    later = format_datetime(clock.now() + timedelta(minutes=5))
    _s, body, response = ocpi("GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token, date_from=later)
    assert body["data"] == [] and response["X-Total-Count"] == "0"
    _s, body, _ = ocpi("GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token, date_to=later)
    assert len(body["data"]) == 1
    status, body, _ = ocpi("GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token, date_from="yesterday")
    assert (status, body["status_code"]) == (400, 2001)
    assert "date_from" in body["status_message"]
    status, body, _ = ocpi("GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token, offset="-1")
    assert (status, body["status_code"]) == (400, 2001)


def test_routing_headers_must_name_us_and_the_caller(registered, emsp, ocpi):
    status, body, _ = ocpi(
        "GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token, headers={"OCPI-to-party-id": "XYZ"}
    )
    assert (status, body["status_code"]) == (404, 4001)
    status, body, _ = ocpi("GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token, route=("BE", "OTH"))
    assert status == 403
    status, _body, response = ocpi("GET", "/ocpi/2.2.1/locations", token=emsp.cpo_token)
    assert (response["OCPI-from-country-code"], response["OCPI-from-party-id"]) == ("DE", "CPO")
    assert (response["OCPI-to-country-code"], response["OCPI-to-party-id"]) == ("NL", "EMS")


def test_tariffs_are_ocpi_tariffs_with_vat(registered, site, emsp, ocpi):
    status, body, response = ocpi("GET", "/ocpi/2.2.1/tariffs", token=emsp.cpo_token)
    assert status == 200 and response["X-Total-Count"] == "1"
    [tariff] = body["data"]
    ocpi_spec.validate(tariff, "Tariff")
    assert tariff["id"] == str(site.tariff.pk) and tariff["currency"] == "EUR"
    assert tariff["tariff_alt_text"] == [{"language": "en", "text": "0.30/kWh"}]
    assert tariff["elements"] == [
        {
            "price_components": [
                {"type": "ENERGY", "price": 0.3, "vat": 19, "step_size": 1},
                {"type": "FLAT", "price": 1, "vat": 19, "step_size": 1},
            ]
        }
    ]
