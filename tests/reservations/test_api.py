"""The driver API of reservations: input checked before anything is sent (400 naming the field), a charger
that cannot hold any of its connectors (409 any_connector_unsupported), and what the app reads (list,
detail, the reservation in the driver session's body); the OpenAPI schema names every code."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.charging.models import DriverSession
from apps.ocpp_gateway.models import OcppCommand
from apps.reservations.models import Reservation
from cpo import clock
from tests.factories import DriverFactory, DriverSessionFactory
from tests.reservations.test_services import _answer, _charger, _reserve, clean_presence  # noqa: F401

pytestmark = pytest.mark.django_db
URL = "/api/v1/reservations"


def _api(driver) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(driver)}")
    return client


def _post(client, body, key: str = "k-1"):
    return client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"minutes": 31}, "minutes"),
        ({"minutes": 0}, "minutes"),
        ({"minutes": 5, "expires_at": "2099-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2099-01-01T00:00:00Z"}, "expires_at"),
        ({"connector": 0}, "connector"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_nothing_is_sent(extra, field):
    cp = _charger()
    answer = _post(_api(DriverFactory()), {"charge_point": cp.pk, "connector": 1, **extra})
    assert answer.status_code == 400, answer.content
    assert answer.json()["code"] == "validation_failed" and field in answer.json()["fields"]
    assert not Reservation.objects.exists() and not OcppCommand.objects.exists()


def test_no_connector_where_the_charger_cannot_hold_any_is_409():
    cp = _charger()
    answer = _post(_api(DriverFactory()), {"charge_point": cp.pk})
    assert answer.status_code == 409
    assert answer.json()["code"] == "any_connector_unsupported"
    assert not OcppCommand.objects.exists()


def test_list_and_detail_show_the_hold_and_its_end(settings):
    settings.CPO_RESERVATION_WAIT_S = 0.1  # nobody holds the charger here: the answer is given below
    driver, cp = DriverFactory(), _charger()
    client = _api(driver)
    expires_at = (clock.now() + timedelta(minutes=7)).replace(microsecond=0)
    answer = _post(client, {"charge_point": cp.pk, "connector": 2, "expires_at": expires_at.isoformat()})
    assert answer.status_code == 202 and answer.json()["status"] == "PENDING"
    _answer(Reservation.objects.get())
    listed = client.get(URL).json()["results"]
    assert [(r["status"], r["connector"], r["any_connector"]) for r in listed] == [("RESERVED", 2, False)]
    detail = client.get(f"{URL}/{listed[0]['id']}").json()
    assert detail["expires_at"] == expires_at.isoformat().replace("+00:00", "Z")
    # Another driver sees nothing of it.
    assert _api(DriverFactory()).get(f"{URL}/{listed[0]['id']}").status_code == 404


def test_the_driver_session_shows_the_reservation_holding_its_connector():
    driver, cp = DriverFactory(), _charger()
    reservation = _answer(_reserve(driver, cp, evse_id=1)[0])
    session = DriverSessionFactory(driver=driver, charge_point=cp, evse_id=1)
    body = _api(driver).get(f"/api/v1/sessions/{session.pk}").json()
    assert body["reservation"] == {
        "id": reservation.pk,
        "status": "RESERVED",
        "expires_at": reservation.expires_at.isoformat().replace("+00:00", "Z"),
        "any_connector": False,
    }
    other = DriverSessionFactory(driver=driver, charge_point=cp, evse_id=2)
    assert _api(driver).get(f"/api/v1/sessions/{other.pk}").json()["reservation"] is None
    assert DriverSession.objects.count() == 2


def test_the_schema_documents_every_code(client):
    schema = client.get(reverse("api-schema"), {"format": "json"}).content.decode()
    for code in (
        "connector_reserved",
        "reservation_exists",
        "connector_occupied",
        "connector_faulted",
        "connector_unavailable",
        "reservation_rejected",
        "charger_offline",
        "charger_no_answer",
        "any_connector_unsupported",
        "no_free_connector",
        "idempotency_key_reused",
        "charger_not_found",
        "connector_not_found",
        "idempotency_key_required",
        "validation_failed",
    ):
        assert code in schema, code
