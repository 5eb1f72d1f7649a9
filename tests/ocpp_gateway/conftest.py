"""Fixtures for driving the real ASGI application with raw OCPP-J frames."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from apps.ocpp_gateway import auth
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.stations import keys
from tests.factories import ChargePointFactory, OrganisationFactory

KEY = "0123456789abcdef0123"


@pytest.fixture(autouse=True)
def clean_gateway_redis():
    r = sync_redis()
    for pattern in ("cpo:ocpp:*",):
        for key in r.scan_iter(match=pattern, count=1000):
            r.delete(key)
    auth.refusals.clear()
    yield


@pytest.fixture
def charge_point(transactional_db):
    org = OrganisationFactory(slug="gw-org")
    return ChargePointFactory(identity="CP-1", organisation=org, auth_key_hash=keys.hash_key(KEY))


def basic(identity: str, key: str) -> tuple[bytes, bytes]:
    return (b"authorization", b"Basic " + base64.b64encode(f"{identity}:{key}".encode()))


class Charger:
    """A raw OCPP-J client over the ASGI application."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.c = communicator
        self.n = 0

    async def call(self, action: str, payload: Any) -> list:
        self.n += 1
        await self.c.send_to(text_data=json.dumps([2, f"m{self.n}", action, payload]))
        return json.loads(await self.c.receive_from(timeout=10))

    async def send_raw(self, text: str) -> None:
        await self.c.send_to(text_data=text)

    async def receive(self, timeout: float = 10) -> list:
        return json.loads(await self.c.receive_from(timeout=timeout))


async def connect(
    identity: str = "CP-1",
    key: str | None = KEY,
    subprotocols: list[str] | None = None,
    address: str = "192.0.2.1",
):
    from config.asgi import application

    headers = [basic(identity, key)] if key is not None else []
    communicator = WebsocketCommunicator(
        application, f"/ocpp/{identity}", headers=headers, subprotocols=subprotocols or ["ocpp1.6"]
    )
    communicator.scope["client"] = (address, 40000)  # the scope the consumer reads (same dict)
    connected, subprotocol = await communicator.connect(timeout=10)
    return communicator, connected, subprotocol
