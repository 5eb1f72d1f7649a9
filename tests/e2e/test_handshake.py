"""The OCPP WebSocket handshake over a real uvicorn server, read from the raw HTTP answer."""

import pytest

from tests.e2e.conftest import KEY, RawCharger, basic_auth, http_upgrade
from tests.factories import ChargePointFactory, OrganisationFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture
def charge_point(server):
    return ChargePointFactory(identity="HS-1", organisation=OrganisationFactory(slug="hs-org"))


async def test_subprotocol_is_echoed_in_the_handshake_answer(server, charge_point):
    status, headers = await http_upgrade(
        server.port, "/ocpp/HS-1", subprotocols=("ocpp1.6",), authorization=basic_auth("HS-1", KEY)
    )
    assert status == 101
    assert headers["sec-websocket-protocol"] == "ocpp1.6"
    assert headers["upgrade"].lower() == "websocket"


async def test_charger_preference_picks_the_first_supported_subprotocol(server, charge_point):
    status, headers = await http_upgrade(
        server.port, "/ocpp/HS-1", subprotocols=("ocpp9.9", "ocpp1.6"), authorization=basic_auth("HS-1", KEY)
    )
    assert status == 101
    assert headers["sec-websocket-protocol"] == "ocpp1.6"


@pytest.mark.parametrize("offered", [("ocpp1.5",), ()])
async def test_no_supported_subprotocol_is_refused(server, charge_point, offered):
    status, headers = await http_upgrade(
        server.port, "/ocpp/HS-1", subprotocols=offered, authorization=basic_auth("HS-1", KEY)
    )
    assert status == 400
    assert "sec-websocket-protocol" not in headers


@pytest.mark.parametrize(
    "authorization",
    [None, basic_auth("HS-1", "wrong-key-0123456789"), basic_auth("OTHER", KEY), "Bearer " + KEY],
)
async def test_missing_or_wrong_credentials_are_refused_with_401(server, charge_point, authorization):
    status, _ = await http_upgrade(server.port, "/ocpp/HS-1", authorization=authorization)
    assert status == 401


async def test_unknown_identity_gets_404_under_the_default_policy(server, charge_point):
    status, _ = await http_upgrade(server.port, "/ocpp/NOBODY-1", authorization=basic_auth("NOBODY-1", KEY))
    assert status == 404


async def test_trailing_slash_is_accepted_and_the_charger_can_talk(server, charge_point):
    status, headers = await http_upgrade(server.port, "/ocpp/HS-1/", authorization=basic_auth("HS-1", KEY))
    assert status == 101 and headers["sec-websocket-protocol"] == "ocpp1.6"

    charger = await RawCharger.open(server, "HS-1", trailing_slash=True)
    try:
        assert charger.ws.subprotocol == "ocpp1.6"
        await charger.boot()
    finally:
        await charger.close()


@pytest.fixture
def profile_2_charger(server):
    from apps.stations import keys

    return ChargePointFactory(identity="TLS-1", organisation=OrganisationFactory(slug="tls-org"),
                              security_profile=2, auth_key_hash=keys.hash_key(KEY))


async def test_profile_2_needs_tls_as_reported_by_a_trusted_proxy(server, profile_2_charger):
    """Profile 2 is profile 1 behind TLS: a TLS-terminating proxy on loopback (trusted by uvicorn's
    --forwarded-allow-ips default) says so with X-Forwarded-Proto (see docker/nginx/ocpp-tls.conf)."""
    plain, _ = await http_upgrade(server.port, "/ocpp/TLS-1", authorization=basic_auth("TLS-1", KEY))
    assert plain == 403
    behind_tls, headers = await http_upgrade(server.port, "/ocpp/TLS-1", authorization=basic_auth("TLS-1", KEY),
                                             extra_headers=("X-Forwarded-Proto: https",))
    assert behind_tls == 101 and headers["sec-websocket-protocol"] == "ocpp1.6"
    wrong_key, _ = await http_upgrade(server.port, "/ocpp/TLS-1", authorization=basic_auth("TLS-1", "x" * 20),
                                      extra_headers=("X-Forwarded-Proto: https",))
    assert wrong_key == 401
