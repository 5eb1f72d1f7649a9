"""The driver's side of a charge: the state machine the mobile API runs on top of charging sessions.

    INITIATED → AUTHORISING → STARTING → ACTIVE → STOPPING → COMPLETED
                     └──────────┴──────→ FAILED
    (FAILED: charger_offline | charger_rejected | start_timeout | not_authorised)

Every transition takes the row lock of the driver session, is recorded (`DriverSessionTransition`) with
its time and cause, and is published on commit (with the session's body, apps.charging.live) to the
live-view group `driver_session.<pk>`. The charger side feeds in through three calls made by the
charging services and the command outcomes:
`driver_session_charging_started`, `driver_session_charging_stopped`, `driver_session_command_finished`.
Commands to the charger are intents (`apps.charging.intents`): the gateway builds the OCPP messages.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from apps.accounts.choices import IdTokenStatus, IdTokenType
from apps.accounts.models import IdToken, User
from apps.charging import live as driver_live
from apps.charging.choices import (
    DRIVER_SESSION_FINAL,
    DriverSessionFailure,
    DriverSessionSource,
    DriverSessionStatus,
    SessionStatus,
)
from apps.charging.hooks import PaymentHold, reservation_guard, start_payment
from apps.charging.intents import CommandOutcome, IntentOutcome, charger_control
from apps.charging.models import ChargingSession, DriverSession, DriverSessionTransition
from apps.stations.choices import ConnectorStatus, OcppProtocol, RegistrationStatus
from apps.stations.models import ChargePoint, Connector, Evse
from cpo import clock
from cpo.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed

S = DriverSessionStatus
# Connector states in which a new charge cannot begin.
BUSY_STATUSES = frozenset(
    {
        ConnectorStatus.CHARGING,
        ConnectorStatus.SUSPENDED_EV,
        ConnectorStatus.SUSPENDED_EVSE,
        ConnectorStatus.FINISHING,
        ConnectorStatus.OCCUPIED,
    }
)
DOWN_STATUSES = frozenset({ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED})
APP_TOKEN_PREFIX = "APP"  # noqa: S105 - a uid prefix, not a secret


def _publish_on_commit(driver_session_id: int) -> None:
    transaction.on_commit(lambda: driver_live.session_publish(driver_session_id))


def start_timeout_s() -> float:
    return float(getattr(settings, "CPO_DRIVER_START_TIMEOUT_S", 120))


def _transition(
    session: DriverSession,
    to: str,
    *,
    cause: str,
    at: datetime | None = None,
    failure: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Move a locked session to `to` and record it. Callers hold the row lock (select_for_update)."""
    at = at or clock.now()
    DriverSessionTransition.objects.create(
        session=session,
        from_status=session.status,
        to_status=to,
        at=at,
        cause=cause[:64],
        detail=detail or {},
    )
    leaving_failed = session.status == S.FAILED and to != S.FAILED
    session.status = to
    fields = ["status", "updated_at"]
    if failure or leaving_failed:  # a start given up on that the charger did begin after all is no failure
        session.failure_reason = failure
        fields.append("failure_reason")
    if to in DRIVER_SESSION_FINAL or leaving_failed:
        session.completed_at = at if to in DRIVER_SESSION_FINAL else None
        fields.append("completed_at")
    session.save(update_fields=fields)
    if to == S.FAILED:
        start_payment.get().start_failed(session=session)
    _publish_on_commit(session.pk)


def _locked(pk: int) -> DriverSession:
    return DriverSession.objects.select_for_update(no_key=True).get(pk=pk)


# --- the driver's app token -------------------------------------------------------------------------


@transaction.atomic
def driver_app_token(*, driver: User) -> IdToken:
    """The driver's own app token (type Central), created on first use. Its uid fits OCPP 1.6's 20
    characters. A blocked app token is not replaced: an operator blocked it on purpose."""
    token = (
        IdToken.objects.select_for_update(no_key=True)
        .filter(owner=driver, type=IdTokenType.CENTRAL, uid__startswith=APP_TOKEN_PREFIX)
        .order_by("pk")
        .first()
    )
    if token is None:
        token = IdToken.objects.create(
            uid=APP_TOKEN_PREFIX + secrets.token_hex(8).upper(),
            type=IdTokenType.CENTRAL,
            owner=driver,
            label=_("App"),
        )
    return token


