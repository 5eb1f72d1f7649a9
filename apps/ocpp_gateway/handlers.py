"""What every version's handler class shares: the connection context and time formatting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from apps.ocpp_gateway import conf, protocol
from cpo import clock

if TYPE_CHECKING:
    from apps.ocpp_gateway.connection import ConnectionContext, OcppConnection


def iso(value: datetime) -> str:
    """UTC with millisecond precision and a Z, as chargers parse most reliably."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class HandlerBase:
    """Handlers translate a payload into a domain call (run off the event loop) and the result back.
    No ORM and no business rule here."""

    def __init__(self, connection: OcppConnection) -> None:
        self.connection = connection

    @property
    def ctx(self) -> ConnectionContext:
        return self.connection.ctx

    def heartbeat_interval(self) -> int:
        return conf.heartbeat_interval_s()

    def parse_time(self, value: str, field: str) -> datetime:
        try:
            return clock.parse_iso8601(value)
        except (ValueError, TypeError) as exc:
            raise protocol.ProtocolViolation(
                self.connection.codes.property, f"{field}: not an ISO 8601 date-time with an offset"
            ) from exc

    def violation(self, description: str, **details: Any) -> protocol.ProtocolViolation:
        return protocol.ProtocolViolation(self.connection.codes.property, description, details=details)
