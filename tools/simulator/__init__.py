"""Simulated OCPP chargers (1.6J, 2.0.1) for load runs, end-to-end tests and trying the product by hand:
`python -m tools.simulator --help`.

`Charger` is one OCPP 1.6 charger and `ChargingStation` its OCPP 2.0.1 counterpart (the `ocpp` library's
ChargePoint over a `websockets` client), both built on the version-independent `base.SimulatedCharger`;
`Fleet` runs many in one event loop. The package needs no Django settings and imports nothing from the
product: it talks to it over OCPP (only `--register` uses the product's management commands).
"""

from tools.simulator.base import ChargerOptions, NotConnected, SimulatedCharger
from tools.simulator.fleet import PROTOCOLS, Fleet, fleet_id_tags, fleet_identities
from tools.simulator.v16 import Charger
from tools.simulator.v201 import ChargingStation

__all__ = [
    "PROTOCOLS",
    "Charger",
    "ChargerOptions",
    "ChargingStation",
    "Fleet",
    "NotConnected",
    "SimulatedCharger",
    "fleet_id_tags",
    "fleet_identities",
]