# --- start -------------------------------------------------------------------------------------------


def request_fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _charge_point_for_driver(charge_point_id: Any) -> ChargePoint:
    cp = (
        ChargePoint.objects.select_related("location")
        .filter(
            pk=charge_point_id, location__is_published=True, registration_status=RegistrationStatus.ACCEPTED
        )
        .first()
    )
    if cp is None:
        raise NotFound(
            _("No charger with id {id}.").format(id=charge_point_id),
            code="charger_not_found",
            fields={"charge_point": [_("No such charger.")]},
        )
    return cp


def _check_connector(cp: ChargePoint, evse_id: int, driver: User) -> Connector | None:
    """Raise unless a new charge can begin on this EVSE for `driver`. The caller holds the EVSE's row lock,
    so two starts on one EVSE are decided one after the other. A 2.0.1 connector reports Occupied as soon
    as a car is plugged in, and may already run a transaction nobody has authorised (TxStartPoint
    EVConnected): both wait for a driver, so a start is welcome then. A reserved EVSE (our reservation,
    or a Reserved status we know no holder of) is only for the reservation's holder."""
    connectors = list(
        Connector.objects.filter(evse__charge_point=cp, evse__evse_id=evse_id).order_by("connector_id")
    )
    if connectors and all(c.status in DOWN_STATUSES for c in connectors):
        raise Conflict(
            _("Connector {no} is unavailable.").format(no=evse_id),
            code="connector_unavailable",
            fields={"connector": [_("Unavailable.")]},
        )
    hold = reservation_guard.get().holder(charge_point_id=cp.pk, evse_id=evse_id, at=clock.now())
    reserved = hold is not None or any(c.status == ConnectorStatus.RESERVED for c in connectors)
    if reserved and (hold is None or hold.driver_id != driver.pk):
        raise Conflict(
            _("Connector {no} is reserved for another driver.").format(no=evse_id),
            code="connector_reserved",
            fields={"connector": [_("Reserved.")]},
        )
    busy_statuses = BUSY_STATUSES
    if cp.ocpp_protocol in (OcppProtocol.OCPP201, OcppProtocol.OCPP21):
        busy_statuses = BUSY_STATUSES - {ConnectorStatus.OCCUPIED}
    busy = (
        any(c.status in busy_statuses for c in connectors)
        or ChargingSession.objects.filter(charge_point=cp, evse_id=evse_id, status=SessionStatus.ACTIVE)
        .exclude(id_tag="")
        .exists()
        or (
            DriverSession.objects.filter(
                charge_point=cp, evse_id=evse_id, status__in=[S.INITIATED, S.AUTHORISING, S.STARTING]
            ).exists()
        )
    )
    if busy:
        raise Conflict(
            _("Connector {no} is in use.").format(no=evse_id),
            code="connector_occupied",
            fields={"connector": [_("In use.")]},
        )
    return connectors[0] if connectors else None


def _existing_for_key(driver: User, key: str, fingerprint: str) -> DriverSession | None:
    existing = DriverSession.objects.filter(driver=driver, idempotency_key=key).first()
    if existing is not None and existing.request_hash != fingerprint:
        raise Conflict(
            _("This Idempotency-Key was used for a different request."),
            code="idempotency_key_reused",
            fields={"Idempotency-Key": [_("Already used with other parameters.")]},
        )
    return existing


