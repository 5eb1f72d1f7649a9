"""The driver API authenticates drivers' JWTs and nothing else: the admin's session cookie is no way in
(staff once started a charge on another operator's charger with it), and a JWT of a staff account is
refused everywhere, the live stream included."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.urls import URLPattern
from rest_framework import permissions
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from apps.charging.models import CardLinkRequest, DriverSession
from apps.ocpp_gateway.models import OcppCommand
from apps.stations.choices import ConnectorStatus
from config import api_router
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    DriverFactory,
    DriverSessionFactory,
    EvseFactory,
    IdTokenFactory,
    OrganisationFactory,
    StaffUserFactory,
)

LIVE = "api-session-live"


def _needs_authentication(pattern: URLPattern) -> list[str]:
    """The methods of a route that only a signed-in driver may call."""
    if pattern.name == LIVE:
        return ["GET"]
    view = pattern.callback.cls
    if (
        not view.authentication_classes
        or not view.permission_classes
        or any(issubclass(p, permissions.AllowAny) for p in view.permission_classes)
    ):
        return []  # open to all (register, log in, reset): nobody is signed in there
    return [m.upper() for m in view.http_method_names if m not in ("options", "head") and hasattr(view, m)]


ROUTES = [
    (method, pattern.name) for pattern in api_router.urlpatterns for method in _needs_authentication(pattern)
]


def test_the_routes_are_all_here():
    # a new route must land in ROUTES by itself; this guards the walk above
    names = {name for _method, name in ROUTES}
    assert {
        "api-me",
        "api-tokens",
        "api-sessions",
        "api-session-stop",
        "api-chargers-nearby",
        LIVE,
        "api-email-resend",
    } <= names
    assert ("POST", "api-sessions") in ROUTES and ("DELETE", "api-me") in ROUTES


def _path(name: str, pk: int) -> str:
    from django.urls import reverse

    pattern = next(p for p in api_router.urlpatterns if p.name == name)
    return reverse(name, kwargs={"pk": pk} if "<int:pk>" in str(pattern.pattern) else {})


@pytest.fixture
def world(db):
    """Staff of operator A with a session cookie; a charger of operator B; a driver's session and card."""
    staff = StaffUserFactory(organisation=OrganisationFactory(), role="Operator admin")
    charger = ChargePointFactory(organisation=OrganisationFactory())
    ConnectorFactory(evse=EvseFactory(charge_point=charger, evse_id=1), status=ConnectorStatus.AVAILABLE)
    driver = DriverFactory()
    session = DriverSessionFactory(driver=driver, charge_point=charger)
    card = IdTokenFactory(owner=driver)
    return {"staff": staff, "charger": charger, "driver": driver, "session": session, "card": card}


def _assert_401(response) -> dict:
    assert response.status_code == 401, (response.status_code, response.content[:300])
    body = json.loads(response.content)
    assert set(body) == {"code", "detail", "fields"}, body
    return body


@pytest.mark.django_db
@pytest.mark.parametrize("method,name", ROUTES)
@pytest.mark.parametrize("who", ["staff", "superuser"])
def test_the_admin_session_cookie_is_no_way_into_the_driver_api(world, method, name, who, superuser):
    client = APIClient()
    client.force_login(world["staff"] if who == "staff" else superuser)  # the admin's session cookie
    pk = (
        world["card"].pk
        if name == "api-token-detail"
        else (world["charger"].pk if name == "api-charger-detail" else world["session"].pk)
    )
    payload = (
        {"charge_point": world["charger"].pk, "connector": 1}
        if name == "api-sessions"
        else {"charge_point": world["charger"].pk, "uid": "04A1B2C3"}
        if name == "api-tokens"
        else {"full_name": "Mallory"}
    )
    response = client.generic(
        method,
        _path(name, pk),
        json.dumps(payload) if method in ("POST", "PATCH") else "",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert _assert_401(response)["code"] == "not_authenticated"
    # nothing happened: no session, no command to the charger, the driver and the card unchanged
    assert list(DriverSession.objects.values_list("pk", flat=True)) == [world["session"].pk]
    assert not OcppCommand.objects.exists()
    assert not CardLinkRequest.objects.exists()
    world["card"].refresh_from_db()
    assert world["card"].owner_id == world["driver"].pk
    assert world["driver"].__class__.objects.filter(full_name="Mallory").count() == 0


@pytest.mark.django_db
def test_a_staff_jwt_is_refused(world):
    # a token minted for a staff account (a driver later made staff, a leaked signing of old) gets nowhere
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(world['staff'])}")
    assert _assert_401(client.get("/api/v1/me"))["code"] == "not_a_driver"
    response = client.post(
        "/api/v1/sessions",
        {"charge_point": world["charger"].pk, "connector": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )
    assert _assert_401(response)["code"] == "not_a_driver"
    assert DriverSession.objects.count() == 1 and not OcppCommand.objects.exists()
    # nor does a staff refresh token turn into a fresh pair
    refreshed = APIClient().post(
        "/api/v1/auth/token/refresh", {"refresh": str(RefreshToken.for_user(world["staff"]))}, format="json"
    )
    assert _assert_401(refreshed)["code"] == "no_active_account"


@pytest.mark.django_db
def test_a_driver_made_staff_loses_the_driver_api(world):
    driver = world["driver"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(driver)}")
    assert client.get("/api/v1/me").status_code == 200
    driver.organisation = OrganisationFactory()
    driver.save(update_fields=["organisation"])
    assert _assert_401(client.get("/api/v1/me"))["code"] == "not_a_driver"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_live_stream_refuses_staff_tokens_and_cookies():
    staff = await sync_to_async(lambda: StaffUserFactory(organisation=OrganisationFactory()))()
    session = await sync_to_async(lambda: DriverSessionFactory(driver=staff))()  # as if from a driver past
    response = await AsyncClient().get(
        f"/api/v1/sessions/{session.pk}/live",
        headers={"Authorization": f"Bearer {AccessToken.for_user(staff)}"},
    )
    assert _assert_401(response)["code"] == "not_authenticated"
    client = AsyncClient()
    await sync_to_async(client.force_login)(staff)
    assert _assert_401(await client.get(f"/api/v1/sessions/{session.pk}/live"))["code"] == "not_authenticated"


@pytest.mark.django_db
def test_the_schema_names_the_jwt_only_and_is_still_served(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "jwtAuth" in text and "cookieAuth" not in text
    assert client.get("/api/docs/").status_code == 200
