"""Helpers for the operator API tests: staff with a role and an API token, a client that sends it, a
charger that looks connected (a presence record) without a socket."""

from __future__ import annotations

import time
from typing import Any

from rest_framework.test import APIClient

from apps.accounts.services import api_token_create
from apps.ocpp_gateway.presence import PREFIX
from apps.ocpp_gateway.redis_clients import sync_redis
from tests.factories import StaffUserFactory

API = "/api/v1/operator/"


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def staff_client(
    organisation: Any, role: str | None = "Operator admin", **extra: Any
) -> tuple[Any, APIClient]:
    """(staff member of `organisation` in `role`, a client sending a new API token of theirs)."""
    user = StaffUserFactory(organisation=organisation, role=role, **extra)
    _token, key = api_token_create(user=user, name="tests")
    return user, token_client(key)


def appear_online(identity: str, channel: str = "test.fake!channel") -> None:
    """A presence record as a connection holding `identity` writes it (commands are handed to `channel`)."""
    now = time.time()
    sync_redis().hset(
        PREFIX + identity,
        mapping={
            "channel": channel,
            "epoch": "1",
            "server": "test",
            "connected_at": now,
            "last_frame_at": now,
        },
    )
    sync_redis().expire(PREFIX + identity, 600)
