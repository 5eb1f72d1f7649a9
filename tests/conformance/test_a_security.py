"""OCPP 2.0.1 Core, CSMS test cases A (Security): Basic authentication, the BasicAuthPassword update,
TLS with a server certificate and the security profile upgrade (part 6, section 3.2)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import ssl
import warnings

import pytest
from websockets.exceptions import InvalidStatus

from apps.stations.choices import SecurityProfile
from apps.stations.models import ChargePoint
from tests.conformance.station import operate
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

NEW_PASSWORD = "OCTT-new-Password-0001"
PASSWORD_ITEM = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}


async def _refused(connect, **credentials) -> int:
    """The HTTP status with which the CSMS refuses the connection upgrade."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(**credentials)
    return refused.value.response.status_code


async def _security_profile(identity: str) -> int:
    return (await orm(ChargePoint.objects.get)(identity=identity)).security_profile


async def test_TC_A_01_CSMS(connect):
    """Basic Authentication - Valid username/password combination."""
    station = await connect()
    await station.booted()


async def test_TC_A_02_CSMS(connect, octt):
    """Basic Authentication - Username does not equal ChargingStationId."""
    assert await _refused(connect, username=f"{octt.identity}Invalid") == 401


async def test_TC_A_03_CSMS(connect):
    """Basic Authentication - Invalid password (random, 16 to 40 identifierString characters)."""
    assert await _refused(connect, key=secrets.token_urlsafe(24)[:32]) == 401


async def _set_password(station, status: str) -> None:
    request, _ = await operate(
        station,
        "SetVariables",
        {"setVariableData": [{"attributeValue": NEW_PASSWORD, **PASSWORD_ITEM}]},
        {"setVariableResult": [{"attributeStatus": status, **PASSWORD_ITEM}]},
    )
    [item] = request["setVariableData"]
    assert (item["component"], item["variable"], item["attributeValue"]) == (
        {"name": "SecurityCtrlr"},
        {"name": "BasicAuthPassword"},
        NEW_PASSWORD,
    )


async def test_TC_A_09_CSMS(connect, station, octt):
    """Update Charging Station Password for HTTP Basic Authentication - Accepted: only the new password
    is accepted from then on."""
    await _set_password(station, "Accepted")
    await station.close()
    again = await connect(key=NEW_PASSWORD)
    await again.booted()
    await again.close()
    assert await _refused(connect, key=octt.key) == 401


async def test_TC_A_10_CSMS(connect, station, octt):
    """Update Charging Station Password for HTTP Basic Authentication - Rejected: the old password keeps
    working."""
    await _set_password(station, "Rejected")
    await station.close()
    again = await connect(key=octt.key)
    await again.booted()
    await again.close()
    assert await _refused(connect, key=NEW_PASSWORD) == 401


@pytest.mark.parametrize("security_profile", [SecurityProfile.TLS_BASIC])
async def test_TC_A_04_CSMS(connect, tls_server):
    """TLS - server-side certificate - Valid certificate: TLS 1.2 or above, a certificate with a serial
    number and the FQDN as commonName; the profile 2 station boots. Without TLS it is refused."""
    station = await connect(via=tls_server, tls=tls_server.client_context())
    tls = station.ws.transport.get_extra_info("ssl_object")
    assert tls.version() in ("TLSv1.2", "TLSv1.3")
    certificate = tls.getpeercert()
    assert certificate["serialNumber"]
    assert (("commonName", "localhost"),) in certificate["subject"]
    await station.booted()
    await station.close()
    assert await _refused(connect) == 403


def _handshake(port: int, context: ssl.SSLContext) -> str:
    """A bare TLS handshake with the server (blocking, so the server's alert surfaces as it is)."""
    with (
        socket.create_connection(("localhost", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version() or ""


@pytest.mark.parametrize("security_profile", [SecurityProfile.TLS_BASIC])
async def test_TC_A_06_CSMS(connect, tls_server):
    """TLS - server-side certificate - TLS version too low: the CSMS ends a TLS 1.1 handshake (an alert or
    the connection closed); TLS 1.2 or above works."""
    old = tls_server.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version, old.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)) as ended:
        await asyncio.to_thread(_handshake, tls_server.port, old)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(ended.value)  # offered by the station, ended by the CSMS
    station = await connect(via=tls_server, tls=tls_server.client_context())
    await station.booted()


async def test_TC_A_19_CSMS(connect, station, octt, tls_server):
    """Upgrade Charging Station Security Profile - Accepted: a network profile one level up, its slot
    first in NetworkConfigurationPriority, a reset; the station returns over TLS, and a connection with
    the old profile is no longer accepted."""
    profile = {
        "configurationSlot": 2,
        "connectionData": {
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppCsmsUrl": tls_server.url,
            "messageTimeout": 30,
            "securityProfile": 2,
            "ocppInterface": "Wired0",
        },
    }
    request, _ = await operate(station, "SetNetworkProfile", profile, {"status": "Accepted"})
    assert request == profile
    priority = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"}}
    request, _ = await operate(
        station,
        "SetVariables",
        {"setVariableData": [{"attributeValue": "2,1", **priority}]},
        {"setVariableResult": [{"attributeStatus": "Accepted", **priority}]},
    )
    assert request["setVariableData"][0]["attributeValue"].split(",")[0] == "2"
    await operate(station, "Reset", {"type": "OnIdle"}, {"status": "Accepted"})
    await station.close()

    upgraded = await connect(via=tls_server, tls=tls_server.client_context())
    await upgraded.booted()
    await upgraded.close()
    assert await _security_profile(octt.identity) == SecurityProfile.TLS_BASIC
    assert await _refused(connect) == 403
