"""Commands to chargers from any process, and the gateway's housekeeping.

`command_send` records a command and hands it, on commit, to the connection that holds the charger's
socket (named by its presence record, never a channel-layer group); `command_wait` blocks on a Redis
list the consumer pushes the outcome to. Every command has a deadline; a command for a charger with no
connection fails at once with `charger_offline`.

OCPP 2.x requests that the charger's later messages refer back to by an id of ours (remoteStartId,
requestId) get the command's own id when the caller leaves that id out (the version's
`command_id_fields`), so the TransactionEvent, NotifyReport or status notification that follows names
the command.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.utils.translation import gettext as _

from apps.accounts.services import audit_record_build, audit_record_create
from apps.ocpp_gateway import conf, delivery, presence, protocol, versions
from apps.ocpp_gateway.choices import FINAL_COMMAND_STATUSES, OPEN_COMMAND_STATUSES, CommandStatus
from apps.ocpp_gateway.masking import mask_payload
from apps.ocpp_gateway.models import OcppCommand, OcppFailedMessage, OcppMessage
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.stations import keys
from apps.stations.choices import RegistrationStatus, SecurityProfile
from apps.stations.models import ChargePoint
from cpo import clock
from cpo.exceptions import NotFound, ValidationFailed
from cpo.persistence import IdBlock, objects_insert_together

logger = logging.getLogger(__name__)
OUTCOME_KEY = "cpo:ocpp:command:{id}:outcome"
OUTCOME_TTL_S = 3600

# SetVariables results after which the charger uses a new BasicAuthPassword. RebootRequired counts: the
# charger stored it and presents it from its next connection on (OCPP 2.0.1 TC_A_09 accepts either).
KEY_ACCEPTED_ATTRIBUTE_STATUSES = frozenset({"Accepted", "RebootRequired"})


def command_id_field(*, action: str, version: str) -> str:
    """The payload member `command_send` fills with the command's id when it is missing ("" for none)."""
    return versions.by_key(version).command_id_field(action)


