"""Charging sessions as chargers report them. Version-agnostic: the OCPP 1.6 StartTransaction /
StopTransaction / MeterValues flow and the 2.0.1 TransactionEvent flow call the same functions.

Every write is idempotent on a natural key (never the OCPP message id, which resets on reboot), so a
charger that repeats messages after a reconnect leaves the database as one clean delivery would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from apps.accounts.models import IdToken
from apps.accounts.services import audit_record_create
from apps.charging import driver_services, hooks
from apps.charging.card_links import card_link_confirm
from apps.charging.choices import AuthorizationStatus, ClosedBy, ReviewReason, SessionStatus
from apps.charging.metering import ENERGY_REGISTER, Sample, energy_register_wh
from apps.charging.models import (
    OCPP16_TRANSACTION_SEQUENCE,
    ChargingSession,
    MeterSample,
    OrphanStop,
    TransactionEvent,
)
from apps.stations.choices import OcppProtocol
from apps.stations.models import ChargePoint, Connector
from apps.stations.services import clamp_charger_time
from cpo import clock
from cpo.partitions import PartitionedTable


@dataclass(frozen=True, slots=True)
class AuthResult:
    """What to tell a charger about a token (1.6 idTagInfo / 2.0.1 idTokenInfo). `group_id` is empty
    where the token is Invalid (unknown, or not valid at the charger's operator). `token_id` (what a
    session stores, and so what links the card and its owner to the charger's operator) and
    `customer_account_id` are set only where the card is valid at the charger's operator: a tap refused
    by the network rule is `known` but ties the card to nobody there."""

    status: str
    group_id: str = ""
    expires_at: datetime | None = None
    token_id: int | None = None
    customer_account_id: int | None = None
    known: bool = False


def _token_for(uid: str) -> IdToken | None:
    return IdToken.objects.filter(uid=uid.strip().upper()).prefetch_related("valid_at").first()


def idtoken_authorize(
    *,
    uid: str,
    charge_point: ChargePoint,
    at: datetime | None = None,
    exclude_session_id: int | None = None,
    to_start: bool = True,
    token_type: str | None = None,
    evse_id: int | None = None,
) -> AuthResult:
    """The token's current status at this charge point: unknown → Invalid; expired → Expired; not valid
    at this operator → Invalid; Accepted but charging elsewhere → ConcurrentTx, only when it is presented
    `to_start` charging (a token presented to stop a transaction may well have one of its own running).
    A token presented `to_start` first answers a driver's card link request waiting at this charge point
    (card_links.card_link_confirm; `token_type` is the type the charger names, None for OCPP 1.6), so a
    card linked by this tap is answered as its new driver's."""
    at = at or clock.now()
    if to_start:
        card_link_confirm(charge_point_id=charge_point.pk, uid=uid, token_type=token_type, at=at)
    token = _token_for(uid)
    if token is None:
        # Not ours: perhaps a roaming partner's driver (apps.roaming answers from the tokens the eMSP
        # pushed, or asks the eMSP in real time).
        roaming = hooks.roaming_authorizer.get().authorize(
            uid=uid.strip().upper(),
            charge_point=charge_point,
            at=at,
            to_start=to_start,
            exclude_session_id=exclude_session_id,
        )
        if roaming is None:
            return AuthResult(AuthorizationStatus.INVALID)
        accepted = roaming.status == AuthorizationStatus.ACCEPTED
        return AuthResult(status=roaming.status, group_id=roaming.group_id if accepted else "", known=True)
    status = token.effective_status(at)
    if not token.is_valid_at(charge_point.organisation_id):
        # Another network's card: refused, and neither it nor its owner is this operator's business.
        return AuthResult(AuthorizationStatus.INVALID, known=True)
    if (
        status == AuthorizationStatus.ACCEPTED
        and to_start
        and token.owner_id is not None
        and hooks.driver_standing.get().blocked(user_id=token.owner_id)
    ):
        # An unpaid debt: no new charge until it is paid (a running one may still be stopped).
        status = AuthorizationStatus.BLOCKED
    if status == AuthorizationStatus.ACCEPTED and to_start:
        # Only sessions the card was accepted for count (they carry the token): a transaction another
        # network's charger started with this uid, refused there, must not block the card at its own.
        active = ChargingSession.objects.filter(id_token=token, status=SessionStatus.ACTIVE)
        if exclude_session_id is not None:
            active = active.exclude(pk=exclude_session_id)
        if active.exists():
            status = AuthorizationStatus.CONCURRENT_TX
        elif evse_id is not None:
            hold = hooks.reservation_guard.get().holder(
                charge_point_id=charge_point.pk, evse_id=evse_id, at=at
            )
            if hold is not None and hold.id_token_id != token.pk and hold.id_tag != token.uid:
                status = AuthorizationStatus.INVALID
    # The fleet group is the card's network's business: never told to a charger where the card is invalid.
    group_id = token.group_id if status != AuthorizationStatus.INVALID else ""
    return AuthResult(
        status=status,
        group_id=group_id,
        expires_at=token.expires_at,
        token_id=token.pk,
        customer_account_id=token.customer_account_id,
        known=True,
    )


def _authorize_if_token(
    uid: str, cp: ChargePoint, at: datetime, session_id: int | None, evse_id: int | None = None
) -> AuthResult:
    if not uid:
        return AuthResult(AuthorizationStatus.NOT_YET)
    return idtoken_authorize(uid=uid, charge_point=cp, at=at, exclude_session_id=session_id, evse_id=evse_id)


@dataclass(frozen=True, slots=True)
class StartResult:
    session: ChargingSession
    auth: AuthResult
    created: bool


def _connector(charge_point_id: int, evse_id: int, connector_id: int) -> Connector | None:
    return Connector.objects.filter(
        evse__charge_point_id=charge_point_id, evse__evse_id=evse_id, connector_id=connector_id
    ).first()


def _next_ocpp16_transaction_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(%s)", [OCPP16_TRANSACTION_SEQUENCE])
        return int(cursor.fetchone()[0])


def session_start(
    *,
    charge_point_id: int,
    evse_id: int,
    id_tag: str,
    meter_start_wh: int,
    started_at_charger: datetime,
    received_at: datetime,
    protocol: str,
    connector_id: int = 1,
    reservation_id: int | None = None,
    transaction_ref: str | None = None,
) -> StartResult:
    """Record a transaction start and the token's status. OCPP 1.6 (no `transaction_ref`): a replay of
    the same (charge point, connector, idTag, timestamp, meterStart) returns the same session and
    transactionId; a new one takes the next id of a database sequence. Always succeeds: an unknown
    or refused token is recorded and flagged for review, and answered with its status."""
    if evse_id < 1:
        raise ValueError("a transaction starts on EVSE/connector 1 or higher")
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return _session_start(
                    charge_point_id=charge_point_id,
                    evse_id=evse_id,
                    id_tag=id_tag,
                    meter_start_wh=meter_start_wh,
                    started_at_charger=started_at_charger,
                    received_at=received_at,
                    protocol=protocol,
                    connector_id=connector_id,
                    reservation_id=reservation_id,
                    transaction_ref=transaction_ref,
                )
        except IntegrityError:
            continue  # a concurrent duplicate won the insert; the retry finds it
    raise RuntimeError("session_start: could not insert or find the session")


def _session_start(
    *,
    charge_point_id: int,
    evse_id: int,
    id_tag: str,
    meter_start_wh: int,
    started_at_charger: datetime,
    received_at: datetime,
    protocol: str,
    connector_id: int,
    reservation_id: int | None,
    transaction_ref: str | None,
) -> StartResult:
    cp = ChargePoint.objects.get(pk=charge_point_id)
    uid = id_tag.strip().upper()
    existing_qs = ChargingSession.objects.filter(charge_point_id=charge_point_id)
    if transaction_ref is None:
        existing = existing_qs.filter(
            protocol=OcppProtocol.OCPP16,
            evse_id=evse_id,
            id_tag=uid,
            started_at_charger=started_at_charger,
            meter_start_wh=meter_start_wh,
        ).first()
    else:
        existing = existing_qs.filter(transaction_ref=transaction_ref).first()
    if existing is not None:
        auth = _authorize_if_token(uid, cp, received_at, existing.pk)
        return StartResult(existing, auth, created=False)
    auth = _authorize_if_token(uid, cp, received_at, None, evse_id)
    started_at, clamped = clamp_charger_time(started_at_charger, received_at)
    review = ReviewReason.NONE
    if not uid:
        pass  # OCPP 2.0.1: a transaction may start (cable plugged in) before anyone is authorised
    elif not auth.known:
        review = ReviewReason.UNKNOWN_TOKEN
    elif auth.status != AuthorizationStatus.ACCEPTED:
        review = ReviewReason.TOKEN_NOT_ACCEPTED
    ocpp16_id = None
    if transaction_ref is None:
        ocpp16_id = _next_ocpp16_transaction_id()
        transaction_ref = str(ocpp16_id)
    session = ChargingSession.objects.create(
        organisation_id=cp.organisation_id,
        charge_point=cp,
        evse_id=evse_id,
        connector=_connector(charge_point_id, evse_id, connector_id),
        protocol=protocol,
        transaction_ref=transaction_ref,
        ocpp16_transaction_id=ocpp16_id,
        id_tag=uid,
        id_token_id=auth.token_id,
        auth_status=auth.status,
        reservation_id=reservation_id,
        meter_start_wh=meter_start_wh,
        started_at=started_at,
        started_at_charger=started_at_charger,
        start_received_at=received_at,
        timestamps_clamped=clamped,
        review_reason=review,
    )
    driver_services.driver_session_charging_started(charging=session)
    # e.g. tariffs freezes the tariff in force now with the session, in the same transaction.
    hooks.session_started.emit(
        session=session,
        charge_point=cp,
        token_group_id=auth.group_id,
        customer_account_id=auth.customer_account_id,
    )
    return StartResult(session, auth, created=True)


@dataclass(frozen=True, slots=True)
class StopResult:
    session: ChargingSession | None
    auth: AuthResult | None
    orphan: bool


@transaction.atomic
def session_stop(
    *,
    charge_point_id: int,
    transaction_ref: str,
    meter_stop_wh: int,
    stopped_at_charger: datetime,
    received_at: datetime,
    reason: str = "",
    id_tag: str = "",
    samples: list[Sample] | None = None,
    raw: dict[str, Any] | None = None,
) -> StopResult:
    """Close a session. Safe to repeat: a completed session is returned unchanged. A stop for a
    transaction we never saw is kept as an OrphanStop for an operator and still answered."""
    session = (
        ChargingSession.objects.select_for_update(no_key=True)
        .filter(charge_point_id=charge_point_id, transaction_ref=transaction_ref)
        .first()
    )
    auth = None
    if id_tag:
        cp = ChargePoint.objects.get(pk=charge_point_id)
        auth = idtoken_authorize(
            uid=id_tag,
            charge_point=cp,
            at=received_at,
            exclude_session_id=session.pk if session else None,
            to_start=False,
        )
    if session is None:
        OrphanStop.objects.get_or_create(
            charge_point_id=charge_point_id,
            transaction_ref=transaction_ref,
            defaults={"payload": raw or {}, "received_at": received_at},
        )
        if samples:
            meter_samples_record(
                charge_point_id=charge_point_id,
                evse_id=0,
                session=None,
                samples=samples,
                received_at=received_at,
            )
        return StopResult(None, auth, orphan=True)
    if samples:
        meter_samples_record(
            charge_point_id=charge_point_id,
            evse_id=session.evse_id,
            session=session,
            samples=samples,
            received_at=received_at,
        )
    if session.status == SessionStatus.COMPLETED:
        late_stop_record(session=session, payload=raw or {}, received_at=received_at)
        return StopResult(session, auth, orphan=False)
    stopped_at, clamped = clamp_charger_time(stopped_at_charger, received_at)
    session.status = SessionStatus.COMPLETED
    session.meter_stop_wh = meter_stop_wh
    session.stopped_at = max(stopped_at, session.started_at)
    session.stopped_at_charger = stopped_at_charger
    session.stop_received_at = received_at
    session.stop_reason = (reason or "")[:32]
    session.stop_id_tag = (id_tag or "").strip().upper()[:36]
    session.timestamps_clamped = session.timestamps_clamped or clamped
    if meter_stop_wh < session.meter_start_wh and not session.review_reason:
        session.review_reason = ReviewReason.METER_WENT_BACKWARDS
    session.save()
    driver_services.driver_session_charging_stopped(charging=session)
    hooks.session_stopped.emit(session=session, reason=session.stop_reason)  # e.g. tariffs: price it
    return StopResult(session, auth, orphan=False)


LATE_STOP_OVERRIDES = frozenset({ReviewReason.NONE, ReviewReason.RECONCILED, ReviewReason.MISSING_EVENTS})


def late_stop_record(*, session: ChargingSession, payload: dict[str, Any], received_at: datetime) -> bool:
    """The charger's own stop of a session the product had closed itself (reconciled or force-closed):
    kept, linked to the session, as evidence (e.g. the true meter stop) and the session flagged for
    review. The session and its charge detail record stay as they are (a CDR is never issued twice nor
    changed). A repeated stop, or one of a session the charger stopped itself, records nothing. True when
    recorded."""
    if session.stop_reason not in ClosedBy.values:
        return False
    _stop, created = OrphanStop.objects.get_or_create(
        charge_point_id=session.charge_point_id,
        transaction_ref=session.transaction_ref,
        defaults={"payload": payload, "received_at": received_at, "session": session},
    )
    # Above the flags of the closing itself (reconciled, events missing: the stop was among them).
    if created and session.review_reason in LATE_STOP_OVERRIDES:
        session.review_reason = ReviewReason.LATE_STOP
        session.save(update_fields=["review_reason", "updated_at"])
    return created


def session_for_transaction(*, charge_point_id: int, transaction_ref: str) -> ChargingSession | None:
    return ChargingSession.objects.filter(
        charge_point_id=charge_point_id, transaction_ref=transaction_ref
    ).first()


def meter_samples_retention_days() -> int:
    """CPO_METER_SAMPLES_RETENTION_DAYS: 0 (the default) keeps meter samples forever (config/settings)."""
    return int(getattr(settings, "CPO_METER_SAMPLES_RETENTION_DAYS", 0))


# Meter samples by month of `sampled_at` (migration 0008 says why not `received_at`): registered in
# ChargingConfig.ready(), maintained by the `cpo.partitions_maintain` task.
METER_SAMPLES_PARTITIONS = PartitionedTable(
    table=MeterSample._meta.db_table, column="sampled_at", retention_days=meter_samples_retention_days
)


def meter_samples_record(
    *,
    charge_point_id: int,
    evse_id: int,
    session: ChargingSession | None,
    samples: list[Sample],
    received_at: datetime,
) -> None:
    """Store samples; a sample already stored (same natural key) is skipped (ON CONFLICT DO NOTHING)."""
    if not samples:
        return
    rows = [
        MeterSample(
            charge_point_id=charge_point_id,
            evse_id=evse_id,
            session=session,
            sampled_at=s.sampled_at,
            received_at=received_at,
            measurand=s.measurand[:64],
            phase=s.phase[:8],
            location=s.location[:8],
            context=s.context[:24],
            unit=s.unit[:16],
            value=s.value,
            raw_value=s.raw_value,
            raw_unit=s.raw_unit,
            signed_data=s.signed_data,
        )
        for s in samples
    ]
    MeterSample.objects.bulk_create(rows, ignore_conflicts=True)
    # e.g. smart charging: a change in what the car draws changes how its site is shared.
    hooks.meter_values_recorded.emit(
        charge_point_id=charge_point_id, evse_id=evse_id, session=session, samples=samples
    )


@transaction.atomic
def meter_values_record(
    *,
    charge_point_id: int,
    evse_id: int,
    transaction_ref: str | None,
    samples: list[Sample],
    received_at: datetime,
) -> None:
    """MeterValues: attach to the session when the transaction is known, else keep them unattached."""
    session = None
    if transaction_ref is not None:
        session = session_for_transaction(charge_point_id=charge_point_id, transaction_ref=transaction_ref)
    meter_samples_record(
        charge_point_id=charge_point_id,
        evse_id=evse_id,
        session=session,
        samples=samples,
        received_at=received_at,
    )
    if session is not None:
        driver_services.driver_session_charging_updated(charging=session)


@transaction.atomic
def orphan_stop_resolve(*, orphan_stop: OrphanStop, actor: Any = None, source: str = "admin") -> bool:
    """Mark a stop for an unknown transaction as reviewed. Returns False (and writes nothing) when it
    was already resolved."""
    updated = OrphanStop.objects.filter(pk=orphan_stop.pk, resolved=False).update(resolved=True)
    if updated:
        orphan_stop.resolved = True
        audit_record_create(
            actor=actor,
            action="orphanstop.resolve",
            target=orphan_stop.charge_point,
            source=source,
            detail={"orphan_stop_id": orphan_stop.pk, "transaction_ref": orphan_stop.transaction_ref},
        )
    return bool(updated)


# --- OCPP 2.0.1 TransactionEvent ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventResult:
    session: ChargingSession
    auth: AuthResult | None
    duplicate: bool


def _missing(seq_nos: list[int]) -> list[int]:
    """Sequence numbers missing between 0 and the highest seen (a transaction's events start at 0)."""
    if not seq_nos:
        return []
    seen = set(seq_nos)
    return [n for n in range(0, max(seen)) if n not in seen][:100]


@transaction.atomic
def transaction_event_record(
    *,
    charge_point_id: int,
    transaction_ref: str,
    seq_no: int,
    event_type: str,
    trigger_reason: str,
    timestamp: datetime,
    received_at: datetime,
    evse_id: int | None = None,
    connector_id: int | None = None,
    id_tag: str = "",
    charging_state: str = "",
    stopped_reason: str = "",
    remote_start_id: int | None = None,
    reservation_id: int | None = None,
    offline: bool = False,
    samples: list[Sample] | None = None,
    payload: dict[str, Any] | None = None,
    protocol: str = OcppProtocol.OCPP201,
) -> EventResult:
    """Apply one OCPP 2.0.1 TransactionEvent, in one transaction (the event row, the session's changes,
    the follow-ups of the hooks and, for Ended, the stop commit or roll back together). Events are
    de-duplicated on (charge point, transaction, seqNo) and may arrive late or out of order (offline
    queues): the first event of any type creates the session; a token may arrive in a later event
    (authorised after plug-in); Ended closes it; state is taken from the event with the highest seqNo;
    gaps are tracked and flagged at the end. Idempotent on "applied": a repeated event changes nothing,
    except that a repeated Ended still stops a session that is not stopped (one left open by a failure
    before this was one transaction)."""
    samples = samples or []
    session = (
        ChargingSession.objects.select_for_update(no_key=True)
        .filter(charge_point_id=charge_point_id, transaction_ref=transaction_ref)
        .first()
    )
    if session is None:
        begin = [s for s in samples if s.context == "Transaction.Begin"] or samples
        meter_start = energy_register_wh(begin)
        session = session_start(
            charge_point_id=charge_point_id,
            evse_id=evse_id or 1,
            connector_id=connector_id or 1,
            id_tag=id_tag,
            meter_start_wh=meter_start if meter_start is not None else 0,
            started_at_charger=timestamp,
            received_at=received_at,
            protocol=protocol,
            reservation_id=reservation_id,
            transaction_ref=transaction_ref,
        ).session
    session = ChargingSession.objects.select_for_update(no_key=True).get(pk=session.pk)
    auth, applied = _transaction_event_apply(
        session=session,
        charge_point_id=charge_point_id,
        transaction_ref=transaction_ref,
        seq_no=seq_no,
        event_type=event_type,
        trigger_reason=trigger_reason,
        timestamp=timestamp,
        received_at=received_at,
        id_tag=id_tag,
        charging_state=charging_state,
        stopped_reason=stopped_reason,
        remote_start_id=remote_start_id,
        offline=offline,
        samples=samples,
        payload=payload,
    )
    if event_type == "Ended" and session.status != SessionStatus.COMPLETED:
        end = [s for s in samples if s.context == "Transaction.End"] or samples
        meter_stop = energy_register_wh(end)
        if meter_stop is None:
            meter_stop = _last_register_wh(session)
        result = session_stop(
            charge_point_id=charge_point_id,
            transaction_ref=transaction_ref,
            meter_stop_wh=meter_stop,
            stopped_at_charger=timestamp,
            received_at=received_at,
            reason=stopped_reason or "Local",
            id_tag=session.stop_id_tag,
        )
        session = result.session or session
    elif event_type == "Ended" and applied:
        late_stop_record(session=session, payload=payload or {}, received_at=received_at)
    return EventResult(session, auth, duplicate=not applied)


def _transaction_event_apply(
    *,
    session: ChargingSession,
    charge_point_id: int,
    transaction_ref: str,
    seq_no: int,
    event_type: str,
    trigger_reason: str,
    timestamp: datetime,
    received_at: datetime,
    id_tag: str,
    charging_state: str,
    stopped_reason: str,
    remote_start_id: int | None,
    offline: bool,
    samples: list[Sample],
    payload: dict[str, Any] | None,
) -> tuple[AuthResult | None, bool]:
    """Record the event and apply it to the locked session (the caller's transaction). Returns the
    token's status (or None) and whether the event was new (False: it was applied before)."""
    cp = ChargePoint.objects.get(pk=charge_point_id)
    _event, created = TransactionEvent.objects.get_or_create(
        charge_point_id=charge_point_id,
        transaction_ref=transaction_ref,
        seq_no=seq_no,
        defaults={
            "session": session,
            "event_type": event_type,
            "trigger_reason": trigger_reason[:32],
            "timestamp": timestamp,
            "received_at": received_at,
            "offline": offline,
            "payload": payload or {},
        },
    )
    # A token in an Ended or StopAuthorized event is presented to stop the transaction.
    stopping = event_type == "Ended" or trigger_reason == "StopAuthorized"
    auth = None
    if id_tag:
        auth = idtoken_authorize(
            uid=id_tag,
            charge_point=cp,
            at=received_at,
            exclude_session_id=session.pk,
            to_start=not stopping,
        )
    if not created:
        return auth, False
    changed: set[str] = set()
    previous_state = session.charging_state
    driver_known = False
    if id_tag and stopping:
        session.stop_id_tag = id_tag.strip().upper()[:36]
        changed.add("stop_id_tag")
    if id_tag and not session.id_tag:
        assert auth is not None
        session.id_tag, session.id_token_id, session.auth_status = (
            id_tag.strip().upper(),
            auth.token_id,
            auth.status,
        )
        if not auth.known:
            session.review_reason = session.review_reason or ReviewReason.UNKNOWN_TOKEN
        elif auth.status != AuthorizationStatus.ACCEPTED:
            session.review_reason = session.review_reason or ReviewReason.TOKEN_NOT_ACCEPTED
        changed |= {"id_tag", "id_token", "auth_status", "review_reason"}
        driver_known = auth.token_id is not None
    if remote_start_id is not None and session.remote_start_id is None:
        session.remote_start_id = remote_start_id
        changed.add("remote_start_id")
    if session.last_seq_no is None or seq_no >= session.last_seq_no:
        session.last_seq_no = seq_no
        if charging_state:
            session.charging_state = charging_state
        changed |= {"last_seq_no", "charging_state"}
    seq_nos = list(TransactionEvent.objects.filter(session=session).values_list("seq_no", flat=True))
    session.missing_seq_nos = _missing(seq_nos)
    changed.add("missing_seq_nos")
    begin_wh = energy_register_wh([s for s in samples if s.context == "Transaction.Begin"])
    if (
        begin_wh is not None
        and begin_wh != session.meter_start_wh
        and not MeterSample.objects.filter(session=session, context="Transaction.Begin").exists()
    ):
        # The start register came after the first event (e.g. the EVSE became known on plug-in).
        session.meter_start_wh = begin_wh
        changed.add("meter_start_wh")
    if samples:
        meter_samples_record(
            charge_point_id=charge_point_id,
            evse_id=session.evse_id,
            session=session,
            samples=samples,
            received_at=received_at,
        )
    ended = (
        event_type == "Ended" or TransactionEvent.objects.filter(session=session, event_type="Ended").exists()
    )
    if ended:  # a gap at the end is worth an operator's look; a late event that fills it clears it
        if session.missing_seq_nos and not session.review_reason:
            session.review_reason = ReviewReason.MISSING_EVENTS
        elif not session.missing_seq_nos and session.review_reason == ReviewReason.MISSING_EVENTS:
            session.review_reason = ReviewReason.NONE
        changed.add("review_reason")
    session.save(update_fields=[*changed, "updated_at"])
    if changed & {"id_tag", "remote_start_id"}:
        driver_services.driver_session_charging_started(charging=session)
    elif event_type == "Updated":
        driver_services.driver_session_charging_updated(charging=session)
    if driver_known and auth is not None:
        hooks.session_driver_known.emit(
            session=session, token_group_id=auth.group_id, customer_account_id=auth.customer_account_id
        )
    hooks.transaction_event_applied.emit(
        session=session,
        at=clamp_charger_time(timestamp, received_at)[0],
        charging_state=charging_state,
        previous_state=previous_state,
        trigger_reason=trigger_reason,
        stopped_reason=stopped_reason,
    )
    return auth, True


def _last_register_wh(session: ChargingSession) -> int:
    last = (
        MeterSample.objects.filter(session=session, measurand=ENERGY_REGISTER, phase="", value__isnull=False)
        .order_by("-sampled_at")
        .values_list("value", flat=True)
        .first()
    )
    return int(last) if last is not None else session.meter_start_wh
