"""What stations tells the apps above it without importing them (docs/architecture.md, Layering).
Receivers run inside the station service's transaction; wired in the higher apps' AppConfig.ready():

- `connector_status_reported`, emitted by `services.connector_status_record` for EVSE >= 1 (a stale
  report too): tariffs records parking and departure (TariffsConfig.ready()).
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