def command_send(
    *,
    charge_point: ChargePoint,
    action: str,
    payload: dict[str, Any],
    timeout_s: float | None = None,
    actor: Any = None,
    source: str = "service",
    epoch: int | None = None,
) -> OcppCommand:
    """Record a command for `charge_point` and dispatch it on commit. Returns at once; the command is
    already final (`charger_offline`) when no connection holds the charger. ValidationFailed when the
    payload breaks the action's schema for the charger's protocol. A missing `command_id_field` member
    (e.g. RequestStartTransaction's remoteStartId) is filled with the new command's id. With `epoch`, the
    command goes only to the connection with that epoch (ValidationFailed `connection_changed` otherwise;
    the consumer also drops a command addressed to an epoch it no longer holds)."""
    try:
        ocpp = versions.for_charge_point(charge_point)
    except versions.UnknownVersion:
        raise ValidationFailed(
            _("Commands to {protocol} chargers are not supported yet.").format(
                protocol=charge_point.ocpp_protocol
            )
        ) from None
    version = ocpp.key
    if not protocol.has_schema(action, version):
        raise ValidationFailed(
            _("{action} is not an OCPP {version} command.").format(action=action, version=version),
            code="unknown_action",
            fields={"action": [action]},
        )
    own_id_field = ocpp.command_id_field(action)
    fill_own_id = bool(own_id_field) and own_id_field not in payload
    try:
        # Checked with a stand-in for the id that is only taken once everything else is valid.
        checked = {**payload, own_id_field: 0} if fill_own_id else payload
        protocol.validate(action, checked, version, ocpp.codes)
    except protocol.ProtocolViolation as exc:
        raise ValidationFailed(
            _("The {action} payload is invalid: {problem}").format(action=action, problem=exc.description),
            code="invalid_payload",
            fields={"payload": [exc.description]},
        ) from exc
    timeout_s = float(timeout_s if timeout_s is not None else conf.command_timeout_s())
    if not 0 < timeout_s <= 3600:
        raise ValidationFailed(
            _("A command timeout must be between 0 and 3600 seconds."), fields={"timeout": []}
        )
    new_key_hash = _new_key_hash(action, payload)
    command_pk = _command_ids.take()
    if fill_own_id:
        payload = {**payload, own_id_field: command_pk}
    now = clock.now()
    holder = presence.lookup(charge_point.identity)
    if epoch is not None and (holder.epoch if holder is not None else 0) != epoch:
        _check_connection(charge_point, epoch)  # raises: only the connection with this epoch may get it
    command = OcppCommand(
        pk=command_pk,
        charge_point=charge_point,
        action=action,
        payload=mask_payload(payload),
        unique_id=str(uuid.uuid4()),
        created_at=now,
        deadline=now + timedelta(seconds=timeout_s),
        requested_by=actor if getattr(actor, "pk", None) else None,
        source=source,
        new_key_hash=new_key_hash,
        status=CommandStatus.PENDING if holder is None else CommandStatus.SENT,
        sent_at=None if holder is None else now,
    )
    audit = audit_record_build(
        actor=actor,
        action=f"ocpp.{action}",
        target=charge_point,
        source=source,
        detail={"command_id": command_pk},
    )
    follow_up = outcome_needs_follow_up(action=action, has_new_key=bool(new_key_hash))
    deadline_ts = command.deadline.timestamp()
    if holder is None:
        with transaction.atomic():
            objects_insert_together(command, audit)
            _finish(
                command, CommandStatus.CHARGER_OFFLINE, error_description="no connection holds this charger"
            )
            transaction.on_commit(lambda: _sent_here.add(command.pk, deadline_ts))
        return command
    message = {
        "type": "ocpp.command",
        "command_id": command.pk,
        "unique_id": command.unique_id,
        "action": action,
        "payload": payload,
        "deadline_ts": deadline_ts,
        "epoch": holder.epoch,
        "follow_up": follow_up,
    }

    def hand_over() -> None:
        _sent_here.add(command.pk, deadline_ts)
        _dispatch(holder.channel, message, command.pk)

    # The command and its audit record in one statement: one round trip, atomic by itself (no BEGIN and
    # COMMIT of our own), part of the caller's transaction when there is one. The command is handed to
    # the connection once committed: at once here, or when the caller's transaction commits (status
    # "sent" = dispatched to the connection holding the charger; a failed hand-over is recorded).
    objects_insert_together(command, audit)
    transaction.on_commit(hand_over)
    return command


class _SentHere:
    """What `command_wait` needs to know about commands this process sent (their deadline), so that a
    waiter in the sending process (an admin action, the API, ocpp_call) goes straight to Redis instead of
    reading the row first: every final outcome is published there (kept OUTCOME_TTL_S). Known only once the command is committed; bounded, oldest forgotten."""

    MAX = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[int, float] = OrderedDict()

    def add(self, command_id: int, deadline_ts: float) -> None:
        with self._lock:
            self._items[command_id] = deadline_ts
            while len(self._items) > self.MAX:
                self._items.popitem(last=False)

    def take(self, command_id: int) -> float | None:
        with self._lock:
            return self._items.pop(command_id, None)


_sent_here = _SentHere()


# Command ids are taken ahead (a block per process), so that the command row and its audit record go to
# the database in one statement. Commands are ordered by created_at, never by id.
_command_ids = IdBlock(OcppCommand, size=50)


def _is_password_item(item: dict[str, Any]) -> bool:
    """Whether a SetVariables item or result names SecurityCtrlr.BasicAuthPassword (case-insensitive)."""
    component, variable = item.get("component") or {}, item.get("variable") or {}
    return (
        str(component.get("name", "")).casefold() == "securityctrlr"
        and str(variable.get("name", "")).casefold() == "basicauthpassword"
        and item.get("attributeType", "Actual") == "Actual"
    )


