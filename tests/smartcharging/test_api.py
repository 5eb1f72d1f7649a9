"""POST /api/v1/grid-events and friends: utility systems declare demand-response events for one
operator's sites with the API key issued to them in the admin (shown once, hashed at rest, revocable)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.models import AuditRecord
from apps.smartcharging import integrations, services
from apps.smartcharging.models import GridEvent, GridIntegration, Site
from cpo import clock
from tests.factories import LocationFactory, OrganisationFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/grid-events"


@pytest.fixture(autouse=True)
def no_celery(monkeypatch):
    """Rebalances go to Celery after commit; here they are only recorded."""
    queued: list[tuple] = []
    monkeypatch.setattr(services.current_app, "send_task", lambda *a, **k: queued.append(a))
    monkeypatch.setattr(
        services, "site_rebalance_dispatch", lambda *, site_id: queued.append(("now", site_id))
    )
    cache.clear()
    return queued


@pytest.fixture
def org():
    return OrganisationFactory()


def _site(org, budget="64") -> Site:
    location = LocationFactory(organisation=org)
    return Site.objects.create(organisation=org, location=location, max_current_a=D(budget))


@pytest.fixture
def issued(org):
    integration, key = integrations.grid_integration_create(organisation=org, name="DSO Nord")
    return integration, key


def _api(key: str | None) -> APIClient:
    client = APIClient()
    if key is not None:
        client.credentials(HTTP_X_API_KEY=key)
    return client


def test_a_utility_cuts_its_operators_sites_for_a_window(issued, org, django_capture_on_commit_callbacks):
    integration, key = issued
    site = _site(org)
    with django_capture_on_commit_callbacks(execute=True):
        response = _api(key).post(
            URL, {"sites": [site.pk], "minutes": 30, "reference": "DR-1"}, format="json"
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    event = GridEvent.objects.get()
    assert body["id"] == event.pk and body["sites"] == [site.pk]
    assert (body["reduce_percent"], body["status"], body["reference"], body["ended_at"]) == (
        "20.00",
        "active",
        "DR-1",
        None,
    )
    assert event.ends_at - event.starts_at == timedelta(minutes=30)
    assert (event.integration, event.organisation, event.source) == (integration, org, "api")
    assert services.site_budget_a(site=site) == D("51.2")
    audit = AuditRecord.objects.get(action="gridevent.declare")
    assert (audit.actor_repr, audit.source, audit.organisation_id) == ("DSO Nord", "api", org.pk)
    assert audit.detail["integration"] == integration.pk


def test_locations_name_all_their_sites_and_the_same_reference_returns_the_same_event(issued, org):
    _integration, key = issued
    site = _site(org)
    second = Site.objects.create(organisation=org, location=site.location, name="Hall", max_current_a=D("32"))
    starts = clock.now() + timedelta(hours=1)
    payload = {
        "locations": [site.location_id],
        "reduce_percent": "35.5",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "reference": "DR-2",
    }
    first = _api(key).post(URL, payload, format="json")
    assert first.status_code == 201
    assert first.json()["sites"] == sorted([site.pk, second.pk])
    assert first.json()["status"] == "scheduled"
    again = _api(key).post(URL, payload, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert GridEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (None, "not_authenticated"),
        ("", "invalid_api_key"),
        ("nonsense", "invalid_api_key"),
        ("gi0000000000.0123456789abcdef0123456789abcdef01234567", "invalid_api_key"),
        (
            "{prefix}.0123456789abcdef0123456789abcdef01234567",
            "invalid_api_key",
        ),  # right prefix, wrong secret
    ],
)
def test_without_a_valid_key_401_and_nothing_is_stored(issued, org, key, code):
    integration, _key = issued
    site = _site(org)
    client = _api(key.format(prefix=integration.key_prefix) if key is not None else None)
    response = client.post(URL, {"sites": [site.pk], "minutes": 30}, format="json")
    assert response.status_code == 401 and response.json()["code"] == code
    assert "X-API-Key" in response.headers["WWW-Authenticate"]
    assert client.get(URL).status_code == 401
    assert not GridEvent.objects.exists()


def test_a_drivers_jwt_or_the_admins_session_is_no_key(org, client):
    site = _site(org)
    client.force_login(StaffUserFactory(is_superuser=True))
    response = client.post(URL, {"sites": [site.pk], "minutes": 30}, content_type="application/json")
    assert response.status_code == 401
    assert not GridEvent.objects.exists()


def test_the_key_is_hashed_at_rest_revocable_and_replaced_by_a_new_one(issued, org):
    integration, key = issued
    integration.refresh_from_db()
    prefix, secret = key.split(".")
    assert integration.key_prefix == prefix and secret not in integration.key_hash
    assert integration.key_hash.startswith("hmac-sha256$")
    assert _api(key).get(URL).status_code == 200
    integration.refresh_from_db()
    assert integration.last_used_at is not None
    new_key = integrations.grid_integration_new_key(integration=integration)
    assert _api(key).get(URL).status_code == 401
    assert _api(new_key).get(URL).status_code == 200
    assert integrations.grid_integration_revoke(integration=integration) is True
    assert integrations.grid_integration_revoke(integration=integration) is False
    response = _api(new_key).get(URL)
    assert response.status_code == 401 and response.json()["code"] == "invalid_api_key"
    assert [a.action for a in AuditRecord.objects.filter(target_id=str(integration.pk)).order_by("pk")] == [
        "gridintegration.create",
        "gridintegration.new_key",
        "gridintegration.revoke",
    ]


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"minutes": 30}, "no_sites", None),
        ({"sites": [], "locations": [], "minutes": 30}, "no_sites", None),
        ({"sites": ["{site}"]}, "validation_failed", "ends_at"),  # neither ends_at nor minutes
        ({"sites": ["{site}"], "minutes": 30, "ends_at": "{later}"}, "validation_failed", "ends_at"),
        ({"sites": ["{site}"], "minutes": 0}, "validation_failed", "minutes"),
        ({"sites": ["{site}"], "minutes": 30, "reduce_percent": 0}, "validation_failed", "reduce_percent"),
        ({"sites": ["{site}"], "minutes": 30, "reduce_percent": 120}, "validation_failed", "reduce_percent"),
        (
            {"sites": ["{site}"], "minutes": 30, "reduce_percent": "lots"},
            "validation_failed",
            "reduce_percent",
        ),
        ({"sites": ["x"], "minutes": 30}, "validation_failed", "sites"),
        ({"sites": ["{site}"], "starts_at": "{later}", "ends_at": "{now}"}, "invalid_window", None),
        ({"sites": ["{site}"], "starts_at": "{long_ago}", "minutes": 5}, "invalid_window", None),
    ],
)
def test_bad_input_is_400_with_its_code_and_nothing_is_stored(issued, org, payload, code, field):
    _integration, key = issued
    site = _site(org)
    now = clock.now()
    values = {
        "site": site.pk,
        "now": now.isoformat(),
        "later": (now + timedelta(hours=1)).isoformat(),
        "long_ago": (now - timedelta(days=1)).isoformat(),
    }

    def fill(value):
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str) and value.startswith("{"):
            return values[value.strip("{}")]
        return value

    response = _api(key).post(URL, {k: fill(v) for k, v in payload.items()}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    if field:
        assert field in response.json()["fields"]
    assert not GridEvent.objects.exists()
    assert not AuditRecord.objects.filter(action="gridevent.declare").exists()


def test_another_operators_sites_are_403_unknown_ones_404_and_nothing_is_stored(issued, org):
    _integration, key = issued
    mine = _site(org)
    theirs = _site(OrganisationFactory())
    without_site = LocationFactory(organisation=org)
    cases = [
        ({"sites": [mine.pk, theirs.pk]}, 403, "site_not_allowed"),
        ({"locations": [theirs.location_id]}, 403, "location_not_allowed"),
        ({"sites": [mine.pk, 987654321]}, 404, "site_not_found"),
        ({"locations": [987654321]}, 404, "location_not_found"),
        ({"locations": [without_site.pk]}, 404, "site_not_found"),
    ]
    for payload, status, code in cases:
        response = _api(key).post(URL, {**payload, "minutes": 30}, format="json")
        assert (response.status_code, response.json()["code"]) == (status, code), payload
    assert not GridEvent.objects.exists()


def test_an_integration_lists_reads_and_cancels_only_its_own_events(
    issued, org, django_capture_on_commit_callbacks, no_celery
):
    _integration, key = issued
    site = _site(org)
    _other, other_key = integrations.grid_integration_create(organisation=org, name="Aggregator")
    own = _api(key).post(URL, {"sites": [site.pk], "minutes": 60}, format="json").json()
    foreign = _api(other_key).post(URL, {"sites": [site.pk], "minutes": 60}, format="json").json()
    by_operator = services.grid_event_declare(
        sites=[site], starts_at=clock.now(), ends_at=clock.now() + timedelta(minutes=5)
    )
    listed = _api(key).get(URL).json()
    assert [e["id"] for e in listed["results"]] == [own["id"]]
    assert _api(key).get(f"{URL}/{own['id']}").json()["status"] == "active"
    for pk in (foreign["id"], by_operator.pk, 987654321):
        response = _api(key).get(f"{URL}/{pk}")
        assert (response.status_code, response.json()["code"]) == (404, "grid_event_not_found")
        assert _api(key).delete(f"{URL}/{pk}").status_code == 404
    no_celery.clear()
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = _api(key).delete(f"{URL}/{own['id']}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "ended" and cancelled.json()["ended_at"] is not None
    assert no_celery == [("now", site.pk)]
    # The other cuts remain: the 20% of the other integration.
    assert services.site_budget_a(site=site) == D("51.2")
    audit = AuditRecord.objects.get(action="gridevent.end")
    assert (audit.actor_repr, audit.source) == ("DSO Nord", "api")
    # Cancelling again changes nothing.
    again = _api(key).delete(f"{URL}/{own['id']}")
    assert again.status_code == 200 and again.json()["ended_at"] == cancelled.json()["ended_at"]
    assert AuditRecord.objects.filter(action="gridevent.end").count() == 1


# --- the admin issues keys --------------------------------------------------------------------------------
def test_the_admin_shows_a_new_integrations_key_once_and_keeps_only_its_hash(client, org):
    client.force_login(StaffUserFactory(is_superuser=True))
    response = client.post(
        reverse("admin:smartcharging_gridintegration_add"),
        {"organisation": org.pk, "name": "DSO Süd"},
        follow=True,
    )
    assert response.status_code == 200
    integration = GridIntegration.objects.get(name="DSO Süd")
    shown = [str(m) for m in response.context["messages"]]
    key = next(m.split("<code>")[1].split("</code>")[0] for m in shown if "<code>" in m)
    assert key.startswith(integration.key_prefix + ".")
    assert key.split(".")[1] not in integration.key_hash
    assert _api(key).get(URL).status_code == 200
    # Revoked in the admin: refused.
    client.post(
        reverse("admin:smartcharging_gridintegration_changelist"),
        {"action": "revoke", "_selected_action": [integration.pk]},
    )
    assert _api(key).get(URL).status_code == 401


def test_an_operator_admin_issues_keys_for_their_own_operator_only(client, org):
    admin_user = StaffUserFactory(organisation=org, role="Operator admin")
    other = OrganisationFactory()
    theirs, _key = integrations.grid_integration_create(organisation=other, name="Theirs")
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:smartcharging_gridintegration_add"),
        {"organisation": org.pk, "name": "Ours"},
        follow=True,
    )
    assert response.status_code == 200
    assert GridIntegration.objects.filter(organisation=org, name="Ours").exists()
    # Another operator: not offered, not visible.
    response = client.post(
        reverse("admin:smartcharging_gridintegration_add"), {"organisation": other.pk, "name": "Sneaky"}
    )
    assert not GridIntegration.objects.filter(name="Sneaky").exists()
    url = reverse("admin:smartcharging_gridintegration_change", args=[theirs.pk])
    assert client.get(url).status_code == 404
    # A technician may not issue keys.
    client.force_login(StaffUserFactory(organisation=org, role="Technician"))
    assert client.get(reverse("admin:smartcharging_gridintegration_add")).status_code == 403
