"""What every version's handler class shares: the connection context and time formatting."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django import db

from apps.charging.hooks import roaming_authorizer
from apps.ocpp_gateway import conf, protocol
from cpo import clock

logger = logging.getLogger(__name__)

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


def _roaming_prepare(uid: str, charge_point_id: int) -> None:
    try:
        roaming_authorizer.get().prepare(uid=uid, charge_point_id=charge_point_id)
    except Exception:  # the Authorize is still answered (from what is stored)
        logger.exception("roaming: real-time authorisation of a token failed")
    finally:
        db.connection.close()  # a thread of its own: its connection is not the shared one


async def roaming_prepare(*, uid: str, charge_point_id: int) -> None:
    """Let the roaming app ask an eMSP about its token in real time before the Authorize is answered, in a
    thread of its own (not the database thread every charger message of this process shares: a slow eMSP
    delays only this driver). charging.hooks.roaming_authorizer; nothing without the roaming app."""
    await sync_to_async(_roaming_prepare, thread_sensitive=False)(uid, charge_point_id)
