"""Property-based run of the operator API against its own OpenAPI schema (schemathesis): generated
requests, valid and invalid, for every operator operation, as an operator admin with a staff API token
over a small network (a connected charger, a session, a token); none may answer 5xx, and every answer
matches its documented status codes."""

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
from schemathesis.checks import not_a_server_error, status_code_conformance

from apps.accounts.services import api_token_create
from apps.ocpp_gateway.redis_clients import sync_redis
from tests.factories import (
    ChargePointFactory,
    ChargingSessionFactory,
    ConnectorFactory,
    EvseFactory,
    IdTokenFactory,
    OrganisationFactory,
    StaffUserFactory,
)
from tests.ocpp_gateway.operator import appear_online

SCHEMA = yaml.safe_load((Path(settings.BASE_DIR) / "config" / "openapi.yaml").read_text())
schema = schemathesis.openapi.from_dict(SCHEMA).include(path_regex=r"^/api/v1/operator/")
schema.app = get_wsgi_application()


@pytest.fixture
def staff_token(db):
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    cache.clear()
    for key in sync_redis().scan_iter(match="cpo:ocpp:*", count=1000):
        sync_redis().delete(key)
    org = OrganisationFactory(slug="schemathesis-op")
    cp = ChargePointFactory(pk=1, organisation=org, identity="CP-1")
    ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1))
    appear_online("CP-1")
    ChargingSessionFactory(pk=1, charge_point=cp)
    IdTokenFactory(pk=1, organisation=org)
    _token, key = api_token_create(user=StaffUserFactory(organisation=org, role="Operator admin"))
    yield key
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis_settings(
    max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_no_server_errors_and_documented_statuses(case, staff_token):
    response = case.call(headers={"Authorization": f"Token {staff_token}"})
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