def driver_session_start(
    *, driver: User, charge_point_id: Any, evse_id: int, idempotency_key: str
) -> tuple[DriverSession, bool]:
    """Start a charge for `driver` on a connector; returns (session, created). The same Idempotency-Key
    (per driver, kept 24 h) returns the session it created, also for concurrent duplicates (the unique
    constraint makes the second insert wait for the first and then find it). The session comes back
    STARTING (the start command is handed to the charger's connection on commit) or FAILED with
    `charger_offline` when no connection holds the charger. Errors: charger_not_found,
    connector_not_found (404), connector_unavailable, connector_occupied, connector_reserved,
    idempotency_key_reused (409),
    not_authorised (403)."""
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValidationFailed(
            _("Send an Idempotency-Key header of 1 to 255 characters."),
            code="idempotency_key_required",
            fields={"Idempotency-Key": [_("Required.")]},
        )
    fingerprint = request_fingerprint({"charge_point": str(charge_point_id), "connector": evse_id})
    cp = _charge_point_for_driver(charge_point_id)
    token = driver_app_token(driver=driver)
    # The payment (a card hold) is secured before any row lock is taken: it waits on the payment provider.
    # A replay of a key already answered needs none (it gets its session below).
    hold: PaymentHold | None = None
    if not DriverSession.objects.filter(driver=driver, idempotency_key=idempotency_key).exists():
        hold = start_payment.get().authorise(
            driver=driver, charge_point=cp, evse_id=evse_id, idempotency_key=idempotency_key
        )
    try:
        with transaction.atomic():
            # The driver's row lock orders a start against the account's deletion (which takes it too).
            if not User.objects.select_for_update(no_key=True).filter(pk=driver.pk, is_active=True).exists():
                raise PermissionDenied(_("This account is closed."), code="account_closed")
            # The EVSE's row lock orders concurrent starts on it; after it, a duplicate request that
            # committed first is visible and is answered with its session.
            # FOR NO KEY UPDATE: a connector inserted for this EVSE meanwhile (its foreign key check takes
            # a KEY SHARE lock) need not wait for us, nor we for it.
            if (
                Evse.objects.select_for_update(no_key=True).filter(charge_point=cp, evse_id=evse_id).first()
                is None
            ):
                raise NotFound(
                    _("Charger {cp} has no connector {no}.").format(cp=cp.identity, no=evse_id),
                    code="connector_not_found",
                    fields={"connector": [_("No such connector.")]},
                )
            existing = _existing_for_key(driver, idempotency_key, fingerprint)
            if existing is not None:
                _unused_hold(hold)
                return existing, False
            connector = _check_connector(cp, evse_id, driver)
            session = DriverSession(
                driver=driver,
                organisation_id=cp.organisation_id,
                charge_point=cp,
                evse_id=evse_id,
                connector=connector,
                id_token=token,
                id_tag=token.uid,
                source=DriverSessionSource.APP,
                status=S.INITIATED,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
            )
            # The steps up to the start command are decided first and written at once (one insert for the
            # session, one for its transitions): this is the path a driver waits on.
            steps = _authorise_and_send(session, cp, token, hold)
            try:
                with transaction.atomic():
                    session.save(force_insert=True)
            except IntegrityError:
                raise _KeyTaken() from None  # the same key, committed meanwhile for another EVSE
            DriverSessionTransition.objects.bulk_create(
                [DriverSessionTransition(session=session, **step) for step in steps]
            )
            if hold is not None:
                start_payment.get().attach(hold=hold, session=session)
                if session.status == S.FAILED:
                    start_payment.get().start_failed(session=session)
            _publish_on_commit(session.pk)
            return session, True
    except _KeyTaken:
        _unused_hold(hold)
        existing = _existing_for_key(driver, idempotency_key, fingerprint)
        if existing is None:  # pragma: no cover - the constraint names this exact key
            raise
        return existing, False
    except Exception:
        _unused_hold(hold)  # refused (occupied, closed account, ...): no session holds the payment
        raise


def _unused_hold(hold: PaymentHold | None) -> None:
    """This request made no session for its payment: the payment app releases the hold after commit unless
    a session holds it (a concurrent duplicate with the same key gets the same hold)."""
    if hold is not None:
        start_payment.get().start_failed(session=None, hold=hold)


class _KeyTaken(Exception):
    """A concurrent request with the same Idempotency-Key committed first."""


