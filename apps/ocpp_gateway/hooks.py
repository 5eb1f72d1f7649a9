"""What the gateway tells the apps above it without importing them (docs/architecture.md, Layering).
Wired in the higher apps' AppConfig.ready():

- `connections_changed`: the periodic presence flush (`services.presence_flush`) found chargers that came
  back online and chargers whose presence lapsed (their connection ended or went silent). The console
  keeps connection intervals and resolves offline alerts (ConsoleConfig.ready()). Emitted once per flush
  with every charger that changed, never per frame or per connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from cpo.hooks import Hook


class ConnectionsChanged(Protocol):
    def __call__(self, *, came_back: list[int], went_offline: list[int], at: datetime) -> None: ...


connections_changed: Hook[ConnectionsChanged] = Hook("ocpp_gateway.connections_changed")
