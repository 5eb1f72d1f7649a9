"""OCPP 2.0.1 Core, CSMS test cases C (Authorization): token statuses, cache, ClearCache, GroupId and
Master Pass (part 6, section 3.4)."""

from __future__ import annotations

import pytest

from apps.charging.choices import ReviewReason, SessionStatus
from apps.charging.models import ChargingSession
from tests.conformance.station import (
    Tx,
    assert_token_status,
    energy_transfer_started,
    ev_connected_post_session,
    ev_connected_pre_session,
    ev_disconnected,
    operate,
)
from tests.e2e.conftest import orm

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _session(identity: str, transaction_id: str) -> ChargingSession:
    return ChargingSession.objects.get(charge_point__identity=identity, transaction_ref=transaction_id)


async def test_TC_C_02_CSMS(station, octt):
    """Local start transaction - Authorization Invalid/Unknown."""
    answer = await station.result("Authorize", {"idToken": octt.invalid.wire()})
    assert_token_status(answer, "Invalid", "Unknown")


async def test_TC_C_06_CSMS(station, octt):
    """Local start transaction - Authorization Blocked."""
    answer = await station.result("Authorize", {"idToken": octt.blocked.wire()})
    assert_token_status(answer, "Blocked", "Invalid")


async def test_TC_C_07_CSMS(station, octt):
    """Local start transaction - Authorization Expired."""
    answer = await station.result("Authorize", {"idToken": octt.expired.wire()})
    assert_token_status(answer, "Expired", "Invalid")


async def test_TC_C_08_CSMS(station, octt):
    """Authorization through authorization cache - Accepted: a cached token arrives only in a
    TransactionEventRequest (no AuthorizeRequest) and is Accepted there."""
    tx = Tx(station)
    await ev_connected_pre_session(tx)
    answer = await tx.event("Updated", "Authorized", token=octt.valid)
    assert_token_status(answer, "Accepted")
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.id_tag, session.auth_status, session.review_reason) == (
        octt.valid.id_token,
        "Accepted",
        "",
    )


async def test_TC_C_20_CSMS(station, octt):
    """Authorization through authorization cache - Invalid: a token the station cached but the CSMS does
    not know is answered Invalid, and the session is flagged for review."""
    tx = Tx(station)
    await ev_connected_pre_session(tx)
    answer = await tx.event("Updated", "Authorized", token=octt.invalid)
    assert_token_status(answer, "Invalid", "Unknown")
    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.auth_status, session.review_reason) == ("Invalid", ReviewReason.UNKNOWN_TOKEN)


async def test_TC_C_37_CSMS(station):
    """Clear Authorization Data in Authorization Cache - Accepted."""
    request, result = await operate(station, "ClearCache", {}, {"status": "Accepted"})
    assert request == {} and result["response"] == {"status": "Accepted"}


async def test_TC_C_38_CSMS(station):
    """Clear Authorization Data in Authorization Cache - Rejected (the station's cache is disabled)."""
    request, result = await operate(station, "ClearCache", {}, {"status": "Rejected"})
    assert request == {} and result["response"] == {"status": "Rejected"}


async def test_TC_C_39_CSMS(station, octt):
    """Authorization by GroupId - Success: two tokens of one group; the second stops what the first
    started, and every answer names the group."""
    tx = Tx(station)
    await ev_connected_pre_session(tx)
    assert_token_status(
        await station.result("Authorize", {"idToken": octt.valid2.wire()}), "Accepted", group=octt.group
    )
    assert_token_status(
        await tx.event("Updated", "Authorized", token=octt.valid), "Accepted", group=octt.group
    )
    tx.authorized = True
    await energy_transfer_started(tx, octt.valid)
    assert_token_status(
        await station.result("Authorize", {"idToken": octt.valid2.wire()}), "Accepted", group=octt.group
    )
    assert_token_status(
        await tx.event("Updated", "StopAuthorized", token=octt.valid2), "Accepted", group=octt.group
    )
    await ev_connected_post_session(tx)
    await ev_disconnected(tx)

    session = await orm(_session)(octt.identity, tx.transaction_id)
    assert (session.status, session.id_tag, session.stop_id_tag, session.auth_status) == (
        SessionStatus.COMPLETED,
        octt.valid.id_token,
        octt.valid2.id_token,
        "Accepted",
    )


async def _two_charging(station, octt) -> tuple[Tx, Tx]:
    """EnergyTransferStarted on EVSE 1 with valid_idtoken and on EVSE 2 with valid_idtoken2."""
    first, second = Tx(station, evse_id=1), Tx(station, evse_id=2)
    await energy_transfer_started(first, octt.valid)
    await energy_transfer_started(second, octt.valid2)
    return first, second


async def _stopped_by(identity: str, tx: Tx) -> tuple[str, str, str]:
    session = await orm(_session)(identity, tx.transaction_id)
    return session.status, session.stop_reason, session.stop_id_tag


async def test_TC_C_47_CSMS(station, octt):
    """Stop Transaction with a Master Pass - With UI - All transactions."""
    first, second = await _two_charging(station, octt)
    assert_token_status(
        await station.result("Authorize", {"idToken": octt.master_pass.wire()}),
        "Accepted",
        group=octt.master_pass_group,
    )
    for tx in (first, second):
        answer = await tx.event(
            "Ended", "StopAuthorized", stopped_reason="MasterPass", token=octt.master_pass
        )
        assert_token_status(answer, "Accepted", group=octt.master_pass_group)
    for tx in (first, second):
        assert await _stopped_by(octt.identity, tx) == (
            SessionStatus.COMPLETED,
            "MasterPass",
            octt.master_pass.id_token,
        )


async def test_TC_C_48_CSMS(station, octt):
    """Stop Transaction with a Master Pass - With UI - Specific transactions: only the chosen one ends."""
    first, second = await _two_charging(station, octt)
    assert_token_status(
        await station.result("Authorize", {"idToken": octt.master_pass.wire()}),
        "Accepted",
        group=octt.master_pass_group,
    )
    answer = await second.event(
        "Ended", "StopAuthorized", stopped_reason="MasterPass", token=octt.master_pass
    )
    assert_token_status(answer, "Accepted", group=octt.master_pass_group)
    assert await _stopped_by(octt.identity, second) == (
        SessionStatus.COMPLETED,
        "MasterPass",
        octt.master_pass.id_token,
    )
    assert (await _stopped_by(octt.identity, first))[0] == SessionStatus.ACTIVE


async def test_TC_C_49_CSMS(station, octt):
    """Stop Transaction with a Master Pass - Without UI: the station ends both transactions, naming the
    token that started one of them. That token is presented to stop, not to start: no ConcurrentTx,
    whichever transaction ends first."""
    first, second = await _two_charging(station, octt)
    assert_token_status(await station.result("Authorize", {"idToken": octt.master_pass.wire()}), "Accepted")
    for tx in (second, first):
        answer = await tx.event("Ended", "StopAuthorized", stopped_reason="MasterPass", token=octt.valid)
        assert_token_status(answer, "Accepted", group=octt.group)
    for tx in (first, second):
        assert await _stopped_by(octt.identity, tx) == (
            SessionStatus.COMPLETED,
            "MasterPass",
            octt.valid.id_token,
        )
