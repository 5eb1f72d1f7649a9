"""Generated over the operator API's own routes (its URL resolver, checked against the OpenAPI schema):

- every route, for every staff role (and a member without one), as staff of organisation A over a world
  holding only organisation B's rows: 403 where the role lacks the permission the route names, else 404
  for B's object (as for an unknown one), an empty list, or a refusal to write into B;
- every write endpoint produces exactly one audit record.

A new route or write endpoint is walked automatically; one without a case below fails until given one."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.urls import URLPattern, reverse
from django.utils import translation
from drf_spectacular.generators import SchemaGenerator

from apps.accounts.choices import Role
from apps.accounts.models import AuditRecord
from apps.ocpp_gateway.api import operator_urls
from tests.factories import (
    ChargePointFactory,
    ChargingLimitFactory,
    ChargingSessionFactory,
    IdTokenFactory,
    OcppCommandFactory,
    OcppMessageFactory,
    ReservationFactory,
)
from tests.ocpp_gateway.operator import appear_online, staff_client

pytestmark = pytest.mark.django_db

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
NO_ROLE = "no role"
ACTORS = [*Role.values, NO_ROLE]


def _charger(org: Any) -> dict[str, Any]:
    cp = ChargePointFactory(organisation=org)
    appear_online(cp.identity)
    return {"identity": cp.identity}


# How to make an object of `org` that a route with path parameters names (its kwargs).
OBJECTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "operator-charge-point": _charger,
    "operator-charge-point-commands": _charger,
    "operator-command": lambda org: {
        "pk": OcppCommandFactory(charge_point=ChargePointFactory(organisation=org)).pk
    },
    "operator-transaction": lambda org: {
        "pk": ChargingSessionFactory(charge_point=ChargePointFactory(organisation=org)).pk
    },
    "operator-reservation": lambda org: {
        "pk": ReservationFactory(charge_point=ChargePointFactory(organisation=org)).pk
    },
    "operator-charging-profile": lambda org: {
        "pk": ChargingLimitFactory(charge_point=ChargePointFactory(organisation=org)).pk
    },
    "operator-token": lambda org: {"pk": IdTokenFactory(organisation=org).pk},
    "operator-token-block": lambda org: {"pk": IdTokenFactory(organisation=org).pk},
    "operator-token-expire": lambda org: {"pk": IdTokenFactory(organisation=org).pk},
}

# A valid body for each write (route name, method), given the organisation it writes for.
BODIES: dict[tuple[str, str], Callable[[Any], dict[str, Any]]] = {
    ("operator-charge-point-commands", "POST"): lambda org: {"action": "Reset", "payload": {"type": "Soft"}},
    ("operator-tokens", "POST"): lambda org: {"uid": "04DEAD01", "organisation": org.slug},
    ("operator-token-block", "POST"): lambda org: {},
    ("operator-token-expire", "POST"): lambda org: {},
}


def _world(org: Any) -> None:
    """One row of every kind the operator API shows, all of `org` (lists must not show them to others)."""
    for make in OBJECTS.values():
        make(org)
    OcppMessageFactory(charge_point=ChargePointFactory(organisation=org))


def _routes() -> list[tuple[str, URLPattern, str]]:
    found = []
    for pattern in operator_urls.urlpatterns:
        view = pattern.callback.view_class
        for method in sorted(view.operator_permissions):
            found.append((pattern.name, pattern, method))
    return found


ROUTES = _routes()
ROUTE_IDS = [f"{method} {name}" for name, _pattern, method in ROUTES]


def _call(client: Any, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    return getattr(client, method.lower())(url, body or {}, format="json")


def test_the_routes_walked_are_the_schemas_operator_operations():
    """Path parameters compared as placeholders (the schema names a `pk` `id`)."""
    with translation.override("en"):
        schema = SchemaGenerator().get_schema(request=None, public=True)
    in_schema = {
        (re.sub(r"\{[^}]+\}", "{}", path), method.upper())
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/operator/")
        for method in item
    }
    walked = {
        ("/api/v1/operator/" + re.sub(r"<[^>]+>", "{}", str(pattern.pattern)), method)
        for _name, pattern, method in ROUTES
    }
    assert walked == in_schema
    for path, item in schema["paths"].items():
        if path.startswith("/api/v1/operator/"):
            assert all(operation["tags"] == ["operator"] for operation in item.values()), path


def test_every_route_and_write_has_a_case():
    for name, pattern, method in ROUTES:
        if pattern.pattern.converters:
            assert name in OBJECTS, f"{name}: add how to make its object to OBJECTS"
        if method in WRITES:
            assert (name, method) in BODIES, f"{method} {name}: add a valid body to BODIES"


@pytest.mark.parametrize("role", ACTORS)
@pytest.mark.parametrize(("name", "pattern", "method"), ROUTES, ids=ROUTE_IDS)
def test_other_organisations_objects_are_404_and_roles_without_the_permission_403(
    org_a, org_b, role, name, pattern, method
):
    user, client = staff_client(org_a, role=None if role == NO_ROLE else role)
    _world(org_b)
    allowed = user.has_perms(pattern.callback.view_class.operator_permissions[method])
    kwargs = OBJECTS[name](org_b) if pattern.pattern.converters else {}
    body = BODIES[(name, method)](org_b) if method in WRITES else None
    audits = AuditRecord.objects.count()

    response = _call(client, method, reverse(name, kwargs=kwargs), body)

    if not allowed:
        assert response.status_code == 403, response.json()
        assert response.json()["code"] == "permission_denied"
    elif kwargs:
        assert response.status_code == 404, response.json()
    elif method == "GET":
        assert response.status_code == 200, response.json()
        assert response.json()["results"] == [], "organisation B's rows are listed"
    else:  # a write into organisation B
        assert response.status_code == 400, response.json()
    assert AuditRecord.objects.count() == audits, "a refused request left an audit record"


@pytest.mark.parametrize(("name", "pattern", "method"), ROUTES, ids=ROUTE_IDS)
def test_the_same_route_answers_for_the_objects_own_organisation(org_a, name, pattern, method):
    """The counterpart of the 404s: an operator admin of the object's organisation gets it."""
    _user, client = staff_client(org_a, role=Role.OPERATOR_ADMIN)
    kwargs = OBJECTS[name](org_a) if pattern.pattern.converters else {}
    body = BODIES[(name, method)](org_a) if method in WRITES else None
    response = _call(client, method, reverse(name, kwargs=kwargs), body)
    assert response.status_code in (200, 201), response.json()


