"""What the driver API answers to input it cannot take: JSON nested too deeply is a 400 parse_error (as any
unreadable JSON), and a body over DATA_UPLOAD_MAX_MEMORY_SIZE a 413 request_too_large, both in the one
JSON error shape (never a 500 or Django's HTML error page)."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.accounts.models import User

LOGIN = "/api/v1/auth/token"


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


def post_raw(body: str | bytes):
    return APIClient().post(LOGIN, body, content_type="application/json")


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "detail", "fields"}, body
    return body


def nested(levels: int) -> dict:
    """{"email": [[...[1]...]], "password": "x"}: `levels` levels of nesting in all."""
    value: object = 1
    for _ in range(levels - 1):
        value = [value]
    return {"email": value, "password": "x"}


@pytest.mark.django_db
@pytest.mark.parametrize("levels", [100_000, 2_000])
def test_deeply_nested_json_is_a_parse_error_not_a_500(levels):
    body = error_of(post_raw("[" * levels + "]" * levels), 400)
    assert body["code"] == "parse_error" and "32" in body["detail"]
    assert not User.objects.exists()


@pytest.mark.django_db
def test_nesting_is_capped_at_the_configured_depth(settings):
    settings.CPO_API_MAX_JSON_DEPTH = 32
    # 32 levels are read (the login then says what is wrong with the input) ...
    assert error_of(post_raw(json.dumps(nested(32))), 400)["code"] == "validation_failed"
    # ... 33 are not, though Python could parse them
    body = error_of(post_raw(json.dumps(nested(33))), 400)
    assert body["code"] == "parse_error" and body["fields"] == {}


@pytest.mark.django_db
def test_malformed_json_keeps_its_answer():
    assert error_of(post_raw("{not json"), 400)["code"] == "parse_error"


@pytest.mark.django_db
def test_a_body_over_the_django_limit_is_413_in_the_error_shape(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = error_of(post_raw(json.dumps({"email": "a@example.com", "password": "x" * 5000})), 413)
    assert body["code"] == "request_too_large" and "4096" in body["detail"]
    assert body["fields"] == {}
