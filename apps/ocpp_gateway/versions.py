"""The OCPP versions the gateway speaks: one registry, and the one way to tell a charger's version.

Each version is an `OcppVersion`: the WebSocket subprotocol (also what `ChargePoint.ocpp_protocol` and
`ChargingSession.protocol` store), the version key of the `ocpp` library's schemas, the handler class of
its package (`v16/`, `v201/`, `v21/`: identical module names), the actions it knows, its error code
spellings, the payload members a command fills with its own id, and its command catalogue. Everything
that used to work a version out for itself (the consumer, the connection, the command service, the
forms, local lists) asks here.

The catalogue (`vNN/commands.py`) is read on first use: command forms sit above the command service,
which itself asks this registry for a charger's version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from apps.ocpp_gateway.handlers import HandlerBase
from apps.ocpp_gateway.protocol import CALLRESULTERROR, SEND, ErrorCodes
from apps.ocpp_gateway.v16 import handlers as v16_handlers
from apps.ocpp_gateway.v21 import handlers as v21_handlers
from apps.ocpp_gateway.v201 import handlers as v201_handlers
from apps.stations.choices import OcppProtocol

if TYPE_CHECKING:
    from apps.ocpp_gateway.forms import CommandSpec
    from apps.stations.models import ChargePoint

# OCPP 2.x requests that the charger's later messages refer back to by an id of ours (remoteStartId,
# requestId): `command_send` fills them with the command's own id when the caller leaves them out.
V2_COMMAND_ID_FIELDS: Mapping[str, str] = {
    "RequestStartTransaction": "remoteStartId",
    "GetBaseReport": "requestId",
    "GetChargingProfiles": "requestId",
    "GetLog": "requestId",
    "GetReport": "requestId",
    "UpdateFirmware": "requestId",
}


class UnknownVersion(LookupError):
    """A subprotocol or version key the gateway does not speak."""


@dataclass(frozen=True)
class OcppVersion:
    """One OCPP version the gateway speaks."""

    subprotocol: str  # "ocpp2.1": negotiated on the WebSocket, stored on charge points and sessions
    key: str  # "2.1": the `ocpp` library's schema version, and what forms and catalogues are keyed by
    label: str
    # 1: OCPP 1.6 (connectors, idTags, configuration keys, unanswerable unparsable frames); 2: OCPP 2.x
    # (EVSEs, idToken objects, the device model, RpcFrameworkError).
    generation: int
    handlers: type[HandlerBase]  # instantiated per connection
    known_actions: frozenset[str]
    package: str  # the version's package: handlers.py, commands.py, payloads.py
    command_id_fields: Mapping[str, str] = field(default_factory=dict)
    # The version whose behaviour this one reuses where the messages are the same (None: its own).
    based_on: str | None = None
    # OCPP-J message types beyond CALL, CALLRESULT and CALLERROR (2.1: CALLRESULTERROR and SEND).
    extra_message_types: frozenset[int] = frozenset()

    @property
    def codes(self) -> ErrorCodes:
        return _codes(self.key)

    @property
    def catalogue(self) -> Mapping[str, CommandSpec]:
        """The commands a charger of this version may be sent, by action name."""
        return _catalogue(self.package)

    @property
    def payloads(self) -> ModuleType:
        """The builders of the messages the domain's intents send (start charging, stop a transaction)."""
        return _payloads(self.package)

    def command_id_field(self, action: str) -> str:
        """The payload member `command_send` fills with the command's id when it is missing ("" for none)."""
        return self.command_id_fields.get(action, "")

    def __str__(self) -> str:
        return self.label


@cache
def _codes(key: str) -> ErrorCodes:
    return ErrorCodes(key)


@cache
def _payloads(package: str) -> ModuleType:
    return import_module(f"{package}.payloads")


@cache
def _catalogue(package: str) -> Mapping[str, Any]:
    return import_module(f"{package}.commands").CATALOGUE


V16 = OcppVersion(
    subprotocol=OcppProtocol.OCPP16.value,
    key="1.6",
    label="OCPP 1.6J",
    generation=1,
    handlers=v16_handlers.ChargePointHandlers,
    known_actions=v16_handlers.KNOWN_ACTIONS,
    package="apps.ocpp_gateway.v16",
)
V201 = OcppVersion(
    subprotocol=OcppProtocol.OCPP201.value,
    key="2.0.1",
    label="OCPP 2.0.1",
    generation=2,
    handlers=v201_handlers.ChargingStationHandlers,
    known_actions=v201_handlers.KNOWN_ACTIONS,
    package="apps.ocpp_gateway.v201",
    command_id_fields=V2_COMMAND_ID_FIELDS,
)
V21 = OcppVersion(
    subprotocol=OcppProtocol.OCPP21.value,
    key="2.1",
    label="OCPP 2.1",
    generation=2,
    handlers=v21_handlers.ChargingStationHandlers,
    known_actions=v21_handlers.KNOWN_ACTIONS,
    package="apps.ocpp_gateway.v21",
    command_id_fields=V2_COMMAND_ID_FIELDS,
    based_on="2.0.1",
    extra_message_types=frozenset({CALLRESULTERROR, SEND}),
)

# In the order the handshake names them.
VERSIONS: tuple[OcppVersion, ...] = (V16, V201, V21)
_BY_SUBPROTOCOL = {v.subprotocol: v for v in VERSIONS}
_BY_KEY = {v.key: v for v in VERSIONS}
# A charge point that never said (registered by hand, never connected) is taken to speak 1.6.
DEFAULT = V16


def subprotocols() -> list[str]:
    return [v.subprotocol for v in VERSIONS]


def by_subprotocol(subprotocol: str) -> OcppVersion:
    """The version negotiated as (or stored as) `subprotocol`. UnknownVersion for any other."""
    try:
        return _BY_SUBPROTOCOL[subprotocol]
    except KeyError:
        raise UnknownVersion(subprotocol) from None


def by_key(key: str) -> OcppVersion:
    """The version with schema key `key` ("1.6", "2.0.1", "2.1"). UnknownVersion for any other."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise UnknownVersion(key) from None


def for_charge_point(charge_point: ChargePoint) -> OcppVersion:
    """The version the charger speaks: the subprotocol of its last connection (1.6 until it connected).
    UnknownVersion for a stored protocol the gateway does not speak."""
    return by_subprotocol(charge_point.ocpp_protocol) if charge_point.ocpp_protocol else DEFAULT


def negotiate(offered: Iterable[str]) -> OcppVersion | None:
    """The first subprotocol in the charger's list that we speak (the charger's preference wins)."""
    for candidate in offered:
        version = _BY_SUBPROTOCOL.get(candidate.strip().lower())
        if version is not None:
            return version
    return None