def _authorise_and_send(
    session: DriverSession, cp: ChargePoint, token: IdToken, hold: PaymentHold | None = None
) -> list[dict[str, Any]]:
    """Authorise and, if that passes, send the start command. Sets the new session's final status and
    returns the transitions that led there (not saved yet)."""
    now = clock.now()
    steps: list[dict[str, Any]] = [
        {"from_status": "", "to_status": S.INITIATED, "cause": "requested", "detail": {}}
    ]

    def step(to: str, cause: str, detail: dict[str, Any], failure: str = "") -> None:
        steps.append(
            {"from_status": steps[-1]["to_status"], "to_status": to, "cause": cause, "detail": detail}
        )
        session.status = to
        if failure:
            session.failure_reason = failure
        if to in DRIVER_SESSION_FINAL:
            session.completed_at = now

    # The payment was secured before the locks (start_payment); a driver billed on account needs none.
    step(S.AUTHORISING, "authorise", hold.detail if hold is not None else {"payment": "account"})
    status = token.effective_status(now)
    if status != IdTokenStatus.ACCEPTED:
        step(S.FAILED, "token_not_accepted", {"token_status": status}, DriverSessionFailure.NOT_AUTHORISED)
        return [{**s, "at": now} for s in steps]
    # The charger's transaction names the command where its protocol allows (remoteStartId), which links
    # it back to this session (driver_session_charging_started).
    sent = charger_control.get().start_charging(
        charge_point=cp, evse_id=session.evse_id, id_token=token, actor=session.driver, source="api"
    )
    session.start_command_id = sent.command_id
    session.start_deadline = now + timedelta(seconds=start_timeout_s())
    if sent.offline:
        step(
            S.FAILED, "charger_offline", {"command_id": sent.command_id}, DriverSessionFailure.CHARGER_OFFLINE
        )
    else:
        step(S.STARTING, "start_sent", {"command_id": sent.command_id, "action": sent.action})
    return [{**s, "at": now} for s in steps]


# --- stop --------------------------------------------------------------------------------------------


@transaction.atomic
def driver_session_stop(*, session: DriverSession, reason: str = "") -> DriverSession:
    """Ask the charger to stop. Safe to repeat: a STOPPING or COMPLETED session is returned unchanged.
    Errors (409): session_failed, session_starting (nothing to stop yet), charger_offline (the session
    stays ACTIVE).

    `reason`: the operator stops it, not the driver (e.g. "payment_limit_reached" when the cost reached
    the card hold); it is the cause of the ACTIVE → STOPPING step the driver sees (session and live
    stream). Sending the command never waits for the charger's answer."""
    session = _locked(session.pk)
    if session.status in (S.STOPPING, S.COMPLETED):
        return session
    if session.status == S.FAILED:
        raise Conflict(_("This charge never started."), code="session_failed")
    if session.status != S.ACTIVE or session.charging_session is None:
        raise Conflict(_("The charger has not started yet; try again in a moment."), code="session_starting")
    sent = charger_control.get().stop_transaction(
        session=session.charging_session,
        actor=None if reason else session.driver,
        source="system" if reason else "api",
    )
    if sent.offline:
        raise Conflict(_("The charger is offline; stop the charge at the charger."), code="charger_offline")
    session.stop_command_id = sent.command_id
    session.save(update_fields=["stop_command_id", "updated_at"])
    detail: dict[str, Any] = {"command_id": sent.command_id, "action": sent.action}
    if reason:
        detail["reason"] = reason
    _transition(session, S.STOPPING, cause=reason or "stop_sent", detail=detail)
    return session


# --- what the charger side reports -------------------------------------------------------------------


def driver_session_charging_started(*, charging: ChargingSession) -> DriverSession | None:
    """A charging session began (or learnt its token or remote start id): link it to the driver's session
    that asked for it, or give the owner of the token a session of their own. Runs inside the caller's
    transaction; idempotent."""
    if DriverSession.objects.filter(charging_session=charging).exists():
        return None
    candidates = DriverSession.objects.select_for_update(no_key=True).filter(
        charge_point_id=charging.charge_point_id, charging_session__isnull=True
    )
    found = None
    if charging.remote_start_id is not None:
        found = candidates.filter(start_command_id=charging.remote_start_id).first()
    if found is None and charging.id_tag:
        # OCPP 1.6 says nothing of our request in StartTransaction: match connector and token. A start that
        # we had given up on (start_timeout) is still the driver's: the charger did start it after all.
        recent = clock.now() - timedelta(hours=1)
        found = (
            candidates.filter(evse_id=charging.evse_id, id_tag=charging.id_tag, created_at__gte=recent)
            .filter(status=S.STARTING)
            .order_by("-created_at")
            .first()
            or candidates.filter(
                evse_id=charging.evse_id,
                id_tag=charging.id_tag,
                created_at__gte=recent,
                status=S.FAILED,
                failure_reason=DriverSessionFailure.START_TIMEOUT,
            )
            .order_by("-created_at")
            .first()
        )
    if found is not None:
        found.charging_session = charging
        found.save(update_fields=["charging_session", "updated_at"])
        _transition(
            found, S.ACTIVE, cause="charger_started", detail={"transaction": charging.transaction_ref}
        )
        return found
    token = charging.id_token
    if token is None or token.owner_id is None or not token.owner.is_active:
        return None
    session = DriverSession.objects.create(
        driver_id=token.owner_id,
        organisation_id=charging.organisation_id,
        charge_point_id=charging.charge_point_id,
        evse_id=charging.evse_id,
        connector=charging.connector,
        id_token=token,
        id_tag=charging.id_tag,
        source=DriverSessionSource.CHARGER,
        status=S.ACTIVE,
        charging_session=charging,
    )
    DriverSessionTransition.objects.create(
        session=session,
        from_status="",
        to_status=S.ACTIVE,
        at=charging.started_at,
        cause="started_at_charger",
        detail={"transaction": charging.transaction_ref},
    )
    _publish_on_commit(session.pk)
    return session


