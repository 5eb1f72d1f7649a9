"""OCPP 2.0.1 Core, CSMS test cases J (MeterValues): clock-aligned and sampled meter values, in
MeterValues and in TransactionEvents, signed or not (part 6, section 3.11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession, MeterSample
from apps.stations.models import ChargerEvent
from tests.conformance.station import (
    Tx,
    assert_token_status,
    energy_transfer_started,
    ev_connected_pre_session,
)
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

INTERVAL = timedelta(minutes=15)
SIGNED = {
    "signedMeterData": "T0NNRnx7IlJEIjpbeyJSViI6MTIzNDV9XX18eyJTRCI6IjMwNDUwMjIxMDAifQ==",
    "signingMethod": "ECDSA-secp256r1-SHA256",
    "encodingMethod": "OCMF",
    "publicKey": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
}


def _aligned(count: int) -> list[datetime]:
    """`count` clock-aligned instants, INTERVAL apart, the last one the latest quarter hour."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    last = now - timedelta(minutes=now.minute % 15)
    return [last - INTERVAL * (count - 1 - n) for n in range(count)]


def _after_start(count: int) -> list[datetime]:
    """`count` instants a second apart after now (readings of a transaction that just started)."""
    now = datetime.now(UTC)
    return [now + timedelta(seconds=n + 1) for n in range(count)]


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(at: datetime, wh: int, context: str, *, signed: bool = False) -> dict:
    sampled = {
        "value": wh,
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": {"unit": "Wh"},
    }
    if signed:
        sampled["signedMeterValue"] = SIGNED
    return {"timestamp": _iso(at), "sampledValue": [sampled]}


def _samples(identity: str, **filters) -> list[tuple[int, str, int, bool]]:
    rows = MeterSample.objects.filter(charge_point__identity=identity, **filters).order_by(
        "evse_id", "sampled_at"
    )
    return [(row.evse_id, row.context, int(row.value), bool(row.signed_data)) for row in rows]


def _session(identity: str, tx: Tx) -> ChargingSession:
    return ChargingSession.objects.get(charge_point__identity=identity, transaction_ref=tx.transaction_id)


async def _clock_aligned_idle(station, evses: tuple[int, ...], at: datetime, wh: int) -> None:
    """One clock-aligned reading of the main meter (EVSE 0) and the idle EVSEs, with its FiscalMetering
    NotifyEvent."""
    for evse_id in evses:
        payload = {"evseId": evse_id, "meterValue": [_value(at, wh + evse_id, "Sample.Clock")]}
        assert await station.result("MeterValues", payload) == {}
    await station.notify_event("FiscalMetering", "EnergyImport", str(wh), trigger="Periodic")


async def test_TC_J_01_CSMS(station, octt):
    """Clock-aligned Meter Values - No transaction ongoing: three intervals for the main meter and both
    EVSEs, all kept."""
    for n, at in enumerate(_aligned(3)):
        await _clock_aligned_idle(station, (0, 1, 2), at, 1_000 * (n + 1))
    samples = await orm(_samples)(octt.identity, context="Sample.Clock")
    assert [(evse, wh) for evse, _, wh, _ in samples] == [
        (0, 1_000),
        (0, 2_000),
        (0, 3_000),
        (1, 1_001),
        (1, 2_001),
        (1, 3_001),
        (2, 1_002),
        (2, 2_002),
        (2, 3_002),
    ]
    periodic = await orm(
        lambda: ChargerEvent.objects.filter(trigger="Periodic", component="FiscalMetering").count()
    )()
    assert periodic == 3


