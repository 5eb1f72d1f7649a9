"""Property-based run of the driver API against its own OpenAPI schema (schemathesis): generated
requests, valid and invalid, for every operation, as a signed-in driver; none may answer 5xx.

The live stream (GET sessions/{id}/live) is left out: it is an async streaming view that the WSGI
transport cannot drive (tests/charging/test_api.py covers it, including its errors). Card payments run
against localstripe (tests/billing/conftest.py), as configured in production: without a Stripe key the
payment endpoints answer 503 by design.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
import yaml
from django.conf import settings
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis.checks import not_a_server_error

from tests.billing.conftest import localstripe, stripe_server  # noqa: F401 (fixtures: card payments on)
from tests.factories import ChargePointFactory, ConnectorFactory, DriverFactory, EvseFactory

SCHEMA = yaml.safe_load((Path(settings.BASE_DIR) / "config" / "openapi.yaml").read_text())
schema = schemathesis.openapi.from_dict(SCHEMA).exclude(path_regex=r"/live$")
schema.app = get_wsgi_application()


@pytest.fixture
def driver_token(db, stripe_server):  # noqa: F811 (the fixture imported above)
    # As Django's test client does: a request must not close the test's connection (its transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    cache.clear()  # rate limits of earlier tests
    cp = ChargePointFactory(pk=1)
    ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1))
    yield str(AccessToken.for_user(DriverFactory(email="schemathesis@example.com")))
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis_settings(
    max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_no_server_errors(case, driver_token):
    response = case.call(
        headers={"Authorization": f"Bearer {driver_token}", "Idempotency-Key": "schemathesis"}
    )
    case.validate_response(response, checks=[not_a_server_error])
