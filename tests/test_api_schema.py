"""The driver API's OpenAPI schema is committed (config/openapi.yaml). A change that would break a
released app fails here; any other change must be committed with `make schema`."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.utils import translation
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiYamlRenderer

from tests.openapi_diff import breaking_changes

COMMITTED = Path(settings.BASE_DIR) / "config" / "openapi.yaml"


def _generated() -> dict:
    with translation.override("en"):
        schema = SchemaGenerator().get_schema(request=None, public=True)
        return yaml.safe_load(OpenApiYamlRenderer().render(schema, renderer_context={}))


@pytest.fixture(scope="module")
def schemas() -> tuple[dict, dict]:
    return yaml.safe_load(COMMITTED.read_text()), _generated()


def test_no_breaking_change_against_the_committed_schema(schemas):
    committed, generated = schemas
    problems = breaking_changes(committed, generated)
    assert not problems, "breaking API changes (a released app would break):\n" + "\n".join(problems)


def test_the_committed_schema_is_current(schemas):
    committed, generated = schemas
    assert committed == generated, (
        "the API changed compatibly: run `make schema` and commit config/openapi.yaml"
    )


def test_schema_is_served_and_docs_work_offline(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200 and b"/api/v1/sessions" in response.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html and "cdn.jsdelivr" not in html and "unpkg" not in html


# --- the checker itself: each kind of break is caught, compatible changes are not -----------------------


def _mutated(schemas, change) -> list[str]:
    committed = schemas[0]
    new = copy.deepcopy(committed)
    change(new)
    return breaking_changes(committed, new)


def test_checker_catches_a_removed_operation(schemas):
    assert _mutated(schemas, lambda s: s["paths"]["/api/v1/sessions"].pop("post")) == [
        "POST /api/v1/sessions: removed"
    ]


def test_checker_catches_a_new_required_input(schemas):
    def change(s):
        s["components"]["schemas"]["SessionStartInputRequest"]["required"].append("vehicle")
        s["components"]["schemas"]["SessionStartInputRequest"]["properties"]["vehicle"] = {"type": "string"}

    assert _mutated(schemas, change) == ["POST /api/v1/sessions request.vehicle: now required"]


def test_checker_catches_a_removed_or_retyped_response_field(schemas):
    def removed(s):
        s["components"]["schemas"]["SessionOutput"]["properties"].pop("energy_wh")

    assert any("energy_wh: removed from the response" in p for p in _mutated(schemas, removed))

    def retyped(s):
        s["components"]["schemas"]["SessionOutput"]["properties"]["energy_wh"]["type"] = "string"

    assert any("energy_wh: type integer became string" in p for p in _mutated(schemas, retyped))


def test_checker_lets_compatible_changes_pass(schemas):
    def change(s):
        s["components"]["schemas"]["SessionOutput"]["properties"]["new_field"] = {"type": "string"}
        s["paths"]["/api/v1/new"] = {"get": {"responses": {"200": {"description": "ok"}}}}

    assert _mutated(schemas, change) == []