def _new_key_hash(action: str, payload: dict[str, Any]) -> str:
    """A ChangeConfiguration of AuthorizationKey (1.6) or a SetVariables of SecurityCtrlr.BasicAuthPassword
    (2.0.1) carries the charger's next Basic-auth password: it must be a valid key, and we keep only its
    hash until the charger accepts it."""
    if action == "ChangeConfiguration" and payload.get("key") == "AuthorizationKey":
        key, field = payload.get("value", ""), "value"
    elif action == "SetVariables":
        items = [item for item in payload.get("setVariableData", []) if _is_password_item(item)]
        if not items:
            return ""
        if len(items) > 1:
            raise ValidationFailed(
                _("Set BasicAuthPassword once per command."),
                code="invalid_key",
                fields={"setVariableData": [_("BasicAuthPassword appears twice.")]},
            )
        key, field = items[0].get("attributeValue", ""), "setVariableData"
    else:
        return ""
    try:
        return keys.hash_key(str(key))
    except DjangoValidationError as exc:
        raise ValidationFailed(exc.messages[0], code="invalid_key", fields={field: exc.messages}) from exc


def _new_key_accepted(command: OcppCommand, response: dict[str, Any]) -> bool:
    """Whether the charger's answer says it stored the new key the command carried."""
    if command.action == "SetVariables":
        return any(
            _is_password_item(result) and result.get("attributeStatus") in KEY_ACCEPTED_ATTRIBUTE_STATUSES
            for result in response.get("setVariableResult") or []
        )
    return response.get("status") == "Accepted"


def _dispatch(channel: str, message: dict[str, Any], command_id: int) -> None:
    try:
        delivery.send_to_channel(channel, message)
    except Exception as exc:
        logger.exception("command %s: could not reach channel %s", command_id, channel)
        command_record_outcome(
            command_id=command_id,
            status=CommandStatus.CHARGER_OFFLINE,
            error_description=f"channel layer: {exc}",
        )


def _push_outcome(command: OcppCommand) -> None:
    key = OUTCOME_KEY.format(id=command.pk)
    r = sync_redis()
    pipe = r.pipeline()
    pipe.rpush(key, json.dumps(command.outcome()))
    pipe.expire(key, OUTCOME_TTL_S)
    pipe.execute()


def _finish(
    command: OcppCommand,
    status: str,
    *,
    response: dict | None = None,
    error_code: str = "",
    error_description: str = "",
    push: bool = True,
) -> OcppCommand:
    command.status, command.response = status, response
    command.error_code, command.error_description = error_code[:64], error_description[:500]
    command.completed_at = clock.now()
    command.save(update_fields=["status", "response", "error_code", "error_description", "completed_at"])
    if status == CommandStatus.ANSWERED:
        if command.new_key_hash and _new_key_accepted(command, response or {}):
            _apply_new_key(command)
        from apps.ocpp_gateway.outcomes import command_answered  # late: its follow-ups send commands too

        command_answered(command=command)
    from apps.ocpp_gateway.outcomes import command_finished

    command_finished(command=command)
    if push:
        # Waiters return what they read from Redis without reading the row: publish once it is committed.
        transaction.on_commit(lambda: _push_outcome(command))
    return command


def _apply_new_key(command: OcppCommand) -> None:
    """The charger stored its new key (1.6 AuthorizationKey, 2.0.1 BasicAuthPassword): from now on it must
    present it (security profile >= 1)."""
    cp = ChargePoint.objects.select_for_update(no_key=True).get(pk=command.charge_point_id)
    cp.auth_key_hash = command.new_key_hash
    cp.security_profile = max(cp.security_profile, SecurityProfile.BASIC)
    cp.save(update_fields=["auth_key_hash", "security_profile", "updated_at"])
    audit_record_create(
        actor=None,
        action="chargepoint.key_changed",
        target=cp,
        source="ocpp",
        detail={"command_id": command.pk},
    )


