"""Reconciliation of sessions whose stop was lost, against simulated OCPP 1.6 and 2.0.1 chargers over real
WebSockets. The simulator "loses" the stop (its StopTransaction / Ended event is never sent); this process
runs the reconciliation as the Celery task would, with a controllable clock (`now=`), and its questions
reach the charger through the server holding its connection."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal as D
from typing import Any

import pytest
import pytest_asyncio

from apps.charging import reconcile
from apps.charging.choices import AuthorizationStatus, ClosedBy, ProbeOutcome, ReviewReason, SessionStatus
from apps.charging.models import ChargingSession, OrphanStop
from apps.charging.services import idtoken_authorize
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.models import OcppCommand
from apps.stations.models import ChargePoint, Connector
from apps.tariffs import services as tariffs_services
from apps.tariffs.models import ChargeDetailRecord
from cpo import clock
from tests.e2e.conftest import KEY, eventually, orm
from tests.factories import (
    ChargePointFactory,
    IdTokenFactory,
    LocationFactory,
    OrganisationFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)
from tools.simulator import Fleet

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ID_TAG = "04FEED0001"
IDENTITY = "REC-00001"
MINUTE = 60.0


async def _async(value: Any) -> Any:
    return value


def _fleet(server, protocol: str) -> Fleet:
    return Fleet(
        url=server.url,
        count=1,
        prefix="REC-",
        protocol=protocol,
        key=KEY,
        connectors=1,
        meter_interval_s=1,
        reconnect_base_s=0.2,
        reconnect_max_s=1.0,
        reboot_delay_s=0.2,
        unplug_delay_s=0.2,
    )


async def _station(server, caplog, settings, protocol: str):
    """One simulated charger speaking `protocol`, booted, with a tariff (so CDRs are issued)."""
    caplog.set_level(logging.WARNING, logger="ocpp")
    settings.CPO_SESSION_IDLE_MINUTES = 60
    settings.CPO_SESSION_PROBE_WAIT_MINUTES = 5
    settings.CPO_SESSION_OFFLINE_CLOSE_MINUTES = 1440

    def register() -> None:
        org = OrganisationFactory(slug="recon-e2e", country="DE")
        IdTokenFactory(uid=ID_TAG)
        ChargePointFactory(
            identity=IDENTITY, organisation=org, location=LocationFactory(organisation=org, country="DE")
        )
        tariff = TariffFactory(organisation=org, name="Energy")
        TariffElementFactory(tariff=tariff, position=0, energy_price=D("0.30"), flat_price=D("1.00"))
        TariffAssignmentFactory(tariff=tariff, organisation=org)

    await orm(register)()
    fleet = _fleet(server, protocol)
    fleet.start()
    await eventually(lambda: _async(fleet.connected == 1), what="the charger booted")
    return fleet


@pytest_asyncio.fixture
async def station16(server, caplog, settings):
    fleet = await _station(server, caplog, settings, "ocpp1.6")
    yield fleet[IDENTITY]
    await fleet.stop()


@pytest_asyncio.fixture
async def station201(server, caplog, settings):
    fleet = await _station(server, caplog, settings, "ocpp2.0.1")
    yield fleet[IDENTITY]
    await fleet.stop()


def _session() -> ChargingSession | None:
    return ChargingSession.objects.filter(charge_point__identity=IDENTITY).order_by("-pk").first()


async def _charging(station) -> ChargingSession:
    """Start a transaction at the charger and wait until the product has it with a meter value."""
    assert await station.start_transaction(1, ID_TAG, authorize=True)

    def metered() -> ChargingSession | None:
        session = _session()
        if session is None or session.status != SessionStatus.ACTIVE or not session.meter_samples.exists():
            return None
        return session

    return await eventually(orm(metered), what="an active session with meter values")


def _lose_stops(station) -> list[dict[str, Any]]:
    """From now on the charger's stops are lost on the way (kept here, to deliver them late)."""
    lost: list[dict[str, Any]] = []
    station.send_stopped = lambda tx, **kwargs: lost.append({"tx": tx, **kwargs})
    return lost


def _deliver_late(station, lost: dict[str, Any]) -> None:
    type(station).send_stopped(station, lost.pop("tx"), **lost)


def _fresh(pk: int) -> ChargingSession:
    return ChargingSession.objects.get(pk=pk)


async def _wait_for(pk: int, what: str, check) -> ChargingSession:
    async def poll():
        session = await orm(_fresh)(pk)
        return session if check(session) else None

    return await eventually(poll, what=what)


def _later(minutes: float):
    """A time `minutes` from now: the reconciliation's controllable clock."""
    return clock.now() + timedelta(minutes=minutes)


