"""Replaying whole transaction traces over a real server leaves the database as one clean delivery would.

Chargers repeat transaction-related messages after a reconnect (their queue survives, the OCPP message
ids do not), so the comparison covers every row the trace writes, minus our own receive times.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.charging.models import ChargingSession, MeterSample, OrphanStop
from apps.stations.models import ChargePoint
from tests.e2e.conftest import RawCharger, orm
from tests.factories import ChargePointFactory, IdTokenFactory, OrganisationFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ID_TAG = "04AABBCCDD"
T0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
RECEIVE_TIMES = {"received_at", "start_received_at", "stop_received_at", "created_at", "updated_at"}


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meter_value(minutes: int, wh: int, context: str = "Sample.Periodic") -> dict[str, Any]:
    return {
        "timestamp": at(minutes),
        "sampledValue": [
            {
                "value": str(wh),
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
                "context": context,
            },
            {"value": "11.0", "measurand": "Power.Active.Import", "unit": "kW", "context": context},
            *(
                {"value": "15.9", "measurand": "Current.Import", "unit": "A", "phase": p, "context": context}
                for p in ("L1", "L2", "L3")
            ),
        ],
    }


def trace_before_start() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "AC22"}),
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Preparing", "timestamp": at(0)},
        ),
        ("Authorize", {"idTag": ID_TAG}),
        ("StartTransaction", {"connectorId": 1, "idTag": ID_TAG, "meterStart": 1000, "timestamp": at(0)}),
    ]


def trace_after_start(transaction_id: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        *(
            (
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": transaction_id,
                    "meterValue": [meter_value(n * 5, 1000 + n * 900)],
                },
            )
            for n in (1, 2, 3)
        ),
        (
            "StopTransaction",
            {
                "transactionId": transaction_id,
                "meterStop": 3900,
                "timestamp": at(16),
                "idTag": ID_TAG,
                "reason": "Local",
                "transactionData": [
                    meter_value(0, 1000, "Transaction.Begin"),
                    meter_value(16, 3900, "Transaction.End"),
                ],
            },
        ),
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Finishing", "timestamp": at(16)},
        ),
    ]


async def send_trace(charger: RawCharger, *, stop_after: int | None = None) -> list[dict[str, Any]]:
    """Send the whole trace (or its first `stop_after` messages); returns the CALLRESULT payloads."""
    answers = []
    steps = trace_before_start()
    for n, (action, payload) in enumerate(steps):
        answers.append(await charger.result(action, payload))
        if stop_after is not None and n + 1 >= stop_after:
            return answers
    transaction_id = answers[-1]["transactionId"]
    for n, (action, payload) in enumerate(trace_after_start(transaction_id), start=len(steps)):
        answers.append(await charger.result(action, payload))
        if stop_after is not None and n + 1 >= stop_after:
            break
    return answers


def _row(obj: Any, *, drop: set[str]) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if f.attname not in drop}


def canonical_dump(identity: str, *, with_ids: bool) -> dict[str, list[dict[str, Any]]]:
    """Every ChargingSession / MeterSample / OrphanStop row of the charger, minus receive times; without
    ids (primary keys, the charger's own row, transaction ids), rows of two chargers can be compared."""
    cp = ChargePoint.objects.get(identity=identity)
    ids = (
        set()
        if with_ids
        else {
            "id",
            "charge_point_id",
            "organisation_id",
            "connector_id",
            "transaction_ref",
            "ocpp16_transaction_id",
            "session_id",
        }
    )
    sessions = ChargingSession.objects.filter(charge_point=cp).order_by("started_at_charger", "evse_id")
    samples = (
        MeterSample.objects.filter(charge_point=cp)
        .select_related("session")
        .order_by("sampled_at", "measurand", "phase", "location", "context")
    )
    orphans = OrphanStop.objects.filter(charge_point=cp).order_by("transaction_ref")
    return {
        "sessions": [_row(s, drop=RECEIVE_TIMES | ids) for s in sessions],
        "samples": [
            {
                **_row(s, drop=RECEIVE_TIMES | ids),
                "session_start": s.session.started_at_charger if s.session else None,
            }
            for s in samples
        ],
        "orphans": [_row(o, drop=RECEIVE_TIMES | ids) for o in orphans],
    }


@pytest.fixture
def fleet_of_two(server):
    org = OrganisationFactory(slug="replay-org")
    IdTokenFactory(uid=ID_TAG)
    for identity in ("RP-CLEAN", "RP-REPLAY"):
        ChargePointFactory(identity=identity, organisation=org)


async def test_a_trace_sent_twice_across_a_reconnect_changes_nothing(server, fleet_of_two):
    charger = await RawCharger.open(server, "RP-REPLAY")
    first = await send_trace(charger)
    await charger.close()
    once = await orm(canonical_dump)("RP-REPLAY", with_ids=True)
    assert len(once["sessions"]) == 1 and once["sessions"][0]["status"] == "COMPLETED"
    assert once["sessions"][0]["meter_stop_wh"] == 3900
    assert len(once["samples"]) == 5 * 5  # 3 MeterValues + Begin + End, 5 sampled values each

    charger = await RawCharger.open(server, "RP-REPLAY")
    second = await send_trace(charger)
    await charger.close()
    twice = await orm(canonical_dump)("RP-REPLAY", with_ids=True)

    assert twice == once
    start_index = len(trace_before_start()) - 1
    assert second[start_index]["transactionId"] == first[start_index]["transactionId"]
    assert second[start_index]["idTagInfo"]["status"] == "Accepted"


async def test_an_interrupted_delivery_replayed_in_full_equals_one_clean_run(server, fleet_of_two):
    clean = await RawCharger.open(server, "RP-CLEAN")
    await send_trace(clean)
    await clean.close()

    replaying = await RawCharger.open(server, "RP-REPLAY")
    partial = await send_trace(replaying, stop_after=6)  # up to the second MeterValues...
    replaying.ws.transport.abort()  # ...then the link drops without a closing handshake
    replaying = await RawCharger.open(server, "RP-REPLAY")
    full = await send_trace(replaying)
    await replaying.close()

    start_index = len(trace_before_start()) - 1
    assert full[start_index]["transactionId"] == partial[start_index]["transactionId"]
    expected = await orm(canonical_dump)("RP-CLEAN", with_ids=False)
    assert await orm(canonical_dump)("RP-REPLAY", with_ids=False) == expected


async def test_stop_for_an_unknown_transaction_is_answered_and_kept_for_review(server, fleet_of_two):
    charger = await RawCharger.open(server, "RP-REPLAY")
    await charger.boot()
    stop = {
        "transactionId": 987654,
        "meterStop": 5000,
        "timestamp": at(30),
        "idTag": ID_TAG,
        "reason": "Local",
    }
    answer = await charger.result("StopTransaction", stop)
    assert answer["idTagInfo"]["status"] == "Accepted"
    again = await charger.result("StopTransaction", stop)
    assert again == answer
    await charger.close()

    orphans = await orm(lambda: list(OrphanStop.objects.filter(charge_point__identity="RP-REPLAY")))()
    assert [(o.transaction_ref, o.resolved) for o in orphans] == [("987654", False)]
    assert orphans[0].payload["meterStop"] == 5000 and orphans[0].payload["transactionId"] == 987654
    sessions = await orm(lambda: ChargingSession.objects.filter(charge_point__identity="RP-REPLAY").count())()
    assert sessions == 0
