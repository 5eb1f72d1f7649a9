"""Replaying a charger's request that was kept: it failed inside the product (answered InternalError), or
its connection closed before it was handled (`connection.OcppConnection.close`).

The stored request is validated and run through the very handler of its protocol version, with the
charger's context rebuilt from the database; nothing is sent to the charger (it was answered long ago, or
its socket is gone). Replaying is safe to repeat: the domain stores every message a charger may repeat
on a natural key, so a second replay finds what the first one stored.

Where replays come from: an operator (the admin action, any number of times), and, once per kept
request, automatically (`kept_messages_replay`): before the first request of the charger's next
connection (so a charger's requests keep their order), and from the periodic task for requests still
waiting after `CPO_OCPP_REPLAY_AFTER_S` (a charger that does not come back).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from redis.exceptions import LockError

from apps.accounts.choices import AuditOutcome
from apps.accounts.services import audit_record_create
from apps.ocpp_gateway import conf, drain, protocol, versions
from apps.ocpp_gateway.connection import ConnectionContext, OcppConnection
from apps.ocpp_gateway.models import OcppFailedMessage
from apps.ocpp_gateway.redis_clients import sync_redis
from cpo import clock

logger = logging.getLogger(__name__)
REPLAYING_PREFIX = "cpo:ocpp:replaying:"
REPLAY_CLAIMED = "replay in progress"


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


def _claim(failed: OcppFailedMessage) -> bool:
    """Take the one automatic replay of `failed` (False: another replayer took it)."""
    return bool(
        OcppFailedMessage.objects.filter(pk=failed.pk, replayed_at__isnull=True).update(
            replayed_at=clock.now(), replay_error=REPLAY_CLAIMED
        )
    )


def kept_messages_replay(
    *,
    charge_point_id: int | None = None,
    older_than_s: float | None = None,
    wait_s: float = 0.0,
    limit: int = 500,
) -> dict[str, int]:
    """Replay, once each, the kept requests not replayed yet: of one charger (before its new connection's
    first request) or of all (the periodic task, only those older than `older_than_s`). A charger's
    requests run in the order received, one replayer per charger at a time; each request is claimed
    first, so two replayers never run the same one; a charger another replayer holds is waited for at
    most `wait_s` seconds, then left to it. Call it outside a transaction."""
    pending = OcppFailedMessage.objects.filter(replayed_at__isnull=True)
    if charge_point_id is not None:
        pending = pending.filter(charge_point_id=charge_point_id)
    if older_than_s is not None:
        pending = pending.filter(received_at__lt=clock.now() - timedelta(seconds=older_than_s))
    charge_point_ids = (
        [charge_point_id]
        if charge_point_id is not None
        else list(pending.order_by().values_list("charge_point_id", flat=True).distinct()[:limit])
    )
    counts = {"replayed": 0, "failed": 0, "busy": 0}
    redis = sync_redis()
    for cp_id in charge_point_ids:
        lock = redis.lock(REPLAYING_PREFIX + str(cp_id), timeout=300, blocking_timeout=wait_s)
        if not lock.acquire(blocking=wait_s > 0):
            counts["busy"] += 1  # another replayer has this charger; it goes on in order
            continue
        try:
            messages = list(
                pending.filter(charge_point_id=cp_id)
                .select_related("charge_point")
                .order_by("received_at", "pk")[:limit]
            )
            for message in messages:
                if not _claim(message):
                    continue
                message = failed_message_replay(failed=message, source="ocpp_replay")
                counts["failed" if message.replay_error else "replayed"] += 1
            if not OcppFailedMessage.objects.filter(charge_point_id=cp_id, replayed_at__isnull=True).exists():
                drain.kept_clear(cp_id)
        finally:
            try:
                lock.release()
            except LockError:
                logger.warning("replay lock of charge point %s expired before the replay ended", cp_id)
    return counts


def kept_messages_replay_due() -> dict[str, int]:
    """The periodic task's pass: kept requests whose charger did not come back to have them replayed."""
    return kept_messages_replay(older_than_s=conf.replay_after_s())
