"""OCPP 2.0.1 TransactionEvent is applied in one transaction and is idempotent on "applied", not "seen":
an Ended event whose stop failed is applied again when the charger repeats it."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.charging import driver_services
from apps.charging import services as charging_services
from apps.charging.choices import SessionStatus
from apps.charging.metering import ENERGY_REGISTER, Sample
from apps.charging.models import ChargingSession, TransactionEvent
from apps.charging.services import session_stop, transaction_event_record
from tests.factories import ChargePointFactory, ConnectorFactory, EvseFactory, IdTokenFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class Injected(Exception):
    """The failure a test injects."""


@pytest.fixture
def cp():
    charge_point = ChargePointFactory(identity="CP-TE", ocpp_protocol="ocpp2.0.1")
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1))
    IdTokenFactory(uid="04A1B2C3")
    return charge_point


@pytest.fixture
def stops(monkeypatch):
    """How many times a session was actually stopped (the driver flow hears of each stop once)."""
    calls = []
    real = driver_services.driver_session_charging_stopped

    def counting(*, charging):
        calls.append(charging.pk)
        return real(charging=charging)

    monkeypatch.setattr(driver_services, "driver_session_charging_stopped", counting)
    return calls


def event(cp, seq_no, event_type, *, wh=None, at=None, **kwargs):
    at = at or T0 + timedelta(minutes=seq_no)
    samples = []
    if wh is not None:
        context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
            event_type, "Sample.Periodic"
        )
        samples = [
            Sample(sampled_at=at, measurand=ENERGY_REGISTER, unit="Wh", value=Decimal(wh), context=context)
        ]
    return transaction_event_record(
        charge_point_id=cp.pk,
        transaction_ref="TX-1",
        seq_no=seq_no,
        event_type=event_type,
        trigger_reason=kwargs.pop("trigger_reason", "ChargingStateChanged"),
        timestamp=at,
        received_at=at,
        evse_id=1,
        connector_id=1,
        samples=samples,
        **kwargs,
    )


def test_a_failure_between_the_ended_event_and_the_stop_is_undone_and_the_replay_stops_once(
    cp, stops, monkeypatch
):
    event(cp, 0, "Started", wh=1000, id_tag="04a1b2c3")
    event(cp, 1, "Updated", wh=4000)

    def failing_stop(**kwargs):
        raise Injected("the database went away between the event and the stop")

    monkeypatch.setattr(charging_services, "session_stop", failing_stop)
    with pytest.raises(Injected):
        event(cp, 2, "Ended", wh=9000, stopped_reason="Local")
    monkeypatch.setattr(charging_services, "session_stop", session_stop)

    session = ChargingSession.objects.get(transaction_ref="TX-1")
    assert session.status == SessionStatus.ACTIVE
    # Nothing of the failed message stays: not even the event row that would make its replay a duplicate.
    assert not TransactionEvent.objects.filter(transaction_ref="TX-1", seq_no=2).exists()

    replay = event(cp, 2, "Ended", wh=9000, stopped_reason="Local")  # the charger repeats it

    assert not replay.duplicate
    session.refresh_from_db()
    assert session.status == SessionStatus.COMPLETED
    assert (session.meter_start_wh, session.meter_stop_wh) == (1000, 9000)
    assert stops == [session.pk]
    assert TransactionEvent.objects.filter(transaction_ref="TX-1").count() == 3

    again = event(cp, 2, "Ended", wh=9000, stopped_reason="Local")
    assert again.duplicate
    assert stops == [session.pk]  # stopped exactly once


def test_a_failing_reaction_to_the_stop_rolls_the_whole_event_back(cp, stops, monkeypatch):
    """A follow-up in the same transaction (here the driver flow's) that fails leaves no half-applied
    event behind either."""
    event(cp, 0, "Started", wh=1000, id_tag="04a1b2c3")

    def failing_reaction(*, charging):
        raise Injected

    monkeypatch.setattr(driver_services, "driver_session_charging_stopped", failing_reaction)
    with pytest.raises(Injected):
        event(cp, 1, "Ended", wh=5000)
    assert ChargingSession.objects.get(transaction_ref="TX-1").status == SessionStatus.ACTIVE
    assert not TransactionEvent.objects.filter(transaction_ref="TX-1", seq_no=1).exists()


def test_a_session_left_open_after_its_ended_event_was_recorded_is_stopped_by_the_replay(cp, stops):
    """Sessions that the earlier, multi-transaction code left open (Ended event stored, stop lost) are
    closed when the charger repeats the Ended event."""
    event(cp, 0, "Started", wh=1000, id_tag="04a1b2c3")
    session = ChargingSession.objects.get(transaction_ref="TX-1")
    TransactionEvent.objects.create(
        charge_point=cp,
        transaction_ref="TX-1",
        seq_no=1,
        session=session,
        event_type="Ended",
        trigger_reason="StopAuthorized",
        timestamp=T0 + timedelta(minutes=1),
        received_at=T0 + timedelta(minutes=1),
        payload={},
    )

    replay = event(cp, 1, "Ended", wh=7000, trigger_reason="StopAuthorized")

    assert replay.duplicate  # the event itself was stored before
    session.refresh_from_db()
    assert session.status == SessionStatus.COMPLETED
    assert session.meter_stop_wh == 7000
    assert stops == [session.pk]


def test_an_ocpp16_stop_that_fails_midway_leaves_the_session_open_and_its_replay_stops_it_once(
    cp, stops, monkeypatch
):
    """1.6 StopTransaction has the same shape: one transaction, idempotent on the session being stopped."""
    started = charging_services.session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag="04a1b2c3",
        meter_start_wh=100,
        started_at_charger=T0,
        received_at=T0,
        protocol="ocpp1.6",
    )
    ref = started.session.transaction_ref
    kwargs = dict(
        charge_point_id=cp.pk,
        transaction_ref=ref,
        meter_stop_wh=2100,
        stopped_at_charger=T0 + timedelta(hours=1),
        received_at=T0 + timedelta(hours=1),
    )
    real = driver_services.driver_session_charging_stopped

    def failing_reaction(*, charging):
        raise Injected

    monkeypatch.setattr(driver_services, "driver_session_charging_stopped", failing_reaction)
    with pytest.raises(Injected):
        session_stop(**kwargs)
    assert ChargingSession.objects.get(pk=started.session.pk).status == SessionStatus.ACTIVE

    monkeypatch.setattr(driver_services, "driver_session_charging_stopped", real)
    session_stop(**kwargs)
    session_stop(**kwargs)
    session = ChargingSession.objects.get(pk=started.session.pk)
    assert session.status == SessionStatus.COMPLETED
    assert session.energy_wh == 2000
    assert stops == [session.pk]
