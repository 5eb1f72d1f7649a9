"""The simulated energy meter of one connector (pure, no I/O): power integrated over time into an
Energy.Active.Import.Register in Wh, and the sampled values OCPP 1.6 MeterValues carry."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

PHASE_NAMES = ("L1", "L2", "L3")


@dataclass
class Meter:
    """`energy_wh` only grows; `advance()` adds power times elapsed time (monotonic clock) to it."""

    energy_wh: float = 0.0
    power_w: float = 0.0
    phases: int = 3
    voltage_v: float = 230.0
    offered_a: float = 0.0
    _at: float = field(default_factory=time.monotonic)

    @property
    def register_wh(self) -> int:
        return int(self.energy_wh)

    @property
    def current_a(self) -> float:
        return self.power_w / (self.voltage_v * self.phases) if self.power_w > 0 else 0.0

    def advance(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        elapsed = max(0.0, now - self._at)
        self.energy_wh += self.power_w * elapsed / 3600.0
        self._at = now

    def set_power(self, power_w: float, *, offered_a: float, now: float | None = None) -> None:
        """Change the power drawn from now on (the energy so far is booked at the old power)."""
        self.advance(now)
        self.power_w = max(0.0, power_w)
        self.offered_a = max(0.0, offered_a)

    def sampled_values(
        self, measurands: list[str], *, context: str, now: float | None = None
    ) -> list[dict[str, Any]]:
        """One sampledValue per measurand (per phase for currents and voltages), as OCPP 1.6 spells them,
        read at `now` (monotonic; default: now)."""
        self.advance(now)
        values: list[dict[str, Any]] = []
        phases = PHASE_NAMES[: self.phases]
        for measurand in measurands:
            base = {"context": context, "measurand": measurand, "location": "Outlet"}
            if measurand == "Energy.Active.Import.Register":
                values.append({**base, "value": str(self.register_wh), "unit": "Wh"})
            elif measurand == "Power.Active.Import":
                values.append({**base, "value": f"{self.power_w:.1f}", "unit": "W"})
            elif measurand == "Power.Offered":
                offered_w = self.offered_a * self.voltage_v * self.phases
                values.append({**base, "value": f"{offered_w:.1f}", "unit": "W"})
            elif measurand == "Current.Offered":
                values.append({**base, "value": f"{self.offered_a:.1f}", "unit": "A"})
            elif measurand == "Current.Import":
                values.extend(
                    {**base, "value": f"{self.current_a:.2f}", "unit": "A", "phase": phase}
                    for phase in phases
                )
            elif measurand == "Voltage":
                values.extend(
                    {**base, "value": f"{self.voltage_v:.1f}", "unit": "V", "phase": f"{phase}-N"}
                    for phase in phases
                )
        return values