@transaction.atomic
def chargepoint_accept(
    *, charge_point: ChargePoint, actor: Any = None, timeout_s: float | None = None, epoch: int | None = None
) -> tuple[ChargePoint, str, OcppCommand | None]:
    """Accept a Pending charge point (e.g. one that registered itself). A random key is generated for it;
    when it is connected, the key is sent (1.6 AuthorizationKey, 2.0.1 SecurityCtrlr.BasicAuthPassword)
    and takes effect once it accepts (until then it may keep connecting without credentials). Returns
    (charge point, key in clear text — shown once, command or None when offline). Its next
    BootNotification is answered Accepted."""
    cp = ChargePoint.objects.select_for_update(no_key=True).get(pk=charge_point.pk)
    if cp.registration_status == RegistrationStatus.ACCEPTED and cp.security_profile != SecurityProfile.NONE:
        raise ValidationFailed(
            _("{identity} is already accepted.").format(identity=cp.identity), code="already_accepted"
        )
    if epoch is not None:
        _check_connection(cp, epoch)
    cp.registration_status = RegistrationStatus.ACCEPTED
    cp.save(update_fields=["registration_status", "updated_at"])
    audit_record_create(actor=actor, action="chargepoint.accept", target=cp, source="admin")
    key = keys.generate_key()
    command = None
    if presence.lookup(cp.identity) is not None:
        action, payload = _key_change_command(cp, key)
        command = command_send(
            charge_point=cp, action=action, payload=payload, timeout_s=timeout_s, actor=actor, epoch=epoch
        )
    return cp, key, command


def _check_connection(cp: ChargePoint, epoch: int) -> None:
    """The accept page showed the connection with this epoch (0: no connection): the key goes to it or to
    nobody."""
    holder = presence.lookup(cp.identity)
    if (holder.epoch if holder is not None else 0) != epoch:
        raise ValidationFailed(
            _(
                "The connection of {identity} changed since the page was shown (it reconnected or went "
                "offline): nothing was accepted or sent. Check the connection shown now and accept "
                "again."
            ).format(identity=cp.identity),
            code="connection_changed",
        )


def _key_change_command(charge_point: ChargePoint, key: str) -> tuple[str, dict[str, Any]]:
    """The action and payload that give the charger its next Basic-auth password, in its OCPP version."""
    if versions.for_charge_point(charge_point).generation >= 2:
        item = {
            "component": {"name": "SecurityCtrlr"},
            "variable": {"name": "BasicAuthPassword"},
            "attributeValue": key,
        }
        return "SetVariables", {"setVariableData": [item]}
    return "ChangeConfiguration", {"key": "AuthorizationKey", "value": key}


@transaction.atomic
def command_record_outcome(
    *,
    command_id: int,
    status: str,
    response: dict | None = None,
    error_code: str = "",
    error_description: str = "",
    push: bool = True,
) -> OcppCommand | None:
    """Record a command's final outcome once; later outcomes for the same command are ignored. The outcome
    is published to waiters once committed, unless `push=False` (the consumer publishes it itself, after
    this write)."""
    command = OcppCommand.objects.select_for_update(no_key=True).filter(pk=command_id).first()
    if command is None or command.status in FINAL_COMMAND_STATUSES:
        return command
    return _finish(
        command,
        status,
        response=response,
        error_code=error_code,
        error_description=error_description,
        push=push,
    )


def outcome_needs_follow_up(*, action: str, has_new_key: bool) -> bool:
    """Whether recording an answer to this command does more than write the row: apply a new key the
    charger accepted, or a follow-up of the action (outcomes.FOLLOW_UPS, and FINISHED_FOLLOW_UPS which
    follow every outcome, e.g. a driver's start)."""
    from apps.ocpp_gateway.outcomes import FINISHED_FOLLOW_UPS, FOLLOW_UPS

    return has_new_key or action in FOLLOW_UPS or action in FINISHED_FOLLOW_UPS


