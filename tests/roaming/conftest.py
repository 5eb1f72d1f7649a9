"""Roaming fixtures: the test eMSP on loopback, a published site of ours with a tariff, and an OCPI
client for our endpoints (Django's test client, the specification's headers, the envelope checked)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from apps.roaming.credentials import token_a_issue
from apps.roaming.models import Party
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    EvseFactory,
    LocationFactory,
    OrganisationFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
    VatRateFactory,
)
from tests.roaming import ocpi_spec
from tests.roaming.emsp import CPO, Emsp, EmspServer


@pytest.fixture(autouse=True)
def _ocpi_settings(settings):
    settings.CPO_OCPI_COUNTRY_CODE, settings.CPO_OCPI_PARTY_ID = CPO
    settings.CPO_OCPI_BASE_URL = "http://testserver"
    settings.CPO_OCPI_PUSH_BACKOFF_S = 1
    # Real-time answers and "party down" marks of earlier tests (only those: the cache shares Redis with
    # the channel layer and the broker).
    client = cache._cache.get_client(None, write=True)
    for key in client.scan_iter(match="*roaming:*"):
        client.delete(key)


@pytest.fixture
def emsp() -> Emsp:
    with EmspServer() as emsp:
        yield emsp
    assert not emsp.errors, "\n".join(emsp.errors)


@dataclass
class Site:
    org: Any
    location: Any
    charge_point: Any
    evse: Any
    connector: Any
    tariff: Any


@pytest.fixture
def site(db) -> Site:
    org = OrganisationFactory(slug="roam-cpo", name="Roam CPO", country="DE")
    VatRateFactory(country="DE", rate=Decimal("19.00"))
    location = LocationFactory(organisation=org, name="Alexanderplatz", postal_code="10178")
    cp = ChargePointFactory(organisation=org, location=location, identity="ROAM-0001")
    evse = EvseFactory(charge_point=cp, evse_id=1)
    connector = ConnectorFactory(evse=evse, connector_id=1)
    tariff = TariffFactory(organisation=org, name="Standard", alt_text={"en": "0.30/kWh"})
    TariffElementFactory(tariff=tariff, energy_price=Decimal("0.30"), flat_price=Decimal("1.00"))
    TariffAssignmentFactory(tariff=tariff, organisation=org)
    return Site(org, location, cp, evse, connector, tariff)


class Ocpi:
    """Calls to our /ocpi/ with the specification's headers (Django's test client)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        body: Any = None,
        route: tuple[str, str] | None = ("NL", "EMS"),
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> tuple[int, dict[str, Any], Any]:
        request_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        extra = {"HTTP_X_REQUEST_ID": request_id, "HTTP_X_CORRELATION_ID": correlation_id}
        if token is not None:
            extra["HTTP_AUTHORIZATION"] = "Token " + base64.b64encode(token.encode()).decode()
        if route is not None:
            extra |= {
                "HTTP_OCPI_FROM_COUNTRY_CODE": route[0],
                "HTTP_OCPI_FROM_PARTY_ID": route[1],
                "HTTP_OCPI_TO_COUNTRY_CODE": CPO[0],
                "HTTP_OCPI_TO_PARTY_ID": CPO[1],
            }
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        response = self.client.generic(
            method,
            path + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""),
            data=json.dumps(body) if body is not None else "",
            content_type="application/json",
            **extra,
        )
        payload = json.loads(response.content)
        problems = ocpi_spec.envelope_errors(payload)
        assert not problems, problems
        assert response["X-Request-ID"] == request_id
        assert response["X-Correlation-ID"] == correlation_id
        return response.status_code, payload, response


@pytest.fixture
def ocpi(client) -> Ocpi:
    return Ocpi(client)


@pytest.fixture
def registered(site, emsp, ocpi) -> Party:
    """The eMSP registered with us (token A issued by us, handshake through our credentials endpoint);
    emsp.cpo_token is its token C for us."""
    party, token_a = token_a_issue(organisation=site.org, name="Test eMSP")
    token_b = "emsp-token-b-for-the-cpo"
    emsp.accepted.add(token_b)
    status, body, _ = ocpi(
        "POST", "/ocpi/2.2.1/credentials", token=token_a, body=emsp.credentials(token_b), route=None
    )
    assert status == 200, body
    emsp.cpo_token = body["data"]["token"]
    party.refresh_from_db()
    return party
