"""Normalising sampled meter values from any OCPP version (pure, no ORM).

Energy becomes Wh, power W, reactive energy varh, reactive power var, current A, voltage V,
temperature Celsius; 1.6's misspelt "Celcius" is read as Celsius. Signed values keep their payload
verbatim in `signed_data` and carry no numeric value unless the charger sent one beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

DEFAULT_MEASURAND = "Energy.Active.Import.Register"
ENERGY_REGISTER = DEFAULT_MEASURAND

# unit as sent -> (normalised unit, factor)
_UNITS: dict[str, tuple[str, Decimal]] = {
    "Wh": ("Wh", Decimal(1)),
    "kWh": ("Wh", Decimal(1000)),
    "varh": ("varh", Decimal(1)),
    "kvarh": ("varh", Decimal(1000)),
    "W": ("W", Decimal(1)),
    "kW": ("W", Decimal(1000)),
    "VA": ("VA", Decimal(1)),
    "kVA": ("VA", Decimal(1000)),
    "var": ("var", Decimal(1)),
    "kvar": ("var", Decimal(1000)),
    "A": ("A", Decimal(1)),
    "V": ("V", Decimal(1)),
    "Celsius": ("Celsius", Decimal(1)),
    "Celcius": ("Celsius", Decimal(1)),
    "Fahrenheit": ("Fahrenheit", Decimal(1)),
    "K": ("K", Decimal(1)),
    "Percent": ("Percent", Decimal(1)),
    "Hz": ("Hz", Decimal(1)),
    "ASU": ("ASU", Decimal(1)),
    "dBm": ("dBm", Decimal(1)),
    "B": ("B", Decimal(1)),
}


def default_unit(measurand: str) -> str:
    if measurand.startswith("Energy.Active"):
        return "Wh"
    if measurand.startswith("Energy.Reactive"):
        return "varh"
    if measurand.startswith("Power.Active") or measurand == "Power.Offered":
        return "W"
    if measurand.startswith("Power.Reactive"):
        return "var"
    if measurand.startswith("Current"):
        return "A"
    if measurand == "Voltage":
        return "V"
    if measurand == "SoC":
        return "Percent"
    if measurand == "Temperature":
        return "Celsius"
    return ""


@dataclass(frozen=True, slots=True)
class Sample:
    sampled_at: datetime
    measurand: str
    unit: str
    value: Decimal | None
    phase: str = ""
    location: str = ""
    context: str = ""
    raw_value: str = ""
    raw_unit: str = ""
    signed_data: str = ""


def normalise(
    *,
    sampled_at: datetime,
    value: Any,
    measurand: str | None = None,
    unit: str | None = None,
    multiplier: int = 0,
    phase: str | None = None,
    location: str | None = None,
    context: str | None = None,
    signed: bool = False,
    signed_data: str = "",
) -> Sample:
    """One sample in our units. `multiplier` is 2.0.1's power of ten; a 1.6 SignedData value arrives
    as `value` with signed=True."""
    measurand = measurand or DEFAULT_MEASURAND
    raw_unit = unit or default_unit(measurand)
    norm_unit, factor = _UNITS.get(raw_unit, (raw_unit, Decimal(1)))
    raw_value = "" if value is None else str(value)
    number: Decimal | None = None
    if signed:
        signed_data = signed_data or raw_value
    elif value is not None:
        try:
            number = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError(f"sampled value {value!r} is not a number") from exc
        if not number.is_finite():
            raise ValueError(f"sampled value {value!r} is not a finite number")
        number = (number * factor).scaleb(multiplier)
    return Sample(
        sampled_at=sampled_at,
        measurand=measurand,
        unit=norm_unit,
        value=number,
        phase=phase or "",
        location=location or "",
        context=context or "",
        raw_value=raw_value[:64],
        raw_unit=(unit or "")[:16],
        signed_data=signed_data,
    )


def energy_register_wh(samples: list[Sample]) -> int | None:
    """The last whole-EVSE active energy import register reading among `samples`, in Wh."""
    readings = [s for s in samples if s.measurand == ENERGY_REGISTER and not s.phase and s.value is not None]
    if not readings:
        return None
    return int(max(readings, key=lambda s: s.sampled_at).value)
