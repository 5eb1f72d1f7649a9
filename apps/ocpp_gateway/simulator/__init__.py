"""A simulated OCPP 1.6J charger fleet, for `manage.py simulate_chargers`, end-to-end tests and load runs.

`Charger` is one charger (the `ocpp` library's ChargePoint over a `websockets` client), `Fleet` runs many
in one event loop. The package needs no Django settings: it talks to the product only over OCPP.
"""

from apps.ocpp_gateway.simulator.charger import Charger, ChargerOptions, NotConnected
from apps.ocpp_gateway.simulator.fleet import Fleet, fleet_id_tags, fleet_identities

__all__ = ["Charger", "ChargerOptions", "Fleet", "NotConnected", "fleet_id_tags", "fleet_identities"]