def command_outcome_store(
    *,
    command_id: int,
    status: str,
    follow_up: bool | None,
    response: dict | None = None,
    error_code: str = "",
    error_description: str = "",
) -> None:
    """Record an outcome without publishing it (the consumer publishes it to waiters right after this
    write, so a waiter never needs to read or write the row); the first recorded outcome wins. `follow_up`
    says whether an answer to this command needs more than the row written (`outcome_needs_follow_up`;
    None when not known). When it does not, the row is made final in one statement (`_outcome_store_fast`:
    one round trip, the row locked for that statement only) rather than a SELECT ... FOR UPDATE
    transaction; a row already final costs that one round trip too."""
    if follow_up is True or (follow_up is None and status == CommandStatus.ANSWERED):
        command_record_outcome(
            command_id=command_id,
            status=status,
            response=response,
            error_code=error_code,
            error_description=error_description,
            push=False,
        )
        return
    if _outcome_store_fast(
        command_id=command_id,
        status=status,
        response=response,
        error_code=error_code,
        error_description=error_description,
    ):
        return
    # Open, but the fast path may not finish it (a key change or a follow-up the hint did not know of),
    # or it became final while this statement waited for the row: the full path sorts out which.
    command_record_outcome(
        command_id=command_id,
        status=status,
        response=response,
        error_code=error_code,
        error_description=error_description,
        push=False,
    )


