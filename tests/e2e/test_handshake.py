"""The OCPP WebSocket handshake over a real uvicorn server, read from the raw HTTP answer."""

import asyncio

import pytest

from tests.e2e.conftest import KEY, RawCharger, basic_auth, http_upgrade, http_upgrade_answer
from tests.factories import ChargePointFactory, OrganisationFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture
def charge_point(server):
    return ChargePointFactory(identity="HS-1", organisation=OrganisationFactory(slug="hs-org"))


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
async def test_subprotocol_is_echoed_in_the_handshake_answer(server, charge_point, subprotocol):
    status, headers = await http_upgrade(
        server.port, "/ocpp/HS-1", subprotocols=(subprotocol,), authorization=basic_auth("HS-1", KEY)
    )
    assert status == 101
    assert headers["sec-websocket-protocol"] == subprotocol
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


async def test_unknown_identity_and_wrong_key_get_the_same_answer(server, charge_point):
    """Under the default policy an unknown identity is answered exactly like a wrong key (status, headers
    that matter, body), so the handshake does not list the fleet."""
    answers = []
    for identity, key in (("NOBODY-1", KEY), ("HS-1", "wrong-key-0123456789")):
        status, headers, body = await http_upgrade_answer(
            server.port, f"/ocpp/{identity}", authorization=basic_auth(identity, key)
        )
        answers.append((status, headers.get("content-type"), headers.get("content-length"), body))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401


async def test_failures_from_elsewhere_never_lock_the_real_charger_out(server, charge_point):
    """50 failed handshakes for HS-1 from another address (through the trusted proxy on loopback) make
    that address wait for refusals (429, an unknown identity alike), not the real charger; a correct key
    gets in even from that address (chargers behind one carrier address)."""
    attacker = ("X-Forwarded-For: 203.0.113.66",)
    statuses = [
        (
            await http_upgrade(
                server.port,
                "/ocpp/HS-1",
                authorization=basic_auth("HS-1", f"guess-{n:016d}"),
                extra_headers=attacker,
            )
        )[0]
        for n in range(50)
    ]
    assert set(statuses[:10]) == {401} and set(statuses[10:]) == {429}
    answers = []
    for identity, key in (("NOBODY-1", KEY), ("HS-1", "wrong-key-0123456789")):
        status, headers, body = await http_upgrade_answer(
            server.port, f"/ocpp/{identity}", authorization=basic_auth(identity, key), extra_headers=attacker
        )
        answers.append((status, headers.get("content-type"), headers.get("content-length"), body))
    assert answers[0] == answers[1] and answers[0][0] == 429
    status, _ = await http_upgrade(
        server.port, "/ocpp/HS-1", authorization=basic_auth("HS-1", KEY), extra_headers=attacker
    )
    assert status == 101
    status, _ = await http_upgrade(
        server.port,
        "/ocpp/HS-1",
        authorization=basic_auth("HS-1", KEY),
        extra_headers=("X-Forwarded-For: 198.51.100.7",),
    )
    assert status == 101


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

    return ChargePointFactory(
        identity="TLS-1",
        organisation=OrganisationFactory(slug="tls-org"),
        security_profile=2,
        auth_key_hash=keys.hash_key(KEY),
    )


async def test_profile_2_needs_tls_as_reported_by_a_trusted_proxy(server, profile_2_charger):
    """Profile 2 is profile 1 behind TLS: a TLS-terminating proxy on loopback (trusted by uvicorn's
    --forwarded-allow-ips default) says so with X-Forwarded-Proto (see docker/nginx/ocpp-tls.conf)."""
    plain, _ = await http_upgrade(server.port, "/ocpp/TLS-1", authorization=basic_auth("TLS-1", KEY))
    assert plain == 403
    behind_tls, headers = await http_upgrade(
        server.port,
        "/ocpp/TLS-1",
        authorization=basic_auth("TLS-1", KEY),
        extra_headers=("X-Forwarded-Proto: https",),
    )
    assert behind_tls == 101 and headers["sec-websocket-protocol"] == "ocpp1.6"
    wrong_key, _ = await http_upgrade(
        server.port,
        "/ocpp/TLS-1",
        authorization=basic_auth("TLS-1", "x" * 20),
        extra_headers=("X-Forwarded-Proto: https",),
    )
    assert wrong_key == 401


@pytest.mark.parametrize(
    "path",
    [
        "/ocpp/..%2Fx",
        "/ocpp/..%2F..%2Fadmin",
        "/ocpp/a%2Fb",
        "/ocpp/HS-1/x/y",
        "/ocpp/%2e%2e/x",
        "/elsewhere",
    ],
)
async def test_odd_paths_are_a_clean_404(server, charge_point, path):
    """Encoded slashes and dot segments under /ocpp/: a refused handshake with 404 (WebSocket) and a 404
    page (plain GET), never a 500."""
    status, _ = await http_upgrade(server.port, path, authorization=basic_auth("HS-1", KEY))
    assert status == 404
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout=10)
    finally:
        writer.close()
    assert head.split()[1] == b"404", head