@pytest.mark.parametrize(
    ("name", "method"),
    [(name, method) for name, _pattern, method in ROUTES if method in WRITES],
    ids=[f"{method} {name}" for name, _pattern, method in ROUTES if method in WRITES],
)
def test_every_write_endpoint_produces_exactly_one_audit_record(org_a, name, method):
    user, client = staff_client(org_a, role=Role.OPERATOR_ADMIN)
    pattern = next(p for n, p, m in ROUTES if (n, m) == (name, method))
    kwargs = OBJECTS[name](org_a) if pattern.pattern.converters else {}
    before = set(AuditRecord.objects.values_list("pk", flat=True))

    response = _call(client, method, reverse(name, kwargs=kwargs), BODIES[(name, method)](org_a))

    assert response.status_code in (200, 201), response.json()
    new = AuditRecord.objects.exclude(pk__in=before)
    assert new.count() == 1, [(r.action, r.source) for r in new]
    record = new.get()
    assert (record.actor, record.source, record.organisation_id) == (user, "api", org_a.pk)


def test_the_roles_as_the_product_defines_them(org_a):
    """What each role may do in the operator API, spelled out (the generated walk derives it)."""
    cp = ChargePointFactory(organisation=org_a, identity="A-ROLES")
    appear_online(cp.identity)
    token = IdTokenFactory(organisation=org_a)
    command = {"action": "Reset", "payload": {"type": "Soft"}}
    expected = {
        Role.OPERATOR_ADMIN: (201, 201, 200),
        Role.TECHNICIAN: (201, 403, 403),
        Role.SUPPORT: (403, 403, 200),
        Role.FINANCE: (403, 403, 403),
    }
    for role, (send, create, block) in expected.items():
        _user, client = staff_client(org_a, role=role)
        got = (
            _call(
                client, "POST", f"/api/v1/operator/charge-points/{cp.identity}/commands", command
            ).status_code,
            _call(client, "POST", "/api/v1/operator/tokens", {"uid": f"04AB{len(role):04X}"}).status_code,
            _call(client, "POST", f"/api/v1/operator/tokens/{token.pk}/block").status_code,
        )
        assert got == (send, create, block), role
