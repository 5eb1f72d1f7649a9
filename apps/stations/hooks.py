"""What stations tells the apps above it without importing them (docs/architecture.md, Layering).
Receivers run inside the station service's transaction; wired in the higher apps' AppConfig.ready():

- `connector_status_reported`, emitted by `services.connector_status_record` for EVSE >= 1 (a stale
  report too): tariffs records parking and departure (TariffsConfig.ready()).
- `status_changed`, `charge_point_booted`, `availability_changed`: the console (ConsoleConfig.ready()).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from cpo.hooks import Hook


class ConnectorStatusReported(Protocol):
    def __call__(self, *, charge_point_id: int, evse_id: int, status: str, at: datetime) -> None: ...


# A charger reported a connector's status (1.6 StatusNotification / 2.0.1 connectorStatus), at the
# charger's (clamped) time; a report older than the stored one is still a fact about that time.
connector_status_reported: Hook[ConnectorStatusReported] = Hook("stations.connector_status_reported")


class StatusChanged(Protocol):
    def __call__(
        self,
        *,
        charge_point_id: int,
        organisation_id: int,
        evse_id: int,
        connector_id: int,
        status: str,
        previous: str,
        error_code: str,
        at: datetime,
    ) -> None: ...


class ChargePointBooted(Protocol):
    def __call__(self, *, charge_point_id: int, organisation_id: int, at: datetime) -> None: ...


class AvailabilityChanged(Protocol):
    def __call__(
        self, *, charge_point_id: int, organisation_id: int, evse_id: int, availability: str
    ) -> None: ...


# The stored current status of a charge point (evse_id 0, connector_id 0) or of a connector changed to a
# newer report (`connector_status_record`; never for a stale one). `previous` is the status it replaced
# ("" for a connector seen for the first time). The console keeps status intervals, raises and resolves
# faulted-connector alerts and tells live views after commit (ConsoleConfig.ready()).
status_changed: Hook[StatusChanged] = Hook("stations.status_changed")

# A BootNotification was recorded (`chargepoint_record_boot`). The console watches for boot loops.
charge_point_booted: Hook[ChargePointBooted] = Hook("stations.charge_point_booted")

# The stored availability of a charge point (evse_id 0) or an EVSE changed (`availability_record`, after a
# ChangeAvailability the charger accepted). The console tells live views.
availability_changed: Hook[AvailabilityChanged] = Hook("stations.availability_changed")
