"""OCPP 2.0.1 Core, CSMS test cases L (Firmware Management): secure firmware update and every way it
can go (part 6, section 3.13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.stations.models import ChargePoint
from tests.conformance.station import (
    Tx,
    energy_transfer_started,
    ev_connected_post_session,
    ev_disconnected,
    operate,
    stop_authorized,
)
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

SIGNING_CERTIFICATE = (
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUOCTTfirmwaresigning0000000000wCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----\n"
)
SIGNATURE = "MEUCIQDfirmwaresignature00000000000000000000000000AiBsignature000000000000000000000000000="
NEW_FIRMWARE = "2.0.0"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _update(request_id: int = 1, **times: datetime) -> dict:
    """An UpdateFirmwareRequest with <Configured signingCertificate> and <Configured signature>."""
    firmware = {
        "location": f"https://firmware.example.org/octt-{NEW_FIRMWARE}.bin",
        "retrieveDateTime": _iso(times.pop("retrieve", datetime.now(UTC))),
        "signingCertificate": SIGNING_CERTIFICATE,
        "signature": SIGNATURE,
    }
    if "install" in times:
        firmware["installDateTime"] = _iso(times.pop("install"))
    return {"requestId": request_id, "firmware": firmware}


async def _firmware(identity: str) -> tuple[str, str]:
    cp = await orm(ChargePoint.objects.get)(identity=identity)
    return cp.firmware_status, cp.firmware_version


async def _send_update(station, payload: dict, status: str = "Accepted") -> dict:
    request, _ = await operate(station, "UpdateFirmware", payload, {"status": status})
    assert request == payload
    return request


async def _installed(connect, station, *, request_id: int = 1) -> None:
    """InstallRebooting, the reboot (BootNotification reason FirmwareUpdate with the new version, every
    connector Available), then Installed."""
    await station.firmware_status("InstallRebooting", request_id=request_id)
    await station.close()
    again = await connect()
    await again.booted(reason="FirmwareUpdate", firmware_version=NEW_FIRMWARE)
    await again.firmware_status("Installed", request_id=request_id)


async def test_TC_L_01_CSMS(connect, station, octt):
    """Secure Firmware Update - Installation successful."""
    request = await _send_update(station, _update())
    assert request["firmware"]["signingCertificate"] == SIGNING_CERTIFICATE
    assert request["firmware"]["signature"] == SIGNATURE
    await station.firmware_status(
        "Downloading", "Downloaded", "SignatureVerified", "Installing", request_id=1
    )
    await _installed(connect, station)
    assert await _firmware(octt.identity) == ("Installed", NEW_FIRMWARE)


async def test_TC_L_02_CSMS(connect, station, octt):
    """Secure Firmware Update - InstallScheduled: installDateTime in the future."""
    install_at = datetime.now(UTC) + timedelta(hours=2)
    request = await _send_update(station, _update(install=install_at))
    assert datetime.fromisoformat(request["firmware"]["installDateTime"]) > datetime.now(UTC)
    await station.firmware_status(
        "Downloading", "Downloaded", "SignatureVerified", "InstallScheduled", request_id=1
    )
    assert (await _firmware(octt.identity))[0] == "InstallScheduled"
    await station.firmware_status("Installing", request_id=1)
    await _installed(connect, station)
    assert await _firmware(octt.identity) == ("Installed", NEW_FIRMWARE)


async def test_TC_L_03_CSMS(connect, station, octt):
    """Secure Firmware Update - DownloadScheduled: retrieveDateTime in the future."""
    retrieve_at = datetime.now(UTC) + timedelta(hours=2)
    request = await _send_update(station, _update(retrieve=retrieve_at))
    assert datetime.fromisoformat(request["firmware"]["retrieveDateTime"]) > datetime.now(UTC)
    await station.firmware_status("DownloadScheduled", request_id=1)
    assert (await _firmware(octt.identity))[0] == "DownloadScheduled"
    await station.firmware_status(
        "Downloading", "Downloaded", "SignatureVerified", "Installing", request_id=1
    )
    await _installed(connect, station)
    assert await _firmware(octt.identity) == ("Installed", NEW_FIRMWARE)


async def _refused(station, octt, status: str) -> None:
    await _send_update(station, _update(), status)
    assert await _firmware(octt.identity) == ("", "1.0.0")


async def test_TC_L_04_CSMS(station, octt):
    """Secure Firmware Update - RevokedCertificate: the refusal is reported, nothing changes."""
    await _refused(station, octt, "RevokedCertificate")


async def test_TC_L_05_CSMS(station, octt):
    """Secure Firmware Update - InvalidCertificate."""
    await _refused(station, octt, "InvalidCertificate")


async def test_TC_L_06_CSMS(station, octt):
    """Secure Firmware Update - InvalidSignature."""
    await _send_update(station, _update())
    await station.firmware_status("Downloading", "Downloaded", "InvalidSignature", request_id=1)
    assert await _firmware(octt.identity) == ("InvalidSignature", "1.0.0")


async def test_TC_L_07_CSMS(station, octt):
    """Secure Firmware Update - DownloadFailed."""
    await _send_update(station, _update())
    await station.firmware_status("Downloading", "DownloadFailed", request_id=1)
    assert await _firmware(octt.identity) == ("DownloadFailed", "1.0.0")


async def test_TC_L_08_CSMS(station, octt):
    """Secure Firmware Update - InstallVerificationFailed."""
    await _send_update(station, _update())
    await station.firmware_status(
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallVerificationFailed",
        request_id=1,
    )
    assert await _firmware(octt.identity) == ("InstallVerificationFailed", "1.0.0")


async def test_TC_L_09_CSMS(connect, station, octt):
    """Secure Firmware Update - InstallationFailed: the station reboots on its old firmware."""
    await _send_update(station, _update())
    await station.firmware_status(
        "Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting", request_id=1
    )
    await station.close()
    again = await connect()
    await again.booted(reason="FirmwareUpdate")
    await again.firmware_status("InstallationFailed", request_id=1)
    assert await _firmware(octt.identity) == ("InstallationFailed", "1.0.0")


async def test_TC_L_10_CSMS(connect, station, octt):
    """Secure Firmware Update - AcceptedCanceled: a second update replaces the one in progress."""
    await _send_update(station, _update(request_id=1))
    await station.firmware_status("Downloading", request_id=1)
    await _send_update(station, _update(request_id=2), "AcceptedCanceled")
    await station.firmware_status(
        "Downloading", "Downloaded", "SignatureVerified", "Installing", request_id=2
    )
    await _installed(connect, station, request_id=2)
    assert await _firmware(octt.identity) == ("Installed", NEW_FIRMWARE)


async def test_TC_L_11_CSMS(connect, station, octt):
    """Secure Firmware Update - Unable to cancel: the second update is Rejected, the first completes."""
    await _send_update(station, _update(request_id=1))
    await station.firmware_status("Downloading", request_id=1)
    await _send_update(station, _update(request_id=2), "Rejected")
    await station.firmware_status("Downloaded", "SignatureVerified", "Installing", request_id=1)
    await _installed(connect, station)
    assert await _firmware(octt.identity) == ("Installed", NEW_FIRMWARE)


async def test_TC_L_13_CSMS(connect, station, octt):
    """Secure Firmware Update - Unable to download/install firmware with ongoing transaction -
    AllowNewSessionsPendingFirmwareUpdate is false: the update waits for the transaction to end."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    request = await _send_update(station, _update())
    assert request["firmware"]["signingCertificate"] == SIGNING_CERTIFICATE
    await station.firmware_status("DownloadScheduled", request_id=1)
    await station.connector_status("Unavailable", evse_id=2)
    await stop_authorized(tx, octt.valid)
    await ev_connected_post_session(tx)
    await ev_disconnected(tx)
    await station.firmware_status(
        "Downloading", "Downloaded", "SignatureVerified", "Installing", request_id=1
    )
    await _installed(connect, station)
    session = await orm(ChargingSession.objects.get)(transaction_ref=tx.transaction_id)
    assert session.status == SessionStatus.COMPLETED
    assert await _firmware(octt.identity) == ("Installed", NEW_FIRMWARE)
