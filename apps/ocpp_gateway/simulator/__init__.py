"""Simulated OCPP chargers (1.6J, 2.0.1) for `manage.py simulate_chargers`, end-to-end tests and load runs.

`Charger` is one OCPP 1.6 charger (the `ocpp` library's ChargePoint over a `websockets` client),
`ChargingStation` its OCPP 2.0.1 counterpart, `Fleet` runs many in one event loop. The package needs no
Django settings: it talks to the product only over OCPP.
"""

from apps.ocpp_gateway.simulator.charger import Charger, ChargerOptions, NotConnected
from apps.ocpp_gateway.simulator.fleet import PROTOCOLS, Fleet, fleet_id_tags, fleet_identities
from apps.ocpp_gateway.simulator.station import ChargingStation

__all__ = [
    "PROTOCOLS",
    "Charger",
    "ChargerOptions",
    "ChargingStation",
    "Fleet",
    "NotConnected",
    "fleet_id_tags",
    "fleet_identities",
]
