"""Money and energy. Money is Decimal with an ISO-4217 currency; energy is integer Wh; power integer W."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 minor units for the currencies whose exponent is not 2.
_MINOR_DIGITS = {
    "BHD": 3,
    "BIF": 0,
    "CLF": 4,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "UYW": 4,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}


def minor_digits(currency: str) -> int:
    code = currency.upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"not an ISO-4217 currency code: {currency!r}")
    return _MINOR_DIGITS.get(code, 2)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency. Arithmetic refuses to mix currencies."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError("Money.amount must be a Decimal")
        object.__setattr__(self, "currency", self.currency.upper())
        minor_digits(self.currency)

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money) or other.currency != self.currency:
            raise ValueError("cannot combine amounts in different currencies")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def rounded(self) -> Money:
        """Rounded half-up to the currency's minor unit."""
        quantum = Decimal(1).scaleb(-minor_digits(self.currency))
        return Money(self.amount.quantize(quantum, rounding=ROUND_HALF_UP), self.currency)

    def to_minor_units(self) -> int:
        """Integer minor units (the Stripe boundary); the amount must already be rounded."""
        scaled = self.amount.scaleb(minor_digits(self.currency))
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{self} has more precision than {self.currency} minor units")
        return int(scaled)

    @classmethod
    def from_minor_units(cls, value: int, currency: str) -> Money:
        return cls(Decimal(value).scaleb(-minor_digits(currency)), currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def wh_from_kwh(kwh: Decimal | int | str) -> int:
    """kWh → integer Wh, rounded half-up."""
    return int((Decimal(str(kwh)) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def kwh_from_wh(wh: int) -> Decimal:
    return Decimal(wh) / Decimal(1000)
