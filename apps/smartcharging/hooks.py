"""What smart charging tells the apps above it without importing them (docs/architecture.md, Layering).
Receivers run inside the caller's transaction; wired in the higher apps' AppConfig.ready():

- `charging_profile_answered`: the charger answered one of our SetChargingProfile commands, accepted or
  rejected (`services.charging_limit_finished`). The console raises a rejected-profile alert and resolves
  it when a later profile is accepted (ConsoleConfig.ready()).
"""

from __future__ import annotations

from typing import Protocol

from cpo.hooks import Hook


class ChargingProfileAnswered(Protocol):
    def __call__(self, *, charge_point_id: int, command_id: int, accepted: bool) -> None: ...


charging_profile_answered: Hook[ChargingProfileAnswered] = Hook("smartcharging.charging_profile_answered")