def driver_session_charging_stopped(*, charging: ChargingSession) -> None:
    """The charging session completed: so does the driver's. Runs inside the caller's transaction."""
    session = DriverSession.objects.select_for_update(no_key=True).filter(charging_session=charging).first()
    if session is None or session.status in DRIVER_SESSION_FINAL:
        return
    cause = "stopped_from_app" if session.status == S.STOPPING else "stopped_at_charger"
    _transition(
        session, S.COMPLETED, cause=cause, at=charging.stopped_at, detail={"reason": charging.stop_reason}
    )


def driver_session_charging_updated(*, charging: ChargingSession) -> None:
    """New meter values or state for a charging session: tell the driver's live view, if there is one."""
    pk = DriverSession.objects.filter(charging_session=charging).values_list("pk", flat=True).first()
    if pk is not None:
        _publish_on_commit(pk)


def driver_session_command_finished(*, outcome: IntentOutcome) -> None:
    """A start or stop command reached its final outcome (answer, CALLERROR, timeout, offline,
    disconnect): a refused start fails the driver's session, a refused stop lets the charge go on."""
    accepted = outcome.outcome == CommandOutcome.ACCEPTED
    with transaction.atomic():
        session = (
            DriverSession.objects.select_for_update(no_key=True)
            .filter(start_command_id=outcome.command_id)
            .first()
        )
        if session is not None:
            if session.status == S.STARTING and not accepted:
                failure, cause = {
                    CommandOutcome.OFFLINE: (DriverSessionFailure.CHARGER_OFFLINE, "charger_offline"),
                    CommandOutcome.DISCONNECTED: (
                        DriverSessionFailure.CHARGER_OFFLINE,
                        "charger_disconnected",
                    ),
                    CommandOutcome.TIMEOUT: (DriverSessionFailure.START_TIMEOUT, "no_answer"),
                }.get(outcome.outcome, (DriverSessionFailure.CHARGER_REJECTED, "charger_rejected"))
                _transition(
                    session,
                    S.FAILED,
                    cause=cause,
                    failure=failure,
                    detail={
                        "command_id": outcome.command_id,
                        "outcome": outcome.status,
                        "response": outcome.response,
                        "error_code": outcome.error_code,
                    },
                )
            return
        session = (
            DriverSession.objects.select_for_update(no_key=True)
            .filter(stop_command_id=outcome.command_id)
            .first()
        )
        if session is not None and session.status == S.STOPPING and not accepted:
            # The charge goes on; the driver may try again (or stop at the charger).
            _transition(
                session,
                S.ACTIVE,
                cause="stop_refused",
                detail={
                    "command_id": outcome.command_id,
                    "outcome": outcome.status,
                    "response": outcome.response,
                },
            )


def driver_sessions_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Periodic: fail starts the charger never began (start_timeout) and forget Idempotency-Keys older
    than 24 h. Idempotent."""
    now = now or clock.now()
    timed_out = 0
    for pk in DriverSession.objects.filter(status=S.STARTING, start_deadline__lt=now).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            session = _locked(pk)
            if session.status == S.STARTING and session.charging_session_id is None:
                _transition(
                    session, S.FAILED, cause="start_timeout", failure=DriverSessionFailure.START_TIMEOUT
                )
                timed_out += 1
    forgotten = DriverSession.objects.filter(
        idempotency_key__isnull=False, created_at__lt=now - timedelta(hours=24)
    ).update(idempotency_key=None)
    return {"start_timeout": timed_out, "keys_forgotten": forgotten}
