"""apps.tariffs.pricing for reservations: the OCPI 2.2.1 tariff examples 15-18 (mod_tariffs, "Tariff example
with reservation price ..."), with the amounts the specification works out, for a reservation followed by a
charge (a line in the session's record) and for one that expired (a record of its own). No database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from apps.tariffs.pricing import (
    RESERVATION,
    RESERVATION_EXPIRES,
    RESERVATION_FLAT,
    RESERVATION_TIME,
    ComponentSpec,
    ElementSpec,
    EnergyReading,
    ReservationUsage,
    Restrictions,
    SessionUsage,
    TariffSpec,
    periods_from_states,
    price_reservation,
    price_session,
    prices_reservations,
)

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def c(price: str, vat: str, step: int = 0) -> ComponentSpec:
    return ComponentSpec(D(price), D(vat), step)


# The element every example ends with: a 0.50 start fee (20 % VAT) and 0.25 per kWh (10 % VAT), per Wh.
CHARGING = ElementSpec(flat=c("0.50", "20", 1), energy=c("0.25", "10", 1))


def tariff(*elements: ElementSpec) -> TariffSpec:
    return TariffSpec(currency="EUR", time_zone="Europe/Berlin", elements=elements)


def reserved(kind: str, **components: ComponentSpec) -> ElementSpec:
    return ElementSpec(restrictions=Restrictions(reservation=kind), **components)


EXAMPLE_15 = tariff(reserved(RESERVATION, time=c("5.00", "20", 60)), CHARGING)
EXAMPLE_16 = tariff(reserved(RESERVATION, flat=c("2.00", "20", 1), time=c("5.00", "20", 300)), CHARGING)
EXAMPLE_17 = tariff(
    reserved(RESERVATION_EXPIRES, flat=c("4.00", "20", 1)),
    reserved(RESERVATION, time=c("2.00", "20", 600)),
    CHARGING,
)
EXAMPLE_18 = tariff(
    reserved(RESERVATION_EXPIRES, time=c("6.00", "20", 600)),
    reserved(RESERVATION, time=c("3.00", "20", 600)),
    CHARGING,
)


def charge_after(minutes: int) -> SessionUsage:
    """20 kWh in an hour, started `minutes` after the reservation was made."""
    end = START + timedelta(hours=1)
    return SessionUsage(
        start=START,
        end=end,
        energy=(EnergyReading(end, 20_000),),
        periods=periods_from_states(start=START, end=end, stopped_at=end, changes=[]),
        reservation=ReservationUsage(start=START - timedelta(minutes=minutes), end=START),
    )


def expired_after(duration: timedelta) -> ReservationUsage:
    return ReservationUsage(start=START, end=START + duration, expired=True)


def amounts(breakdown) -> tuple[str, str]:
    return str(breakdown.net), str(breakdown.gross)


def test_example_15_reservation_per_hour_in_the_sessions_record():
    # 0.50 + 20 kWh x 0.25 = 5.00 + 0:15 h x 5.00 = 1.25 -> 6.75; gross 0.60 + 5.50 + 1.50 = 7.60
    breakdown = price_session(tariff=EXAMPLE_15, usage=charge_after(15))
    assert amounts(breakdown) == ("6.75", "7.60")
    line = next(x for x in breakdown.lines if x.component == RESERVATION_TIME)
    assert (line.element, line.quantity, line.net) == (0, D("0.25"), D("1.25"))
    assert line.unit == "h"


def test_example_16_reservation_fee_and_time_billed_per_five_minutes():
    # 13 minutes billed as 15: 2.00 + 1.25 + 0.50 + 5.00 = 8.75; gross 10.00
    breakdown = price_session(tariff=EXAMPLE_16, usage=charge_after(13))
    assert amounts(breakdown) == ("8.75", "10.00")
    assert {x.component for x in breakdown.lines} >= {RESERVATION_FLAT, RESERVATION_TIME}


def test_example_17_used_is_time_only_and_expired_adds_the_expiry_fee():
    # used after 22 minutes, billed per 10: 0:30 h x 2.00 = 1.00 + 0.50 + 5.00 = 6.50; gross 7.30
    assert amounts(price_session(tariff=EXAMPLE_17, usage=charge_after(22))) == ("6.50", "7.30")
    # expired after the hour reserved: 4.00 expiry fee + 1 h x 2.00 = 6.00; gross 7.20
    breakdown = price_reservation(tariff=EXAMPLE_17, usage=expired_after(timedelta(hours=1)))
    assert amounts(breakdown) == ("6.00", "7.20")
    assert [(x.component, x.element) for x in breakdown.lines] == [
        (RESERVATION_FLAT, 0),
        (RESERVATION_TIME, 1),
    ]
    assert breakdown.energy_wh == 0 and breakdown.charging_seconds == 0


def test_example_18_expired_time_is_priced_by_the_expires_element():
    # used after 22 minutes: 0:30 h x 3.00 = 1.50 + 5.50 = 7.00; gross 1.80 + 0.60 + 5.50 = 7.90
    assert amounts(price_session(tariff=EXAMPLE_18, usage=charge_after(22))) == ("7.00", "7.90")
    # expired after 1.5 h: 1.5 h x 6.00 (RESERVATION_EXPIRES wins over RESERVATION) = 9.00; gross 10.80
    breakdown = price_reservation(tariff=EXAMPLE_18, usage=expired_after(timedelta(minutes=90)))
    assert amounts(breakdown) == ("9.00", "10.80")
    assert [(x.component, x.element) for x in breakdown.lines] == [(RESERVATION_TIME, 0)]


def test_expires_element_wins_for_time_whatever_the_order():
    reordered = dataclasses.replace(
        EXAMPLE_18, elements=(EXAMPLE_18.elements[1], EXAMPLE_18.elements[0], CHARGING)
    )
    breakdown = price_reservation(tariff=reordered, usage=expired_after(timedelta(minutes=90)))
    assert amounts(breakdown) == ("9.00", "10.80")


def test_a_cancelled_reservation_is_priced_by_reservation_elements_only():
    # Not expired: the expiry fee and the expiry rate do not apply; 25 minutes billed per 10 as 30.
    breakdown = price_reservation(
        tariff=EXAMPLE_17, usage=ReservationUsage(START, START + timedelta(minutes=25), expired=False)
    )
    assert amounts(breakdown) == ("1.00", "1.20")


def test_no_reservation_elements_cost_nothing_and_min_price_does_not_apply_to_a_reservation_alone():
    plain = dataclasses.replace(tariff(CHARGING), min_price=D("3.00"))
    assert not prices_reservations(plain) and prices_reservations(EXAMPLE_15)
    alone = price_reservation(tariff=plain, usage=expired_after(timedelta(minutes=30)))
    assert amounts(alone) == ("0.00", "0.00") and alone.lines == ()
    # Without a reservation the session's price is the charge's alone.
    usage = dataclasses.replace(charge_after(15), reservation=None)
    assert amounts(price_session(tariff=EXAMPLE_15, usage=usage)) == ("5.50", "6.10")