def _reconcile(minutes_later: float = 0.0) -> dict[str, int]:
    return reconcile.sessions_reconcile(now=_later(minutes_later))


def _probe_commands(pk: int) -> list[tuple[str, dict, str]]:
    session = _fresh(pk)
    return list(
        OcppCommand.objects.filter(charge_point_id=session.charge_point_id, source="reconcile")
        .order_by("pk")
        .values_list("action", "payload", "status")
    )


def _card_status() -> str:
    return idtoken_authorize(uid=ID_TAG, charge_point=ChargePoint.objects.get(identity=IDENTITY)).status


async def test_16_free_connector_after_a_lost_stop_closes_the_session_and_a_late_stop_is_linked(station16):
    station = station16
    session = await _charging(station)
    lost = _lose_stops(station)
    assert station.stop_transaction(1, reason="Local", id_tag=ID_TAG)
    assert len(lost) == 1

    def freed() -> bool:  # the charger reports Finishing, then Available, after the stop it "sent"
        return Connector.objects.filter(
            evse__charge_point__identity=IDENTITY,
            status="Available",
            status_received_at__gt=session.start_received_at,
        ).exists()

    await eventually(orm(freed), what="the connector reported Available")
    assert await orm(_card_status)() == AuthorizationStatus.CONCURRENT_TX  # the card is blocked everywhere

    assert await orm(_reconcile)() == {"open": 0, "asked": 1, "closed": 0}  # no waiting for the idle time
    await _wait_for(session.pk, "the charger's answer", lambda s: s.probe_outcome == ProbeOutcome.ANSWERED)
    await eventually(
        orm(lambda: all(c[2] == "answered" for c in _probe_commands(session.pk))), what="both answered"
    )
    assert await orm(_probe_commands)(session.pk) == [
        ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}, "answered"),
        ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}, "answered"),
    ]
    assert await orm(_reconcile)(2) == {"open": 1, "asked": 0, "closed": 0}  # within the answer wait
    assert await orm(_reconcile)(6) == {"open": 0, "asked": 0, "closed": 1}
    closed = await orm(_fresh)(session.pk)
    last_reading = await orm(
        lambda: (
            session.meter_samples.filter(measurand="Energy.Active.Import.Register", phase="")
            .order_by("-sampled_at")
            .values_list("value", "sampled_at")
            .first()
        )
    )()
    assert (closed.status, closed.stop_reason, closed.review_reason) == (
        SessionStatus.COMPLETED,
        ClosedBy.CHARGER_IDLE,
        ReviewReason.RECONCILED,
    )
    assert (closed.meter_stop_wh, closed.stopped_at_charger) == (int(last_reading[0]), last_reading[1])
    assert await orm(_card_status)() == AuthorizationStatus.ACCEPTED
    cdr = await orm(tariffs_services.cdr_issue)(session_id=session.pk)
    assert cdr is not None

    # The charger's real stop arrives after all: kept and linked, the session flagged; no second CDR.
    _deliver_late(station, lost[0])
    late = await eventually(
        orm(lambda: OrphanStop.objects.filter(session_id=session.pk).first()), what="the late stop linked"
    )
    assert late.payload["transactionId"] == session.ocpp16_transaction_id
    assert late.payload["meterStop"] >= closed.meter_stop_wh
    flagged = await orm(_fresh)(session.pk)
    assert (flagged.review_reason, flagged.meter_stop_wh) == (ReviewReason.LATE_STOP, closed.meter_stop_wh)
    assert await orm(tariffs_services.cdr_issue)(session_id=session.pk) == cdr
    assert await orm(lambda: ChargeDetailRecord.objects.filter(session_id=session.pk).count())() == 1

    # The card starts a new charge at the charger (no ConcurrentTx).
    assert await station.start_transaction(1, ID_TAG, authorize=True)
    again = await eventually(
        orm(
            lambda: (
                ChargingSession.objects.exclude(pk=session.pk).filter(charge_point__identity=IDENTITY).first()
            )
        ),
        what="a new session",
    )
    assert (again.status, again.auth_status) == (SessionStatus.ACTIVE, AuthorizationStatus.ACCEPTED)


