"""Commands to chargers from any process, and the gateway's housekeeping.

The command path (docs/architecture.md, "Command path"): `command_send` validates the payload once
(`command_payload_check`, the schema of the charger's version), records the command and its audit record
and hands it, on commit, to the connection that holds the charger's socket (named by its presence record,
never a channel-layer group). Whoever finalises a command (the charger's answer or CALLERROR, a timeout, an
offline or disconnected charger, the sweep) calls `command_record_outcome`, the one recorder: one
transaction with the follow-ups (outcomes.py), then the outcome is published once, after commit, by
`_outcome_publish`, the one publisher. `command_wait` blocks on a Redis list keyed by the command's
message id (a UUID, unique for all time), never by its sequence id.

Payload members the product owns are filled in by `command_send` when the caller leaves them out, so the
admin, `ocpp_call` and the API send every command the same way: OCPP 2.x requests that the charger's
later messages refer back to by an id of ours (remoteStartId, requestId) get the command's own id (the
version's `command_id_fields`, apps.ocpp_gateway.versions), and GetDiagnostics / GetLog get a
single-use upload link of ours (`UPLOAD_LOCATION_FIELDS`, a DiagnosticsUpload slot tied to the command).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from apps.accounts.services import audit_record_build, audit_record_create
from apps.ocpp_gateway import conf, delivery, drain, hooks, outcomes, presence, protocol, transfers, versions
from apps.ocpp_gateway.choices import FINAL_COMMAND_STATUSES, OPEN_COMMAND_STATUSES, CommandStatus
from apps.ocpp_gateway.masking import mask_payload
from apps.ocpp_gateway.models import OcppCommand, OcppFailedMessage, command_outcome_shape
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.smartcharging import services as smartcharging_services
from apps.stations import keys
from apps.stations.choices import RegistrationStatus, SecurityProfile
from apps.stations.models import ChargePoint
from cpo import clock, metrics
from cpo.exceptions import NotFound, ValidationFailed
from cpo.persistence import IdBlock, objects_insert_together
from cpo.public_url import public_base_url

logger = logging.getLogger(__name__)
# Outcomes are published under the command's message id (OcppCommand.unique_id, a UUID): a sequence id
# starts again when the database is re-created or restored while Redis keeps its data, and a waiter
# would then read an earlier command's outcome.
OUTCOME_KEY = "cpo:ocpp:outcome:{unique_id}"
OUTCOME_TTL_S = 3600

# The payload member (a path) that takes a single-use upload link of ours when the caller leaves it out.
UPLOAD_LOCATION_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "1.6": {"GetDiagnostics": ("location",)},
    "2.0.1": {"GetLog": ("log", "remoteLocation")},
    "2.1": {"GetLog": ("log", "remoteLocation")},
}
# Stands in for the upload link while a payload that will get one is checked.
UPLOAD_LOCATION_STAND_IN = "https://upload.invalid/ocpp/uploads/diagnostics/pending/"
# SetVariables results after which the charger uses a new BasicAuthPassword. RebootRequired counts: the
# charger stored it and presents it from its next connection on (OCPP 2.0.1 TC_A_09 accepts either).
KEY_ACCEPTED_ATTRIBUTE_STATUSES = frozenset({"Accepted", "RebootRequired"})


def outcome_key(unique_id: str) -> str:
    """The Redis list a command's outcome is published to (by its message id, unique for all time)."""
    return OUTCOME_KEY.format(unique_id=unique_id)


def command_id_field(*, action: str, version: str) -> str:
    """The payload member `command_send` fills with the command's id when it is missing ("" for none)."""
    return versions.by_key(version).command_id_field(action)


def upload_location_field(*, action: str, version: str) -> tuple[str, ...]:
    """The payload member (path) `command_send` fills with an upload link of ours when it is missing."""
    return UPLOAD_LOCATION_FIELDS.get(version, {}).get(action, ())


