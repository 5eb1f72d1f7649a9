"""OCPP 2.0.1 Core, CSMS test cases N (Diagnostics, Core part): log upload and customer information
(part 6, section 3.15)."""

from __future__ import annotations

import pytest

from apps.stations.models import ChargePoint
from tests.conformance.station import now_iso, operate
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

LOG = {"remoteLocation": "https://logs.example.org/octt/"}


async def _log_status(station, status: str, request_id: int) -> None:
    assert await station.result("LogStatusNotification", {"status": status, "requestId": request_id}) == {}


async def _diagnostics_status(identity: str) -> str:
    return (await orm(ChargePoint.objects.get)(identity=identity)).diagnostics_status


async def _get_log(station, log_type: str, request_id: int, answer: dict) -> None:
    payload = {"logType": log_type, "requestId": request_id, "log": LOG}
    request, _ = await operate(station, "GetLog", payload, answer)
    assert request == payload


async def test_TC_N_25_CSMS(station, octt):
    """Retrieve Log Information - Diagnostics Log - Success."""
    await _get_log(station, "DiagnosticsLog", 3, {"status": "Accepted", "filename": "octt-diagnostics.log"})
    await _log_status(station, "Uploading", 3)
    await _log_status(station, "Uploaded", 3)
    assert await _diagnostics_status(octt.identity) == "Uploaded"


async def test_TC_N_34_CSMS(station, octt):
    """Retrieve Log Information - Rejected."""
    await _get_log(station, "DiagnosticsLog", 3, {"status": "Rejected"})
    assert await _diagnostics_status(octt.identity) == ""


async def test_TC_N_35_CSMS(station, octt):
    """Retrieve Log Information - Security Log - Success."""
    await _get_log(station, "SecurityLog", 4, {"status": "Accepted", "filename": "octt-security.log"})
    await _log_status(station, "Uploading", 4)
    await _log_status(station, "Uploaded", 4)
    assert await _diagnostics_status(octt.identity) == "Uploaded"


async def test_TC_N_36_CSMS(station, octt):
    """Retrieve Log Information - Second Request: the first upload is cancelled, the second completes."""
    await _get_log(station, "DiagnosticsLog", 5, {"status": "Accepted", "filename": "first.log"})
    await _log_status(station, "Uploading", 5)
    await _get_log(station, "DiagnosticsLog", 6, {"status": "AcceptedCanceled", "filename": "second.log"})
    await _log_status(station, "AcceptedCanceled", 5)
    await _log_status(station, "Uploading", 6)
    await _log_status(station, "Uploaded", 6)
    assert await _diagnostics_status(octt.identity) == "Uploaded"


async def _customer_information(station, octt, payload: dict, status: str, reports: list[str]) -> None:
    """The operator asks for (and/or clears) a customer's data; the station answers, then reports (each
    part answered; the data itself stays in the message log only)."""
    request, _ = await operate(station, "CustomerInformation", payload, {"status": status})
    assert request == payload
    for seq_no, data in enumerate(reports):
        report = {"data": data, "seqNo": seq_no, "generatedAt": now_iso(), "requestId": payload["requestId"]}
        if seq_no < len(reports) - 1:
            report["tbc"] = True
        assert await station.result("NotifyCustomerInformation", report) == {}


def _by_token(octt, *, report: bool, clear: bool) -> dict:
    return {"requestId": 21, "report": report, "clear": clear, "idToken": octt.valid.wire()}


async def test_TC_N_27_CSMS(station, octt):
    """Get Customer Information - Accepted + data (two report parts)."""
    await _customer_information(
        station,
        octt,
        _by_token(octt, report=True, clear=False),
        "Accepted",
        ["sessions: 2 on EVSE 1", "last seen 2025-01-15"],
    )


async def test_TC_N_28_CSMS(station, octt):
    """Get Customer Information - Accepted + no data."""
    await _customer_information(
        station, octt, _by_token(octt, report=True, clear=False), "Accepted", ["No data found"]
    )


async def test_TC_N_29_CSMS(station, octt):
    """Get Customer Information - Not Accepted."""
    await _customer_information(station, octt, _by_token(octt, report=True, clear=False), "Rejected", [])


async def test_TC_N_30_CSMS(station, octt):
    """Clear Customer Information - Clear and report + data."""
    await _customer_information(
        station,
        octt,
        _by_token(octt, report=True, clear=True),
        "Accepted",
        ["cleared: sessions: 2 on EVSE 1"],
    )


async def test_TC_N_31_CSMS(station, octt):
    """Clear Customer Information - Clear and report + no data."""
    await _customer_information(
        station, octt, _by_token(octt, report=True, clear=True), "Accepted", ["No data found"]
    )


async def test_TC_N_32_CSMS(station, octt):
    """Clear Customer Information - Clear and no report."""
    await _customer_information(station, octt, _by_token(octt, report=False, clear=True), "Accepted", [])


async def test_TC_N_62_CSMS(station, octt):
    """Clear Customer Information - Clear and report - customerIdentifier."""
    payload = {"requestId": 22, "report": True, "clear": True, "customerIdentifier": "OpenChargeAlliance"}
    await _customer_information(station, octt, payload, "Accepted", ["cleared: OpenChargeAlliance"])