async def test_16_silent_charger_is_asked_by_trigger_message_then_closed(station16):
    station = station16
    session = await _charging(station)
    _lose_stops(station)
    station.refresh_statuses = lambda: None  # its status reports are lost too: silence
    assert station.stop_transaction(1, reason="EVDisconnected")

    assert await orm(_reconcile)(30) == {"open": 1, "asked": 0, "closed": 0}  # not idle long enough
    assert await orm(_reconcile)(61) == {"open": 0, "asked": 1, "closed": 0}
    await _wait_for(session.pk, "the charger's answer", lambda s: s.probe_outcome == ProbeOutcome.ANSWERED)

    def triggered_status() -> bool:  # the StatusNotification the question triggered says: free
        return Connector.objects.filter(
            evse__charge_point__identity=IDENTITY,
            status__in=("Finishing", "Available"),
            status_received_at__gt=session.start_received_at,
        ).exists()

    await eventually(orm(triggered_status), what="the triggered StatusNotification")
    assert await orm(_reconcile)(67) == {"open": 0, "asked": 0, "closed": 1}
    closed = await orm(_fresh)(session.pk)
    assert (closed.status, closed.stop_reason) == (SessionStatus.COMPLETED, ClosedBy.CHARGER_IDLE)
    assert await orm(_card_status)() == AuthorizationStatus.ACCEPTED


async def test_16_reboot_after_a_lost_stop_closes_the_session(station16):
    station = station16
    session = await _charging(station)
    _lose_stops(station)
    station.refresh_statuses = lambda: None
    assert station.stop_transaction(1, reason="PowerLoss")
    booted_before = await orm(lambda: ChargePoint.objects.get(identity=IDENTITY).last_boot_at)()
    station.reboot()
    await eventually(
        orm(lambda: ChargePoint.objects.get(identity=IDENTITY).last_boot_at != booted_before),
        what="a new BootNotification",
    )
    await eventually(lambda: _async(station.accepted), what="the charger back")
    assert await orm(_reconcile)() == {"open": 0, "asked": 1, "closed": 0}
    await _wait_for(session.pk, "the charger's answer", lambda s: s.probe_outcome == ProbeOutcome.ANSWERED)
    assert await orm(_reconcile)(6) == {"open": 0, "asked": 0, "closed": 1}
    closed = await orm(_fresh)(session.pk)
    assert (closed.status, closed.stop_reason) == (SessionStatus.COMPLETED, ClosedBy.REBOOT)


async def test_201_transaction_the_station_says_ended_is_closed_at_its_answer(station201):
    station = station201
    session = await _charging(station)
    _lose_stops(station)
    assert station.stop_transaction(1, reason="EVDisconnected")
    assert await orm(_reconcile)(61) == {"open": 0, "asked": 1, "closed": 0}
    assert [c[:2] for c in await orm(_probe_commands)(session.pk)] == [
        ("GetTransactionStatus", {"transactionId": session.transaction_ref})
    ]
    # ongoingIndicator false, nothing queued: the server closes it when the answer comes, no waiting.
    closed = await _wait_for(session.pk, "the session closed", lambda s: s.status == SessionStatus.COMPLETED)
    assert closed.stop_reason in (ClosedBy.CHARGER_IDLE, ClosedBy.TIMEOUT)
    assert closed.review_reason == ReviewReason.RECONCILED
    assert await orm(_card_status)() == AuthorizationStatus.ACCEPTED


async def test_201_transaction_the_station_says_runs_is_left_open(station201):
    station = station201
    session = await _charging(station)
    assert await orm(_reconcile)(61) == {"open": 0, "asked": 1, "closed": 0}
    confirmed = await _wait_for(
        session.pk, "the charger's answer", lambda s: s.alive_confirmed_at is not None
    )
    assert confirmed.probe_outcome == ProbeOutcome.ANSWERED
    assert await orm(_reconcile)(6) == {"open": 1, "asked": 0, "closed": 0}
    assert (await orm(_fresh)(session.pk)).status == SessionStatus.ACTIVE
    assert await orm(_card_status)() == AuthorizationStatus.CONCURRENT_TX


async def test_201_station_gone_mid_transaction_is_closed_after_the_long_timeout(station201):
    station = station201
    session = await _charging(station)
    station.stop()  # the station goes away mid-transaction and never comes back
    await eventually(orm(lambda: presence.lookup(IDENTITY) is None), what="the station offline")
    assert await orm(_reconcile)(61) == {"open": 0, "asked": 1, "closed": 0}
    assert [c[2] for c in await orm(_probe_commands)(session.pk)] == ["charger_offline"]
    assert (await orm(_fresh)(session.pk)).probe_outcome == ProbeOutcome.UNANSWERED
    assert await orm(_reconcile)(120) == {"open": 1, "asked": 0, "closed": 0}
    assert await orm(_reconcile)(1441) == {"open": 0, "asked": 0, "closed": 1}
    closed = await orm(_fresh)(session.pk)
    assert (closed.status, closed.stop_reason) == (SessionStatus.COMPLETED, ClosedBy.TIMEOUT)
    assert await orm(_card_status)() == AuthorizationStatus.ACCEPTED
