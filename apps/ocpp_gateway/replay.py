"""Replaying a charger's request that failed inside the product (answered InternalError and kept).

The stored request is validated and run through the very handler of its protocol version that failed
the first time, with the charger's context rebuilt from the database; nothing is sent to the charger
(it was answered long ago). Replaying is safe to repeat: the domain stores every message a charger may
repeat on a natural key, so a second replay finds what the first one stored.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case

from apps.accounts.choices import AuditOutcome
from apps.accounts.services import audit_record_create
from apps.ocpp_gateway import protocol, versions
from apps.ocpp_gateway.connection import ConnectionContext, OcppConnection
from apps.ocpp_gateway.models import OcppFailedMessage
from cpo import clock

logger = logging.getLogger(__name__)


async def _discard(text: str) -> None:
    """Replays answer nobody: the charger had its InternalError when the request failed."""


async def _run(failed: OcppFailedMessage, charge_point: Any) -> dict[str, Any]:
    try:
        versions.by_subprotocol(failed.protocol)
    except versions.UnknownVersion:
        raise protocol.ProtocolViolation("NotSupported", f"no handlers for {failed.protocol}") from None
    context = ConnectionContext(
        identity=charge_point.identity,
        charge_point_id=charge_point.pk,
        organisation_id=charge_point.organisation_id,
        subprotocol=failed.protocol,
        registration_status=charge_point.registration_status,
    )
    connection = OcppConnection(context=context, send=_discard)
    route = connection.route_map.get(failed.action) or {}
    handler = route.get("_on_action")
    if handler is None:
        raise protocol.ProtocolViolation(connection.codes.not_supported, f"{failed.action} has no handler")
    protocol.validate(
        failed.action, failed.payload, context.version, connection.codes, unique_id=failed.unique_id
    )
    result = await handler(connection.handlers, **camel_to_snake_case(failed.payload))
    return snake_to_camel_case(remove_nones(serialize_as_dict(result)))


def failed_message_replay(
    *, failed: OcppFailedMessage, actor: Any = None, source: str = "admin"
) -> OcppFailedMessage:
    """Run the kept request again. Records `replayed_at`, `replay_error` (empty when it succeeded) and an
    audit record with the answer the handler produced. Call it outside a transaction (the handlers run
    their services in their own)."""
    charge_point = failed.charge_point
    answer: dict[str, Any] | None = None
    try:
        answer = async_to_sync(_run)(failed, charge_point)
        error = ""
    except protocol.ProtocolViolation as exc:
        error = f"{exc.code}: {exc.description}"
    except Exception as exc:
        logger.exception("replay of failed message %s (%s) failed again", failed.pk, failed.action)
        error = f"{type(exc).__name__}: {exc}"
    failed.replayed_at, failed.replay_error = clock.now(), error[:4000]
    failed.save(update_fields=["replayed_at", "replay_error"])
    audit_record_create(
        actor=actor,
        action=f"ocpp.replay.{failed.action}",
        target=charge_point,
        source=source,
        outcome=AuditOutcome.FAILED if error else AuditOutcome.SUCCEEDED,
        detail={
            "failed_message_id": failed.pk,
            "unique_id": failed.unique_id,
            "answer": answer,
            "error": error,
        },
    )
    return failed
