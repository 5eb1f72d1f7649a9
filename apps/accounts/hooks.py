"""What accounts tells the apps above it, without importing them (cpo.hooks, docs/architecture.md).

- `driver_erased`: `services.driver_delete` erased a driver's personal data, inside its transaction.
  Every app that keeps something the driver typed or that names the driver (a card link request's
  label, a payment provider's customer) erases it here, so that after `DELETE /api/v1/me` no table holds
  the driver's e-mail address, name or phone. Charging registers in ChargingConfig.ready(), billing
  in BillingConfig.ready().
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from cpo.hooks import Hook

if TYPE_CHECKING:
    from apps.accounts.models import User


class DriverErased(Protocol):
    def __call__(self, *, user: User) -> None: ...


driver_erased: Hook[DriverErased] = Hook("accounts.driver_erased")
