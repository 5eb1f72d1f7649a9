"""Fixtures of the OCPP 2.0.1 conformance tests (Core certification profile, CSMS test cases).

The product runs as in tests/e2e: a real uvicorn server on the test database, shared by every test of
the session (its fixtures are imported from there); every test starts from an empty database and
empty gateway keys in Redis. The OCTT's configuration (part 6: <Configured ...>) is `Octt`: one
registered charging station with its Basic-auth password and the idTokens the test cases name.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from apps.accounts.choices import IdTokenStatus
from apps.ocpp_gateway.models import OcppMessage
from apps.stations.choices import OcppProtocol, RegistrationStatus, SecurityProfile
from cpo import clock
from tests.conformance.station import Station, Token
from tests.e2e.conftest import (  # noqa: F401 - server, servers and clean_gateway_redis are fixtures
    KEY,
    REPO,
    SERVER_START_TIMEOUT_S,
    Server,
    _server_env,
    clean_gateway_redis,
    eventually,
    orm,
    server,
    servers,
)
from tests.factories import ChargePointFactory, IdTokenFactory, OrganisationFactory
from tests.processes import free_port, tail

IDENTITY = "OCTT-CS-0001"
GROUP = "OCTT-GROUP-1"
MASTER_PASS_GROUP = "OCTT-MASTERPASS"


VALID, VALID2 = Token("04C0FFEE0001"), Token("04C0FFEE0002")
INVALID, BLOCKED, EXPIRED = Token("04BADBAD0001"), Token("04B10C4ED001"), Token("04E4B14ED001")
MASTER_PASS = Token("04A5A5A50001")


@dataclass(frozen=True)
class Octt:
    """What the OCTT is configured with and the CSMS knows: the station and the idTokens."""

    identity: str = IDENTITY
    key: str = KEY
    valid: Token = VALID
    valid2: Token = VALID2
    invalid: Token = INVALID
    blocked: Token = BLOCKED
    expired: Token = EXPIRED
    master_pass: Token = MASTER_PASS
    group: str = GROUP
    master_pass_group: str = MASTER_PASS_GROUP


def _register(octt: Octt, registration_status: str, security_profile: int) -> None:
    org = OrganisationFactory(slug="octt")
    ChargePointFactory(
        identity=octt.identity,
        organisation=org,
        registration_status=registration_status,
        security_profile=security_profile,
        ocpp_protocol=OcppProtocol.OCPP201,
    )
    for token in (octt.valid, octt.valid2):
        IdTokenFactory(uid=token.id_token, group_id=octt.group)
    IdTokenFactory(uid=octt.blocked.id_token, status=IdTokenStatus.BLOCKED)
    IdTokenFactory(uid=octt.expired.id_token, expires_at=clock.now() - dt.timedelta(days=1))
    IdTokenFactory(uid=octt.master_pass.id_token, group_id=octt.master_pass_group)


@pytest.fixture
def registration_status() -> str:
    """The station's registration in the CSMS; a test overrides it (e.g. Pending) with parametrize."""
    return RegistrationStatus.ACCEPTED


@pytest.fixture
def security_profile() -> int:
    """The station's security profile in the CSMS (1: Basic auth; a test may override it with 2)."""
    return SecurityProfile.BASIC


@pytest_asyncio.fixture
async def octt(server, registration_status, security_profile) -> Octt:  # noqa: F811 - the imported fixture
    """The CSMS configured for the test system: the station registered, the idTokens known."""
    configured = Octt()
    await orm(_register)(configured, registration_status, security_profile)
    return configured


@pytest_asyncio.fixture
async def connect(server, octt) -> AsyncIterator[Callable[..., Awaitable[Station]]]:  # noqa: F811
    """Open connections of the configured station (closed at the end of the test); `via` another server
    than the plain one, over TLS with `tls`."""
    opened: list[Station] = []

    async def open_station(
        *,
        key: str | None = octt.key,
        username: str | None = None,
        via: Server | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Station:
        station = await Station.open(via or server, octt.identity, key=key, username=username, tls=tls)
        opened.append(station)
        return station

    yield open_station
    for station in opened:
        await station.close()
    # The server writes its message log in batches: when it is on, let it finish before the database is
    # emptied for the next test (a batch written during that TRUNCATE deadlocks it). The e2e servers run
    # with the log off unless CPO_OCPP_MESSAGE_LOG says otherwise (tests/e2e/conftest.py).
    if os.environ.get("CPO_OCPP_MESSAGE_LOG", "0") in ("0", "false", "False", ""):
        return
    frames = sum(station.frames for station in opened)
    await eventually(
        orm(lambda: OcppMessage.objects.filter(identity=octt.identity).count() >= frames),
        timeout=15,
        what="every frame in the server's message log",
    )


@pytest_asyncio.fixture
async def station(connect) -> Station:
    """The configured station, connected and in Reusable State Booted (two EVSEs, all Available)."""
    booted = await connect()
    await booted.booted()
    return booted


# --- TLS (security profile 2) --------------------------------------------------------------------------
@dataclass
class TlsServer(Server):
    """A uvicorn process terminating TLS itself with a server certificate for localhost signed by `ca_file`
    (in production a reverse proxy may terminate it and pass X-Forwarded-Proto instead)."""

    ca_file: Path

    @property
    def url(self) -> str:
        return f"wss://localhost:{self.port}/ocpp"

    def client_context(self) -> ssl.SSLContext:
        """What a profile 2 station uses: the CSMS root certificate installed, the server verified."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key): RSA 2048, SHA-256, a serial number and the FQDN
    as commonName (the OCTT's TC_A_04 checks), PEM encoded."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CPO test CSMS root")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def _answers_https(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def start_tls_server(folder: Path, media_root: Path) -> TlsServer:
    """Start uvicorn with TLS on a free port and wait (bounded) until /livez answers over HTTPS."""
    ca_file, cert_file, key_file = _certificates(folder)
    port = free_port()
    log_path = folder / f"server-tls-{port}.log"
    command = [
        str(Path(sys.executable).with_name("uvicorn")),
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ws",
        "websockets",
        "--lifespan",
        "off",
        "--ssl-certfile",
        str(cert_file),
        "--ssl-keyfile",
        str(key_file),
        "--timeout-graceful-shutdown",
        "5",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=_server_env(media_root), stdout=log, stderr=subprocess.STDOUT
        )
    started = TlsServer(name="tls", port=port, process=process, log_path=log_path, ca_file=ca_file)
    context = started.client_context()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if _answers_https(f"https://localhost:{port}/livez", context):
            return started
        time.sleep(0.3)
    started.stop()
    raise RuntimeError(f"the TLS server did not start (exit code {process.returncode}):\n{tail(log_path)}")


@pytest.fixture(scope="session")
def tls_servers(servers, tmp_path_factory) -> Iterator[dict[str, TlsServer]]:  # noqa: F811
    """The TLS server, started on first use and stopped at the end of the session."""
    started: dict[str, TlsServer] = {}
    yield started
    for running in started.values():
        running.stop()


@pytest.fixture
def tls_server(tls_servers, servers, tmp_path_factory, transactional_db) -> TlsServer:  # noqa: F811
    """The product serving wss:// (security profile 2) next to the plain server, on the same database."""
    running = tls_servers.get("tls")
    if running is None or running.process.poll() is not None:
        running = tls_servers["tls"] = start_tls_server(tmp_path_factory.mktemp("tls"), servers.media_root)
    return running
