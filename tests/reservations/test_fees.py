"""Reservation fees (OCPI 2.2.1 reservation restrictions): a reservation no charge followed gets a record
of its own where the tariff prices that (a no-show, or the driver's own cancellation), and the holder's
charge carries the reservation's time in the session's record. Billing is asked to charge the fee."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from apps.billing import tasks as billing_tasks
from apps.charging import driver_services
from apps.charging.services import session_start, session_stop
from apps.reservations import services
from apps.reservations import tasks as reservation_tasks
from apps.reservations.choices import ReservationStatus
from apps.reservations.models import Reservation
from apps.stations.choices import OcppProtocol
from apps.tariffs import services as tariff_services
from apps.tariffs import tasks as tariff_tasks
from apps.tariffs.models import ChargeDetailRecord, SessionTariff
from cpo import clock
from tests.factories import DriverFactory, TariffAssignmentFactory, TariffElementFactory, TariffFactory
from tests.reservations.test_services import _answer, _charger, _reserve, clean_presence  # noqa: F401

pytestmark = pytest.mark.django_db
R = ReservationStatus


@pytest.fixture(autouse=True)
def sent(monkeypatch):
    """What is dispatched on commit: recorded here instead of sent to the broker."""
    calls: list[tuple] = []
    monkeypatch.setattr(reservation_tasks.reservation_fee_task, "delay", lambda pk: calls.append(("fee", pk)))
    monkeypatch.setattr(
        billing_tasks.reservation_fee_charge_task,
        "delay",
        lambda cdr_id, user_id: calls.append(("charge", cdr_id, user_id)),
    )
    monkeypatch.setattr(
        tariff_tasks.cdr_issue_task, "delay", lambda session_id: calls.append(("cdr", session_id))
    )
    return calls


def _tariff(org, *, expiry_fee: bool = True):
    """OCPI example 17: a 4.00 expiry fee, 2.00 an hour reserved billed per 10 minutes (20 % VAT), and a
    charge at 0.50 per session plus 0.25 per kWh (10 % VAT)."""
    tariff = TariffFactory(organisation=org)
    if expiry_fee:
        TariffElementFactory(
            tariff=tariff,
            position=0,
            energy_price=None,
            flat_price=D("4.00"),
            flat_vat=D(20),
            reservation="RESERVATION_EXPIRES",
        )
    TariffElementFactory(
        tariff=tariff,
        position=1,
        energy_price=None,
        time_price=D("2.00"),
        time_vat=D(20),
        time_step_s=600,
        reservation="RESERVATION",
    )
    TariffElementFactory(
        tariff=tariff,
        position=2,
        energy_price=D("0.25"),
        energy_vat=D(10),
        flat_price=D("0.50"),
        flat_vat=D(20),
    )
    TariffAssignmentFactory(tariff=tariff)
    return tariff


def test_a_no_show_gets_its_own_record_and_the_driver_is_charged(sent, django_capture_on_commit_callbacks):
    driver, cp = DriverFactory(), _charger()
    tariff = _tariff(cp.organisation)
    reservation = _answer(_reserve(driver, cp, minutes=30)[0])
    with django_capture_on_commit_callbacks(execute=True):
        assert services.reservations_expire(now=reservation.expires_at)["expired"] == 1
    assert ("fee", reservation.pk) in sent
    with django_capture_on_commit_callbacks(execute=True):
        cdr = services.reservation_fee_issue(reservation_id=reservation.pk)
    # 4.00 expiry fee + 0:30 h x 2.00 = 5.00 net, 6.00 with 20 % VAT
    assert cdr is not None and cdr.session_id is None and cdr.reservation_ref == reservation.pk
    assert (cdr.net, cdr.gross, cdr.tariff_id, cdr.energy_wh) == (D("5.00"), D("6.00"), tariff.pk, 0)
    assert [line["component"] for line in cdr.breakdown["lines"]] == ["RESERVATION_FLAT", "RESERVATION_TIME"]
    assert cdr.id_tag == reservation.id_tag and cdr.number
    assert ("charge", cdr.pk, driver.pk) in sent
    # Idempotent: the same record, nothing more issued.
    assert services.reservation_fee_issue(reservation_id=reservation.pk).pk == cdr.pk
    assert ChargeDetailRecord.objects.count() == 1


def test_without_reservation_pricing_a_no_show_costs_nothing():
    driver, cp = DriverFactory(), _charger()
    tariff = TariffFactory(organisation=cp.organisation)
    TariffElementFactory(tariff=tariff, energy_price=D("0.30"))
    TariffAssignmentFactory(tariff=tariff)
    reservation = _answer(_reserve(driver, cp)[0])
    services.reservations_expire(now=reservation.expires_at)
    assert services.reservation_fee_issue(reservation_id=reservation.pk) is None
    assert not ChargeDetailRecord.objects.exists()


def test_the_drivers_cancellation_is_priced_an_operators_is_not(sent, django_capture_on_commit_callbacks):
    cp = _charger()
    _tariff(cp.organisation)
    by_operator = _answer(_reserve(DriverFactory(), cp, evse_id=1, key="op")[0])
    with django_capture_on_commit_callbacks(execute=True):
        services.reservation_cancel(reservation=by_operator, source="admin")
    by_driver = _answer(_reserve(DriverFactory(), cp, evse_id=2, key="me")[0])
    with django_capture_on_commit_callbacks(execute=True):
        services.reservation_cancel(reservation=by_driver)
    assert [c for c in sent if c[0] == "fee"] == [("fee", by_driver.pk)]
    cdr = services.reservation_fee_issue(reservation_id=by_driver.pk)
    # Not expired: no expiry fee; the reservation's time, billed per 10 minutes.
    assert [line["component"] for line in cdr.breakdown["lines"]] == ["RESERVATION_TIME"]
    assert cdr.net == D("0.33")


def test_the_holders_charge_carries_the_reservations_time_in_its_record(sent):
    holder, cp = DriverFactory(), _charger()
    _tariff(cp.organisation)
    reservation = _answer(_reserve(holder, cp)[0])
    now = clock.now()
    Reservation.objects.filter(pk=reservation.pk).update(created_at=now - timedelta(minutes=22))
    token = driver_services.driver_app_token(driver=holder)
    session = session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag=token.uid,
        meter_start_wh=0,
        started_at_charger=now,
        received_at=now,
        protocol=OcppProtocol.OCPP16,
        reservation_id=reservation.pk,
    ).session
    snapshot = SessionTariff.objects.get(session=session)
    assert snapshot.reservation_started_at == now - timedelta(minutes=22)
    assert snapshot.reservation_ended_at == session.started_at
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=20_000,
        stopped_at_charger=now + timedelta(hours=1),
        received_at=now + timedelta(hours=1),
        reason="EVDisconnected",
    )
    cdr = tariff_services.cdr_issue(session_id=session.pk)
    # OCPI example 17 after 22 minutes: 0:30 h x 2.00 = 1.00 + 0.50 + 20 kWh x 0.25 = 6.50; gross 7.30
    assert (cdr.net, cdr.gross) == (D("6.50"), D("7.30"))
    assert "RESERVATION_FLAT" not in [line["component"] for line in cdr.breakdown["lines"]]
    reservation.refresh_from_db()
    assert reservation.status == R.CONSUMED
    # A consumed reservation gets no record of its own.
    assert services.reservation_fee_issue(reservation_id=reservation.pk) is None


def test_a_lost_fee_task_is_dispatched_again_by_the_sweep(sent):
    driver, cp = DriverFactory(), _charger()
    _tariff(cp.organisation)
    reservation = _answer(_reserve(driver, cp)[0])
    services.reservations_expire(now=reservation.expires_at)  # its on-commit dispatch never ran
    reservation.refresh_from_db()
    assert reservation.fee_due and not sent
    assert services.reservation_fees_sweep(now=reservation.ended_at) == 0  # not before a minute has passed
    later = reservation.ended_at + timedelta(minutes=2)
    assert services.reservation_fees_sweep(now=later) == 1 and sent == [("fee", reservation.pk)]
    assert services.reservation_fee_issue(reservation_id=reservation.pk) is not None
    assert services.reservation_fees_sweep(now=later) == 0