def _outcome_store_fast(
    *, command_id: int, status: str, response: dict | None, error_code: str, error_description: str
) -> bool:
    """Make an open command final with this outcome in one statement, unless it needs the full path (a
    new key, or an action with follow-ups: whatever the caller's hint said, those are never skipped).
    True when the row is final afterwards (made so now, or already final before this statement began)."""
    from apps.ocpp_gateway.outcomes import FINISHED_FOLLOW_UPS, FOLLOW_UPS

    table = connection.ops.quote_name(OcppCommand._meta.db_table)
    open_statuses = sorted(OPEN_COMMAND_STATUSES)
    never_fast = sorted(FINISHED_FOLLOW_UPS)
    answer_not_fast = sorted(set(FOLLOW_UPS) | set(FINISHED_FOLLOW_UPS))
    sql = (
        f"WITH before AS (SELECT status FROM {table} WHERE id = %(id)s), "
        f"done AS (UPDATE {table} SET status = %(status)s, response = %(response)s::jsonb, "
        "error_code = %(error_code)s, error_description = %(error_description)s, completed_at = %(now)s "
        "WHERE id = %(id)s AND status = ANY(%(open)s) AND NOT (action = ANY(%(never_fast)s)) "
        "AND (%(status)s <> %(answered)s OR (new_key_hash = '' AND NOT (action = ANY(%(answer_not_fast)s)))) "
        "RETURNING 1) "
        "SELECT (SELECT count(*) FROM done), (SELECT status FROM before)"
    )
    params = {
        "id": command_id,
        "status": status,
        "response": None if response is None else json.dumps(response),
        "error_code": error_code[:64],
        "error_description": error_description[:500],
        "now": clock.now(),
        "open": open_statuses,
        "never_fast": never_fast,
        "answered": CommandStatus.ANSWERED.value,
        "answer_not_fast": answer_not_fast,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        updated, status_before = cursor.fetchone()
    # A row missing altogether has nothing to record either.
    return bool(updated) or status_before is None or status_before not in open_statuses


def outcome_message(
    *,
    command_id: int,
    action: str,
    status: str,
    response: dict | None = None,
    error_code: str = "",
    error_description: str = "",
) -> str:
    """The JSON a waiter reads (same shape as OcppCommand.outcome())."""
    return json.dumps(
        {
            "id": command_id,
            "action": action,
            "status": status,
            "response": response,
            "error_code": error_code[:64],
            "error_description": error_description[:500],
        }
    )


def command_wait(*, command_id: int, timeout_s: float | None = None) -> dict[str, Any]:
    """Block until the command is final or `timeout_s` passes (default: until its deadline plus a second),
    and return its outcome. A command still open past its deadline is recorded as timed out."""
    known = _sent_here.take(command_id)
    command = None
    if known is None:
        command = OcppCommand.objects.filter(pk=command_id).first()
        if command is None:
            raise NotFound(_("No command with id {id}.").format(id=command_id), code="command_not_found")
        if command.status in FINAL_COMMAND_STATUSES:
            return command.outcome()
        deadline_ts = command.deadline.timestamp()
    else:
        deadline_ts = known
    if timeout_s is None:
        timeout_s = max(0.0, deadline_ts - clock.now().timestamp()) + 1.0
    if timeout_s > 0:
        key = OUTCOME_KEY.format(id=command_id)
        # BLMOVE from the list to itself: wait for the outcome and leave it for other waiters, in one
        # round trip and atomically (BLPOP then RPUSH took two, with the list empty in between).
        # Every outcome is published only once its row is final (the consumer writes, then publishes;
        # command_record_outcome publishes on commit), so the row already says what the waiter reads here.
        item = sync_redis().blmove(key, key, max(1, round(timeout_s)), "LEFT", "RIGHT")
        if item is not None:
            return json.loads(item)
    if command is None:
        command = OcppCommand.objects.get(pk=command_id)
    else:
        command.refresh_from_db()
    if command.status not in FINAL_COMMAND_STATUSES and command.deadline <= clock.now():
        command = (
            command_record_outcome(
                command_id=command_id,
                status=CommandStatus.TIMEOUT,
                error_description="no answer before the deadline",
            )
            or command
        )
    return command.outcome()


def commands_sweep(*, grace_s: float = 5.0) -> int:
    """Time out commands still open well past their deadline (their connection died without saying)."""
    cutoff = clock.now() - timedelta(seconds=grace_s)
    stuck = list(
        OcppCommand.objects.filter(
            status__in=[CommandStatus.PENDING, CommandStatus.SENT], deadline__lt=cutoff
        ).values_list("pk", flat=True)[:1000]
    )
    for command_id in stuck:
        command_record_outcome(
            command_id=command_id,
            status=CommandStatus.TIMEOUT,
            error_description="no outcome reported before the deadline",
        )
    return len(stuck)


def failed_message_store(
    *, charge_point_id: int, protocol: str, action: str, unique_id: str, payload: Any, error: str
) -> OcppFailedMessage:
    return OcppFailedMessage.objects.create(
        charge_point_id=charge_point_id,
        protocol=protocol,
        action=action,
        unique_id=unique_id,
        payload=payload,
        error=error[:4000],
        received_at=clock.now(),
    )


def presence_flush() -> dict[str, int]:
    """Copy live presence from Redis to PostgreSQL in bulk: last_seen_at and is_online. Chargers whose
    presence lapsed are marked offline. Runs periodically (Celery beat), never per frame."""
    from datetime import UTC, datetime

    live = presence.scan_all()
    identities = list(live)
    seen = [datetime.fromtimestamp(live[i].last_frame_at, tz=UTC) for i in identities]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE stations_chargepoint AS cp SET last_seen_at = v.seen, is_online = true "
            "FROM unnest(%s::text[], %s::timestamptz[]) AS v(identity, seen) WHERE cp.identity = v.identity",
            [identities, seen],
        )
        online = cursor.rowcount
    went_offline = (
        ChargePoint.objects.filter(is_online=True).exclude(identity__in=identities).update(is_online=False)
    )
    return {"online": online, "went_offline": went_offline}


def message_log_purge(*, days: int | None = None) -> int:
    days = conf.message_log_retention_days() if days is None else days
    cutoff = clock.now() - timedelta(days=days)
    deleted, _ = OcppMessage.objects.filter(at__lt=cutoff).delete()
    return deleted
