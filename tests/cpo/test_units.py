"""Money and energy units (pure, no database)."""

from decimal import Decimal

import pytest

from cpo.units import Money, kwh_from_wh, minor_digits, wh_from_kwh


@pytest.mark.parametrize(("currency", "digits"), [("EUR", 2), ("eur", 2), ("JPY", 0), ("KWD", 3), ("CLF", 4)])
def test_minor_digits(currency, digits):
    assert minor_digits(currency) == digits


@pytest.mark.parametrize("currency", ["EU", "EURO", "E1R", ""])
def test_minor_digits_refuses_non_codes(currency):
    with pytest.raises(ValueError, match="not an ISO-4217 currency code"):
        minor_digits(currency)


def test_currency_is_upper_cased():
    assert Money(Decimal("1.00"), "eur").currency == "EUR"


def test_amount_must_be_decimal():
    with pytest.raises(TypeError, match=r"Money\.amount must be a Decimal"):
        Money(1.1, "EUR")  # type: ignore[arg-type]


def test_unknown_currency_shape_refused():
    with pytest.raises(ValueError, match="not an ISO-4217 currency code"):
        Money(Decimal(1), "EURO")


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("1.005", "EUR", "1.01"),
        ("1.004", "EUR", "1.00"),
        ("-1.005", "EUR", "-1.01"),
        ("0.125", "EUR", "0.13"),
        ("1234.5", "JPY", "1235"),
        ("1234.49", "JPY", "1234"),
        ("1.2345", "KWD", "1.235"),
        ("1.2344", "KWD", "1.234"),
    ],
)
def test_rounding_half_up_to_minor_units(amount, currency, rounded):
    result = Money(Decimal(amount), currency).rounded()
    assert result == Money(Decimal(rounded), currency)
    assert str(result.amount) == rounded


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("12.34", "EUR", 1234),
        ("0.01", "EUR", 1),
        ("1235", "JPY", 1235),
        ("1.235", "KWD", 1235),
        ("-2.50", "EUR", -250),
    ],
)
def test_minor_units_round_trip(amount, currency, minor):
    money = Money(Decimal(amount), currency)
    assert money.to_minor_units() == minor
    assert Money.from_minor_units(minor, currency) == money


def test_unrounded_amount_has_no_minor_units():
    with pytest.raises(ValueError, match="more precision than EUR minor units"):
        Money(Decimal("1.005"), "EUR").to_minor_units()


def test_arithmetic_in_one_currency():
    assert Money(Decimal("1.10"), "EUR") + Money(Decimal("2.25"), "EUR") == Money(Decimal("3.35"), "EUR")
    assert Money(Decimal("1.10"), "EUR") - Money(Decimal("2.25"), "EUR") == Money(Decimal("-1.15"), "EUR")


@pytest.mark.parametrize("other", [Money(Decimal(1), "USD"), Decimal(1)])
def test_mixing_currencies_refused(other):
    eur = Money(Decimal(1), "EUR")
    with pytest.raises(ValueError, match="cannot combine amounts in different currencies"):
        eur + other
    with pytest.raises(ValueError, match="cannot combine amounts in different currencies"):
        eur - other


def test_money_is_immutable_and_printable():
    money = Money(Decimal("9.99"), "EUR")
    with pytest.raises(AttributeError):
        money.amount = Decimal(0)  # type: ignore[misc]
    assert str(money) == "9.99 EUR"


@pytest.mark.parametrize(
    ("kwh", "wh"),
    [(Decimal("12.3456"), 12346), ("0.0005", 1), ("0.0004", 0), (7, 7000), ("1.2345", 1235)],
)
def test_wh_from_kwh_rounds_half_up(kwh, wh):
    assert wh_from_kwh(kwh) == wh


def test_kwh_from_wh_is_exact():
    assert kwh_from_wh(12345) == Decimal("12.345")