def _get_path(payload: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = payload
    for name in path:
        if not isinstance(node, dict) or name not in node:
            return None
        node = node[name]
    return node


def _with_path(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `payload` with `value` at `path` (objects on the way are copied or created)."""
    head, *rest = path
    if not rest:
        return {**payload, head: value}
    inner = payload.get(head)
    return {**payload, head: _with_path(inner if isinstance(inner, dict) else {}, tuple(rest), value)}


def _filled_by_us(action: str, version: str, payload: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The members of `payload` that `command_send` will fill: (own id field or "", upload path or ())."""
    own_id = command_id_field(action=action, version=version)
    location = upload_location_field(action=action, version=version)
    return (
        own_id if own_id and own_id not in payload else "",
        location if location and _get_path(payload, location) is None else (),
    )


def command_payload_check(*, action: str, payload: dict[str, Any], version: str) -> None:
    """ValidationFailed when `payload` breaks the action's JSON schema at `version`; the members
    `command_send` fills in itself (the command's id, an upload link) may be left out. Forms check their
    input with it, so they refuse exactly what `command_send` would."""
    own_id, location = _filled_by_us(action, version, payload)
    checked = {**payload, own_id: 0} if own_id else payload
    if location:
        checked = _with_path(checked, location, UPLOAD_LOCATION_STAND_IN)
    try:
        protocol.validate(action, checked, version, versions.by_key(version).codes)
    except protocol.ProtocolViolation as exc:
        fields = {"payload": [exc.description]}
        member = _payload_member(exc)
        if member != "payload":
            fields[member] = [exc.description]
        raise ValidationFailed(
            _("The {action} payload is invalid: {problem}").format(action=action, problem=exc.description),
            code="invalid_payload",
            fields=fields,
        ) from exc


_REQUIRED = re.compile(r"^'([^']+)' is a required property")
_UNEXPECTED = re.compile(r"\('([^']+)'")


def _payload_member(exc: protocol.ProtocolViolation) -> str:
    """The payload member a schema failure is about, as a dotted name ("payload.chargingProfile.stackLevel"):
    the member itself for a missing or unexpected one, else the member whose value is wrong."""
    path = str(exc.details.get("path") or "payload")
    names = [] if path == "payload" else path.split("/")
    message = exc.description.split(": ", 1)[-1]
    keyword = exc.details.get("keyword")
    match = _REQUIRED.match(message) if keyword == "required" else None
    if keyword == "additionalProperties":
        match = _UNEXPECTED.search(message)
    if match is not None:
        names.append(match.group(1))
    return ".".join(["payload", *names])


def _base_url_for_uploads(base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/")
    try:
        return public_base_url()
    except ValueError as exc:
        raise ValidationFailed(
            _("The public base URL is unknown: set CPO_PUBLIC_BASE_URL."), code="public_base_url_unknown"
        ) from exc


def command_send(
    *,
    charge_point: ChargePoint,
    action: str,
    payload: dict[str, Any],
    timeout_s: float | None = None,
    actor: Any = None,
    source: str = "service",
    epoch: int | None = None,
    base_url: str | None = None,
) -> OcppCommand:
    """Record a command for `charge_point` and dispatch it on commit. Returns at once; the command is
    already final (`charger_offline`) when no connection holds the charger. ValidationFailed when the
    payload breaks the action's schema for the charger's protocol (checked once, here). A missing
    `command_id_field` member (e.g. RequestStartTransaction's remoteStartId) is filled with the new
    command's id; a missing `upload_location_field` member (GetDiagnostics location, GetLog
    log.remoteLocation) with a single-use upload link at `base_url` (default CPO_PUBLIC_BASE_URL), whose
    slot is stored with the command. With `epoch`, the command goes only to the connection with that
    epoch (ValidationFailed `connection_changed` otherwise; the consumer also drops a command addressed to
    an epoch it no longer holds)."""
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
    command_payload_check(action=action, payload=payload, version=version)
    timeout_s = float(timeout_s if timeout_s is not None else conf.command_timeout_s())
    if not 0 < timeout_s <= 3600:
        raise ValidationFailed(
            _("A command timeout must be between 0 and 3600 seconds."), fields={"timeout": []}
        )
    new_key_hash = _new_key_hash(action, payload)
    own_id_field, location_field = _filled_by_us(action, version, payload)
    upload_base_url = _base_url_for_uploads(base_url) if location_field else ""
    command_pk = _command_ids.take()
    if own_id_field:
        payload = {**payload, own_id_field: command_pk}
    rows: list[Any] = []
    if location_field:
        issued = transfers.diagnostics_upload_new(
            charge_point=charge_point, base_url=upload_base_url, actor=actor, command_id=command_pk
        )
        payload = _with_path(payload, location_field, issued.url)
        rows.append(issued.upload)
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
    deadline_ts = command.deadline.timestamp()
    if holder is None:
        with transaction.atomic():
            objects_insert_together(command, audit, *rows)
            command_record_outcome(
                command_id=command.pk,
                status=CommandStatus.CHARGER_OFFLINE,
                error_description="no connection holds this charger",
            )
            transaction.on_commit(lambda: _sent_here.add(command.pk, deadline_ts, command.unique_id))
        command.refresh_from_db()
        return command
    message = {
        "type": "ocpp.command",
        "command_id": command.pk,
        "unique_id": command.unique_id,
        "action": action,
        "payload": payload,
        "deadline_ts": deadline_ts,
        "epoch": holder.epoch,
        # What the outcome recorder needs to know to take its one-statement path (outcome_needs_follow_up).
        "new_key": bool(new_key_hash),
    }

    def hand_over() -> None:
        _sent_here.add(command.pk, deadline_ts, command.unique_id)
        _dispatch(holder.channel, message, command.pk)

    # The command, its audit record (and its upload slot) in one statement: one round trip, atomic by
    # itself (no BEGIN and COMMIT of our own), part of the caller's transaction when there is one. The
    # command is handed to the connection once committed: at once here, or when the caller's transaction
    # commits (status "sent" = dispatched to the connection holding the charger; a failed hand-over is
    # recorded).
    objects_insert_together(command, audit, *rows)
    transaction.on_commit(hand_over)
    return command


class _SentHere:
    """What `command_wait` needs to know about commands this process sent (their deadline and message
    id), so that a waiter in the sending process (an admin action, the API, ocpp_call) goes straight to
    Redis instead of reading the row first: every final outcome is published there (kept OUTCOME_TTL_S).
    Known only once the command is committed; bounded, oldest forgotten."""

    MAX = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[int, tuple[float, str]] = OrderedDict()

    def add(self, command_id: int, deadline_ts: float, unique_id: str) -> None:
        with self._lock:
            self._items[command_id] = (deadline_ts, unique_id)
            while len(self._items) > self.MAX:
                self._items.popitem(last=False)

    def take(self, command_id: int) -> tuple[float, str] | None:
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


def outcome_needs_follow_up(*, action: str, has_new_key: bool, status: str) -> bool:
    """THE rule for what recording an outcome involves besides writing the row: an answer applies a new
    key the charger accepted and the action's answer follow-up (outcomes.FOLLOW_UPS); any outcome runs
    the action's outcome follow-up (outcomes.FINISHED_FOLLOW_UPS, e.g. a driver's start). When it says
    no, `command_record_outcome` may make the row final in one statement."""
    if action in outcomes.FINISHED_FOLLOW_UPS:
        return True
    return status == CommandStatus.ANSWERED and (has_new_key or action in outcomes.FOLLOW_UPS)


def command_record_outcome(
    *,
    command_id: int,
    status: str,
    response: dict | None = None,
    error_code: str = "",
    error_description: str = "",
    action: str | None = None,
    has_new_key: bool | None = None,
) -> None:
    """THE one recorder of a command's final outcome, whoever finalises it (the charger's answer or
    CALLERROR, a timeout, an offline or disconnected charger, the sweep). The first outcome wins; later
    ones change nothing and publish nothing. The row is made final and the follow-ups (outcomes.py, a new
    key) run in one transaction; the outcome is published to waiters once, after that commits (with the
    caller's transaction when there is one), so a waiter never reads an outcome its row does not hold
    yet. A failure before the commit publishes nothing: a waiter then sees the command time out. A
    charger key in the answer (GetConfiguration, GetVariables) is masked before it is stored.

    `action` and `has_new_key` (what the command was, as `command_send` told the connection) let an
    outcome that needs no follow-up (`outcome_needs_follow_up`) be recorded in one statement instead of a
    locking transaction; the statement checks them against the row and leaves any other row to the
    transaction."""
    if status not in FINAL_COMMAND_STATUSES:
        raise ValueError(f"{status} is not a final command status")
    if response is not None:
        response = mask_payload(response)
    error_code, error_description = error_code[:64], error_description[:500]
    if (
        action is not None
        and has_new_key is not None
        and not outcome_needs_follow_up(action=action, has_new_key=has_new_key, status=status)
        and _record_in_one_statement(
            command_id=command_id,
            action=action,
            has_new_key=has_new_key,
            status=status,
            response=response,
            error_code=error_code,
            error_description=error_description,
        )
    ):
        return
    with transaction.atomic():
        command = OcppCommand.objects.select_for_update(no_key=True).filter(pk=command_id).first()
        if command is None or command.status in FINAL_COMMAND_STATUSES:
            return
        command.status, command.response = status, response
        command.error_code, command.error_description = error_code, error_description
        command.completed_at = clock.now()
        command.save(update_fields=["status", "response", "error_code", "error_description", "completed_at"])
        if status == CommandStatus.ANSWERED:
            if command.new_key_hash and _new_key_accepted(command, response or {}):
                _apply_new_key(command)
            outcomes.command_answered(command=command)
        outcomes.command_finished(command=command)
        transaction.on_commit(partial(_outcome_publish, command.unique_id, command.outcome()))


def _record_in_one_statement(
    *,
    command_id: int,
    action: str,
    has_new_key: bool,
    status: str,
    response: dict | None,
    error_code: str,
    error_description: str,
) -> bool:
    """Make the open command `command_id` final in one statement (one round trip, the row locked for that
    statement only), provided it is the `action` with or without a new key the caller said (whatever the
    caller said, a row that is not is left alone). Publishes the outcome on commit when it made the row
    final. True when nothing is left to do: the row was made final now, was final already, or is
    missing; False when the row is open but not the command described (the full path decides)."""
    sql = (
        "WITH before AS (SELECT status FROM ocpp_gateway_ocppcommand WHERE id = %(id)s), "
        "done AS (UPDATE ocpp_gateway_ocppcommand SET status = %(status)s, response = %(response)s::jsonb, "
        "error_code = %(error_code)s, error_description = %(error_description)s, completed_at = %(now)s "
        "WHERE id = %(id)s AND status = ANY(%(open)s) AND action = %(action)s "
        "AND (new_key_hash <> '') = %(has_new_key)s RETURNING unique_id) "
        "SELECT (SELECT unique_id FROM done), (SELECT status FROM before)"
    )
    open_statuses = sorted(OPEN_COMMAND_STATUSES)
    params: dict[str, Any] = {
        "id": command_id,
        "status": status,
        "response": None if response is None else json.dumps(response),
        "error_code": error_code,
        "error_description": error_description,
        "now": clock.now(),
        "open": open_statuses,
        "action": action,
        "has_new_key": has_new_key,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        unique_id, status_before = cursor.fetchone()
    if unique_id is not None:
        outcome = command_outcome_shape(
            command_id=command_id,
            action=action,
            status=status,
            response=response,
            error_code=error_code,
            error_description=error_description,
        )
        transaction.on_commit(partial(_outcome_publish, unique_id, outcome))
        return True
    return status_before is None or status_before not in open_statuses


def _outcome_publish(unique_id: str, outcome: dict[str, Any]) -> None:
    """THE one publisher: hand a final outcome to its waiters (kept OUTCOME_TTL_S for late ones). Called
    only by `command_record_outcome`, once the row holding this outcome is committed."""
    metrics.OCPP_COMMAND_OUTCOMES.labels(str(outcome.get("action") or "-"), str(outcome.get("status"))).inc()
    key = outcome_key(unique_id)
    pipe = sync_redis().pipeline(transaction=False)
    pipe.rpush(key, json.dumps(outcome))
    pipe.expire(key, OUTCOME_TTL_S)
    pipe.execute()


def command_wait(*, command_id: int, timeout_s: float | None = None) -> dict[str, Any]:
    """Block until the command is final or `timeout_s` passes (default: until its deadline plus a second),
    and return its outcome (`OcppCommand.outcome()`). A command still open past its deadline is recorded
    as timed out."""
    known = _sent_here.take(command_id)
    command = None
    if known is None:
        command = OcppCommand.objects.filter(pk=command_id).first()
        if command is None:
            raise NotFound(_("No command with id {id}.").format(id=command_id), code="command_not_found")
        if command.status in FINAL_COMMAND_STATUSES:
            return command.outcome()
        deadline_ts, unique_id = command.deadline.timestamp(), command.unique_id
    else:
        deadline_ts, unique_id = known
    if timeout_s is None:
        timeout_s = max(0.0, deadline_ts - clock.now().timestamp()) + 1.0
    if timeout_s > 0:
        key = outcome_key(unique_id)
        # BLMOVE from the list to itself: wait for the outcome and leave it for other waiters, in one
        # round trip and atomically (BLPOP then RPUSH took two, with the list empty in between). Only
        # command_record_outcome publishes, once the row is final and committed: the row already says
        # what the waiter reads here.
        item = sync_redis().blmove(key, key, max(1, round(timeout_s)), "LEFT", "RIGHT")
        if item is not None:
            return json.loads(item)
    if command is None:
        command = OcppCommand.objects.get(pk=command_id)
    else:
        command.refresh_from_db()
    if command.status not in FINAL_COMMAND_STATUSES and command.deadline <= clock.now():
        command_record_outcome(
            command_id=command_id,
            status=CommandStatus.TIMEOUT,
            error_description="no answer before the deadline",
        )
        command.refresh_from_db()
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
    """Keep a request that failed inside the product for replay (by hand, or automatically once:
    `replay.kept_messages_replay`)."""
    failed = OcppFailedMessage.objects.create(
        charge_point_id=charge_point_id,
        protocol=protocol,
        action=action,
        unique_id=unique_id,
        payload=payload,
        error=error[:4000],
        received_at=clock.now(),
    )
    drain.kept_note(charge_point_id)
    return failed


UNPROCESSED_ERROR = "not handled before the connection closed"


def failed_messages_keep_unprocessed(
    *, charge_point_id: int, protocol: str, calls: list[tuple[str, str, Any]]
) -> list[OcppFailedMessage]:
    """Keep requests (action, message id, payload) a closing connection received but did not finish, in
    the order received, for replay before the charger's next request (`replay.kept_messages_replay`)."""
    now = clock.now()
    kept = OcppFailedMessage.objects.bulk_create(
        [
            OcppFailedMessage(
                charge_point_id=charge_point_id,
                protocol=protocol,
                action=action,
                unique_id=unique_id,
                payload=payload,
                error=UNPROCESSED_ERROR,
                received_at=now,
            )
            for action, unique_id, payload in calls
        ]
    )
    drain.kept_note(charge_point_id)
    return kept


PRESENCE_FLUSHED_KEY = "cpo:ocpp:presence-flushed-at"
# Frames recorded this close before the last flush's start are read again (servers' clocks, a touch
# landing while the last flush ran): marking a charger online twice is harmless, missing it is not.
PRESENCE_FLUSH_OVERLAP_S = 5.0


def replay_journal_depth() -> int:
    """Charger messages kept for replay and not replayed yet (/metrics)."""
    return OcppFailedMessage.objects.filter(replayed_at__isnull=True).count()


def presence_flush() -> dict[str, int]:
    """Copy live presence from Redis to PostgreSQL in bulk: last_seen_at and is_online. Runs periodically
    (Celery beat), never per frame, and costs what changed since the last run, not the number of chargers:
    the chargers with a frame recorded since then (presence's sorted set) are marked seen and online; the
    offline candidates are those whose last frame is older than the presence TTL or whose connection
    ended (the sorted set), and those PostgreSQL still holds online with a last_seen_at older than the
    TTL (a Redis that lost its data); each is marked offline only when it has no presence record."""
    redis = sync_redis()
    started = time.time()
    flushed_at = float(redis.get(PRESENCE_FLUSHED_KEY) or 0)
    ttl_s = conf.presence_ttl_s()
    lapsed_before = started - ttl_s  # a frame older than presence lives says nothing about now
    seen_now = presence.seen_since(max(lapsed_before, flushed_at - PRESENCE_FLUSH_OVERLAP_S))
    identities = list(seen_now)
    seen = [datetime.fromtimestamp(seen_now[i], tz=UTC) for i in identities]
    came_back = list(
        ChargePoint.objects.filter(identity__in=identities, is_online=False).values_list("pk", flat=True)
    )
    online = 0
    if identities:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE stations_chargepoint AS cp SET last_seen_at = v.seen, is_online = true "
                "FROM unnest(%s::text[], %s::timestamptz[]) AS v(identity, seen) "
                "WHERE cp.identity = v.identity",
                [identities, seen],
            )
            online = cursor.rowcount
    stale = ChargePoint.objects.filter(
        Q(last_seen_at__lt=datetime.fromtimestamp(lapsed_before, tz=UTC)) | Q(last_seen_at__isnull=True),
        is_online=True,
    ).values_list("identity", flat=True)
    candidates = sorted({*presence.silent_since(lapsed_before), *stale} - set(identities))
    still_there = presence.online(candidates)
    gone = [identity for identity in candidates if identity not in still_there]
    lapsed = list(ChargePoint.objects.filter(identity__in=gone, is_online=True).values_list("pk", flat=True))
    went_offline = ChargePoint.objects.filter(pk__in=lapsed, is_online=True).update(is_online=False)
    presence.forget(gone)
    redis.set(PRESENCE_FLUSHED_KEY, repr(started))
    # A charger going offline or coming back changes how its site's budget is shared.
    for charge_point_id in sorted({*came_back, *lapsed}):
        smartcharging_services.charge_point_changed(charge_point_id=charge_point_id)
    if came_back or lapsed:
        hooks.connections_changed.emit(
            came_back=sorted(came_back), went_offline=sorted(lapsed), at=clock.now()
        )
    return {
        "online": online,
        "went_offline": went_offline,
        "seen": len(identities),
        "checked": len(candidates),
    }