async def test_TC_J_02_CSMS(station, octt):
    """Clock-aligned Meter Values - Transaction ongoing: the idle EVSE and the main meter by MeterValues,
    the charging EVSE by TransactionEvents (MeterValueClock) that land in its session."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    for n, at in enumerate(_after_start(3)):
        await _clock_aligned_idle(station, (0, 2), at, 1_000 * (n + 1))
        await tx.event(
            "Updated", "MeterValueClock", meter_value=[_value(at, tx.register_wh + 100 * n, "Sample.Clock")]
        )
    session = await orm(_session)(octt.identity, tx)
    in_session = await orm(_samples)(octt.identity, context="Sample.Clock", session=session)
    assert [(evse, wh) for evse, _, wh, _ in in_session] == [(1, 12_000), (1, 12_100), (1, 12_200)]
    assert len(await orm(_samples)(octt.identity, context="Sample.Clock", session__isnull=True)) == 6


async def _ended_with(station, octt, context: str, *, signed: bool) -> None:
    """EVDisconnected whose Ended event carries the readings since the last one: `context` values and
    the Transaction.End value last (signed when asked)."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    await station.connector_status("Available")
    *sampled, end = _after_start(3)
    readings = [_value(at, 12_000 + 2_500 * (n + 1), context, signed=signed) for n, at in enumerate(sampled)]
    readings.append(_value(end, 17_500, "Transaction.End", signed=signed))
    await tx.event(
        "Ended",
        "EVCommunicationLost",
        charging_state="Idle",
        stopped_reason="EVDisconnected",
        meter_value=readings,
    )
    session = await orm(_session)(octt.identity, tx)
    assert (session.status, session.meter_start_wh, session.meter_stop_wh) == (
        SessionStatus.COMPLETED,
        12_000,
        17_500,
    )
    samples = await orm(_samples)(octt.identity, session=session)
    assert [(ctx, wh, is_signed) for _, ctx, wh, is_signed in samples] == [
        ("Transaction.Begin", 12_000, False),
        (context, 14_500, signed),
        (context, 17_000, signed),
        ("Transaction.End", 17_500, signed),
    ]


async def test_TC_J_03_CSMS(station, octt):
    """Clock-aligned Meter Values - EventType Ended."""
    await _ended_with(station, octt, "Sample.Clock", signed=False)


async def test_TC_J_04_CSMS(station, octt):
    """Clock-aligned Meter Values - Signed: the signed data is kept verbatim."""
    await _ended_with(station, octt, "Sample.Clock", signed=True)


async def test_TC_J_07_CSMS(station, octt):
    """Sampled Meter Values - EventType Started - EVSE known: the Transaction.Begin value starts the
    session's meter."""
    tx = Tx(station, register_wh=4_321)
    await ev_connected_pre_session(tx)
    session = await orm(_session)(octt.identity, tx)
    assert session.meter_start_wh == 4_321
    assert await orm(_samples)(octt.identity, session=session) == [(1, "Transaction.Begin", 4_321, False)]


async def test_TC_J_08_CSMS(station, octt):
    """Sampled Meter Values - Context Transaction.Begin - EVSE not known: the transaction starts on
    authorisation without EVSE; the Transaction.Begin value comes with the cable."""
    tx = Tx(station, register_wh=4_321)
    assert_token_status(await station.result("Authorize", {"idToken": octt.valid.wire()}), "Accepted")
    answer = await tx.event("Started", "Authorized", token=octt.valid, evse=False, meter_value=[])
    assert_token_status(answer, "Accepted")
    tx.authorized = True
    await station.connector_status("Occupied")
    await tx.event(
        "Updated", "CablePluggedIn", charging_state="EVConnected", meter_value=tx.meter("Transaction.Begin")
    )
    tx.ev_connected = True
    await energy_transfer_started(tx, octt.valid)
    session = await orm(_session)(octt.identity, tx)
    assert (session.evse_id, session.charging_state, session.meter_start_wh) == (1, "Charging", 4_321)
    assert await orm(_samples)(octt.identity, session=session) == [(1, "Transaction.Begin", 4_321, False)]


async def test_TC_J_09_CSMS(station, octt):
    """Sampled Meter Values - EventType Updated: three periodic readings in the session."""
    tx = Tx(station)
    await energy_transfer_started(tx, octt.valid)
    start = datetime.now(UTC)
    for n in range(3):
        at = start + timedelta(seconds=60 * (n + 1))
        await tx.event(
            "Updated",
            "MeterValuePeriodic",
            meter_value=[_value(at, 12_000 + 250 * (n + 1), "Sample.Periodic")],
        )
    session = await orm(_session)(octt.identity, tx)
    periodic = await orm(_samples)(octt.identity, session=session, context="Sample.Periodic")
    assert [wh for _, _, wh, _ in periodic] == [12_250, 12_500, 12_750]


async def test_TC_J_10_CSMS(station, octt):
    """Sampled Meter Values - EventType Ended."""
    await _ended_with(station, octt, "Sample.Periodic", signed=False)


async def test_TC_J_11_CSMS(station, octt):
    """Sampled Meter Values - Signed."""
    await _ended_with(station, octt, "Sample.Periodic", signed=True)
