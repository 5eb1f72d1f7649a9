"""Writes: the tariff snapshot a session takes when it starts, what the car did (charging, parking,
left), and charge detail records (issue, credit, re-issue).

The `session_*` functions are receivers of the charging and station hooks (wired in
TariffsConfig.ready()), called inside those services' transactions; they are cheap (a handful of indexed
queries) because they run while a charger waits for its answer.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from apps.accounts.services import audit_record_create
from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.stations.models import ChargePoint
from apps.tariffs import (  # tasks imports this module too: use it by attribute
    hooks,
    pricing,
    selectors,
    tasks,
)
from apps.tariffs.choices import ActivityState, CdrKind, PricingNote
from apps.tariffs.models import ChargeDetailRecord, ReceiptCounter, SessionActivity, SessionTariff, Tariff
from cpo import clock
from cpo.exceptions import Conflict

logger = logging.getLogger(__name__)

# OCPP 1.6 ChargePointStatus / 2.0.1 ConnectorStatus → what the car does from then on
STATUS_PARKING = frozenset({"SuspendedEV", "Finishing"})
STATUS_CHARGING = frozenset({"Charging"})
STATUS_DEPARTED = frozenset({"Available"})
# OCPP 2.0.1 chargingState
CHARGING_STATE_PARKING = frozenset({"SuspendedEV", "EVConnected", "Idle"})
CHARGING_STATE_CHARGING = frozenset({"Charging"})
# OCPP 2.0.1 triggerReason / stoppedReason meaning the car has gone (or its cable was unplugged)
DEPARTURE_TRIGGERS = frozenset({"EVDeparted", "EVCommunicationLost"})
DEPARTURE_STOP_REASONS = frozenset({"EVDisconnected"})


# --- the snapshot --------------------------------------------------------------------------------


def session_tariff_snapshot(
    *,
    session: ChargingSession,
    charge_point: ChargePoint,
    token_group_id: str = "",
    customer_account_id: int | None = None,
    replace: bool = False,
) -> SessionTariff | None:
    """Freeze the tariff in force for this session at its start (the caller's transaction). Returns
    None when no tariff applies. With `replace`, a snapshot taken before the driver was known is taken
    again for the driver (OCPP 2.0.1: the token may come after the cable)."""
    place = selectors.place_for(charge_point=charge_point, connector_id=session.connector_id)
    found = selectors.tariff_for_place(
        place=place,
        at=session.started_at,
        token_group_id=token_group_id,
        customer_account_id=customer_account_id,
    )
    if found is None:
        return None
    tariff, spec = found
    fields = {
        "organisation_id": session.organisation_id,
        "tariff": tariff,
        "charge_point_id": session.charge_point_id,
        "evse_id": session.evse_id,
        "currency": spec.currency,
        "spec": spec.to_dict(),
        "prices_parking": any(e.parking is not None for e in spec.elements),
    }
    if replace:
        snapshot, _created = SessionTariff.objects.update_or_create(session=session, defaults=fields)
        return snapshot
    return SessionTariff.objects.create(session=session, **fields)


def session_tariff_on_start(
    *,
    session: ChargingSession,
    charge_point: ChargePoint,
    token_group_id: str,
    customer_account_id: int | None,
) -> None:
    """A session started (charging.hooks.session_started): freeze the tariff in force now with it."""
    session_tariff_snapshot(
        session=session,
        charge_point=charge_point,
        token_group_id=token_group_id,
        customer_account_id=customer_account_id,
    )


def session_tariff_driver_known(
    *, session: ChargingSession, token_group_id: str, customer_account_id: int | None
) -> None:
    """The driver of a session that started without a token is now known: take the snapshot again if a
    driver-specific tariff applies to them (still the one in force when the session started)."""
    if not token_group_id and customer_account_id is None:
        return
    session_tariff_snapshot(
        session=session,
        charge_point=session.charge_point,
        token_group_id=token_group_id,
        customer_account_id=customer_account_id,
        replace=True,
    )


# --- what the car does ---------------------------------------------------------------------------


def _open_snapshots(*, charge_point_id: int, evse_id: int, at: datetime) -> list[tuple[int, int]]:
    """(snapshot pk, session pk) of sessions on this EVSE whose car has not been reported leaving."""
    return list(
        SessionTariff.objects.filter(
            charge_point_id=charge_point_id,
            evse_id=evse_id,
            departed_at__isnull=True,
            session__started_at__lte=at,
        ).values_list("pk", "session_id")
    )


def _record(session_ids: list[int], at: datetime, state: str, source: str) -> None:
    SessionActivity.objects.bulk_create(
        [SessionActivity(session_id=pk, at=at, state=state, source=source[:32]) for pk in session_ids],
        ignore_conflicts=True,
    )


def session_activity_from_status(*, charge_point_id: int, evse_id: int, status: str, at: datetime) -> None:
    """A connector status report (1.6 or 2.0.1) for a session on that EVSE: SuspendedEV / Finishing start
    parking, Charging ends it, Available means the car has left. One query for other statuses: none."""
    if status not in STATUS_PARKING | STATUS_CHARGING | STATUS_DEPARTED or evse_id < 1:
        return
    open_ = _open_snapshots(charge_point_id=charge_point_id, evse_id=evse_id, at=at)
    if not open_:
        return
    if status in STATUS_DEPARTED:
        _departed([pk for pk, _s in open_], at)
        return
    state = ActivityState.PARKING if status in STATUS_PARKING else ActivityState.CHARGING
    _record([s for _pk, s in open_], at, state, f"status:{status}")


def session_activity_from_event(
    *,
    session: ChargingSession,
    at: datetime,
    charging_state: str,
    previous_state: str,
    trigger_reason: str,
    stopped_reason: str,
) -> None:
    """An OCPP 2.0.1 TransactionEvent: a change of chargingState starts or ends parking; EVDeparted,
    a lost EV connection or stoppedReason EVDisconnected mean the car has left. Writes only on a change."""
    departed = trigger_reason in DEPARTURE_TRIGGERS or stopped_reason in DEPARTURE_STOP_REASONS
    if charging_state and charging_state != previous_state:
        state = (
            ActivityState.PARKING
            if charging_state in CHARGING_STATE_PARKING
            else ActivityState.CHARGING
            if charging_state in CHARGING_STATE_CHARGING
            else None
        )
        if state is not None:
            if not SessionTariff.objects.filter(session_id=session.pk).exists():
                return
            _record([session.pk], at, state, f"chargingState:{charging_state}")
    if departed:
        pks = list(
            SessionTariff.objects.filter(session_id=session.pk, departed_at__isnull=True).values_list(
                "pk", flat=True
            )
        )
        # an active session gets its CDR task when it stops (session_tariff_on_stop)
        _departed(pks, at, dispatch=session.status == SessionStatus.COMPLETED)


def _departed(snapshot_pks: list[int], at: datetime, *, dispatch: bool = True) -> None:
    if not snapshot_pks:
        return
    SessionTariff.objects.filter(pk__in=snapshot_pks, departed_at__isnull=True).update(departed_at=at)
    if not dispatch:
        return
    for session_id in SessionTariff.objects.filter(pk__in=snapshot_pks).values_list("session_id", flat=True):
        _dispatch_cdr(session_id)


def session_tariff_on_stop(*, session: ChargingSession, reason: str) -> None:
    """The transaction ended (caller's transaction). With 1.6 the car may stay and park until the
    connector is Available; a stop because the EV was disconnected means it has left. The CDR task is
    dispatched on commit when nothing more can change the price (at once for a session without a
    tariff: it is free, and its CDR says so)."""
    snapshot = (
        SessionTariff.objects.filter(session_id=session.pk)
        .values("pk", "departed_at", "prices_parking")
        .first()
    )
    if snapshot is None:
        _dispatch_cdr(session.pk)
        return
    departed = snapshot["departed_at"] is not None
    if not departed and reason in DEPARTURE_STOP_REASONS:
        SessionTariff.objects.filter(pk=snapshot["pk"], departed_at__isnull=True).update(
            departed_at=session.stopped_at
        )
        departed = True
    if departed or not snapshot["prices_parking"]:
        _dispatch_cdr(session.pk)


def session_tariff_reservation(*, session_id: int, started_at: datetime, ended_at: datetime) -> bool:
    """The session started on a reservation made at `started_at` (the caller's transaction, before its
    record is issued): the tariff's reservation elements price [started_at, ended_at] in the session's
    record. False when the session has no tariff (it is free) or its record is issued already."""
    if ChargeDetailRecord.objects.filter(session_id=session_id).exists():
        return False
    updated = SessionTariff.objects.filter(session_id=session_id).update(
        reservation_started_at=started_at, reservation_ended_at=max(started_at, ended_at)
    )
    return bool(updated)


def _dispatch_cdr(session_id: int) -> None:
    def send() -> None:
        tasks.cdr_issue_task.delay(session_id)

    # robust: a broker that does not answer must never fail the charger's message; the sweep catches up
    transaction.on_commit(send, robust=True)


# --- charge detail records -------------------------------------------------------------------------


def receipt_number_next(*, organisation_id: int, at: datetime) -> str:
    """The next receipt number of an operator: "<invoice prefix>-<year>-<sequence>", the sequence
    counted per operator and year (UTC) of `at`. Call it in the transaction that issues the record: the
    operator's counter row stays locked until that commits, and a rollback gives the number back."""
    year = at.astimezone(UTC).year
    ReceiptCounter.objects.bulk_create(
        [ReceiptCounter(organisation_id=organisation_id, year=year)], ignore_conflicts=True
    )
    counter = (
        ReceiptCounter.objects.select_for_update(no_key=True)
        .select_related("organisation")
        .get(organisation_id=organisation_id, year=year)
    )
    number = counter.last_number + 1
    ReceiptCounter.objects.filter(pk=counter.pk).update(last_number=number)
    return f"{counter.organisation.invoice_prefix}-{year}-{number:06d}"


def free_tariff_spec(*, session: ChargingSession) -> pricing.TariffSpec:
    """What a session without a tariff in force is priced under: nothing (no elements), in the
    currency of the operator's latest tariff (EUR when it has none) and the location's time zone."""
    latest = (
        Tariff.objects.filter(organisation_id=session.organisation_id)
        .order_by("-updated_at", "-pk")
        .values_list("currency", flat=True)
        .first()
    )
    currency = str(latest or settings.CPO_TARIFFS_FREE_CURRENCY)
    location = session.charge_point.location
    return pricing.TariffSpec(
        currency=currency, time_zone=location.time_zone if location is not None else "UTC", elements=()
    )


def _cdr_create(
    *,
    session: ChargingSession,
    tariff_id: int | None,
    spec: dict[str, Any],
    breakdown: pricing.PriceBreakdown,
    usage: pricing.SessionUsage,
    kind: str = CdrKind.CDR,
    revision: int = 0,
    credits: ChargeDetailRecord | None = None,
    reason: str = "",
    pricing_note: str = PricingNote.NONE,
    issued_at: datetime | None = None,
) -> ChargeDetailRecord:
    sign = -1 if kind == CdrKind.CREDIT else 1
    issued_at = issued_at or clock.now()
    cdr = ChargeDetailRecord.objects.create(
        organisation_id=session.organisation_id,
        session=session,
        kind=kind,
        revision=revision,
        credits=credits,
        number=receipt_number_next(organisation_id=session.organisation_id, at=issued_at),
        reason=reason[:200],
        pricing_note=pricing_note,
        tariff_id=tariff_id,
        charge_point_id=session.charge_point_id,
        evse_id=session.evse_id,
        id_tag=session.id_tag,
        currency=breakdown.currency,
        started_at=usage.start,
        stopped_at=session.stopped_at or usage.end,
        ended_at=usage.end,
        energy_wh=int(breakdown.energy_wh),
        charging_seconds=int(breakdown.charging_seconds),
        parking_seconds=int(breakdown.parking_seconds),
        net=sign * breakdown.net,
        tax=sign * breakdown.tax,
        gross=sign * breakdown.gross,
        breakdown=breakdown.as_dict(),
        tariff_spec=spec,
        issued_at=issued_at,
    )
    hooks.cdr_issued.emit(cdr=cdr)  # e.g. roaming: push a roaming session's record to its eMSP
    return cdr


def _stale(session: ChargingSession, now: datetime) -> bool:
    hours = getattr(settings, "CPO_TARIFFS_DEPARTURE_TIMEOUT_H", 24)
    return session.stopped_at is not None and now - session.stopped_at >= timedelta(hours=hours)


@transaction.atomic
def cdr_issue(*, session_id: int, now: datetime | None = None) -> ChargeDetailRecord | None:
    """Issue the session's CDR once it is complete: the transaction has ended and the car has left (or
    the tariff does not price parking, or the departure was never reported within
    CPO_TARIFFS_DEPARTURE_TIMEOUT_H: parking then counts only until the transaction ended).
    A session without a tariff in force is free: its CDR states the energy and time at zero cost, with
    the pricing note NO_TARIFF. Idempotent: returns the CDR already issued. None when not complete yet."""
    now = now or clock.now()
    session = ChargingSession.objects.select_for_update(no_key=True).filter(pk=session_id).first()
    if session is None or session.status != SessionStatus.COMPLETED:
        return None
    existing = (
        ChargeDetailRecord.objects.filter(session=session, kind=CdrKind.CDR).order_by("revision").first()
    )
    if existing is not None:
        return existing
    snapshot = SessionTariff.objects.filter(session=session).first()
    if snapshot is None:
        spec = free_tariff_spec(session=session)
        usage = selectors.session_usage(session=session, snapshot=None, until=session.stopped_at)
        return _cdr_create(
            session=session,
            tariff_id=None,
            spec=spec.to_dict(),
            breakdown=pricing.price_session(tariff=spec, usage=usage),
            usage=usage,
            pricing_note=PricingNote.NO_TARIFF,
            issued_at=now,
        )
    until = None
    if snapshot.departed_at is None:
        if snapshot.prices_parking and not _stale(session, now):
            return None
        until = session.stopped_at
    usage = selectors.session_usage(session=session, snapshot=snapshot, until=until)
    breakdown = pricing.price_session(tariff=pricing.TariffSpec.from_dict(snapshot.spec), usage=usage)
    return _cdr_create(
        session=session,
        tariff_id=snapshot.tariff_id,
        spec=snapshot.spec,
        breakdown=breakdown,
        usage=usage,
        issued_at=now,
    )


@transaction.atomic
def cdr_issue_for_reservation(
    *,
    reservation_ref: int,
    charge_point: ChargePoint,
    evse_id: int,
    id_tag: str,
    started_at: datetime,
    ended_at: datetime,
    expired: bool,
    token_group_id: str = "",
    customer_account_id: int | None = None,
    now: datetime | None = None,
) -> ChargeDetailRecord | None:
    """Issue the record of a reservation no charge followed (`expired`: it ran out, a no-show; else it was
    cancelled), priced by the reservation elements (OCPI restrictions.reservation) of the tariff in force
    for the driver when it was made. None when that tariff does not price reservations (or there is no
    tariff, or it costs nothing): such a reservation is free and gets no record. Idempotent on
    `reservation_ref` (returns the record already issued)."""
    existing = (
        ChargeDetailRecord.objects.filter(
            session__isnull=True, reservation_ref=reservation_ref, kind=CdrKind.CDR
        )
        .order_by("revision")
        .first()
    )
    if existing is not None:
        return existing
    place = selectors.place_for(charge_point=charge_point, connector_id=None)
    found = selectors.tariff_for_place(
        place=place, at=started_at, token_group_id=token_group_id, customer_account_id=customer_account_id
    )
    if found is None or not pricing.prices_reservations(found[1]):
        return None
    tariff, spec = found
    ended_at = max(started_at, ended_at)
    breakdown = pricing.price_reservation(
        tariff=spec, usage=pricing.ReservationUsage(start=started_at, end=ended_at, expired=expired)
    )
    if not breakdown.lines:
        return None
    issued_at = now or clock.now()
    return ChargeDetailRecord.objects.create(
        organisation_id=charge_point.organisation_id,
        session=None,
        reservation_ref=reservation_ref,
        kind=CdrKind.CDR,
        number=receipt_number_next(organisation_id=charge_point.organisation_id, at=issued_at),
        tariff=tariff,
        charge_point=charge_point,
        evse_id=evse_id,
        id_tag=id_tag[:36],
        currency=breakdown.currency,
        started_at=started_at,
        stopped_at=ended_at,
        ended_at=ended_at,
        energy_wh=0,
        charging_seconds=0,
        parking_seconds=0,
        net=breakdown.net,
        tax=breakdown.tax,
        gross=breakdown.gross,
        breakdown=breakdown.as_dict(),
        tariff_spec=spec.to_dict(),
        issued_at=issued_at,
    )


@transaction.atomic
def cdr_credit(
    *, cdr: ChargeDetailRecord, reason: str, actor: Any = None, source: str = "admin"
) -> ChargeDetailRecord:
    """Cancel a CDR with a credit record (its amounts negated). A CDR is credited at most once."""
    credit = _cdr_credit_create(cdr=cdr, reason=reason)
    audit_record_create(
        actor=actor,
        action="cdr.credit",
        target=cdr,
        source=source,
        organisation_id=cdr.organisation_id,
        detail={"credit_id": credit.pk, "gross": str(cdr.gross), "reason": reason},
    )
    return credit


def _cdr_credit_create(*, cdr: ChargeDetailRecord, reason: str) -> ChargeDetailRecord:
    """The credit record of `cdr` (unaudited: its caller audits what it did as a whole). Runs in the
    caller's transaction."""
    cdr = ChargeDetailRecord.objects.select_for_update(no_key=True).get(pk=cdr.pk)
    if cdr.kind != CdrKind.CDR:
        raise Conflict(_("A credit cannot be credited."), code="cdr_is_credit")
    if ChargeDetailRecord.objects.filter(credits=cdr).exists():
        raise Conflict(_("This record has already been credited."), code="cdr_already_credited")
    issued_at = clock.now()
    credit = ChargeDetailRecord.objects.create(
        organisation_id=cdr.organisation_id,
        session_id=cdr.session_id,
        reservation_ref=cdr.reservation_ref,
        kind=CdrKind.CREDIT,
        revision=cdr.revision,
        credits=cdr,
        number=receipt_number_next(organisation_id=cdr.organisation_id, at=issued_at),
        reason=(reason or "")[:200],
        pricing_note=cdr.pricing_note,
        tariff_id=cdr.tariff_id,
        charge_point_id=cdr.charge_point_id,
        evse_id=cdr.evse_id,
        id_tag=cdr.id_tag,
        currency=cdr.currency,
        started_at=cdr.started_at,
        stopped_at=cdr.stopped_at,
        ended_at=cdr.ended_at,
        energy_wh=cdr.energy_wh,
        charging_seconds=cdr.charging_seconds,
        parking_seconds=cdr.parking_seconds,
        net=-cdr.net,
        tax=-cdr.tax,
        gross=-cdr.gross,
        breakdown=cdr.breakdown,
        tariff_spec=cdr.tariff_spec,
        issued_at=issued_at,
    )
    hooks.cdr_issued.emit(cdr=credit)
    return credit


@transaction.atomic
def cdr_reissue(
    *, cdr: ChargeDetailRecord, reason: str, actor: Any = None, source: str = "admin"
) -> tuple[ChargeDetailRecord, ChargeDetailRecord]:
    """Correct a CDR: credit it and issue the next revision, priced again from the session as it is
    stored now (e.g. after a meter correction) under the same frozen tariff (a free record stays free).
    One audit record (`cdr.reissue`, naming the record replaced, its credit and the credited amount).
    A reservation's own record (no session) is not re-issued: credit it (cdr_reservation_not_reissued)."""
    if cdr.session_id is None:
        raise Conflict(
            _("A reservation's record is not priced again: credit it instead."),
            code="cdr_reservation_not_reissued",
        )
    credit = _cdr_credit_create(cdr=cdr, reason=reason)
    session = ChargingSession.objects.select_for_update(no_key=True).get(pk=cdr.session_id)
    snapshot = SessionTariff.objects.filter(session=session).first()
    usage = selectors.session_usage(session=session, snapshot=snapshot, until=cdr.ended_at)
    breakdown = pricing.price_session(tariff=pricing.TariffSpec.from_dict(cdr.tariff_spec), usage=usage)
    new = _cdr_create(
        session=session,
        tariff_id=cdr.tariff_id,
        spec=cdr.tariff_spec,
        breakdown=breakdown,
        usage=usage,
        revision=cdr.revision + 1,
        reason=reason,
        pricing_note=cdr.pricing_note,
    )
    audit_record_create(
        actor=actor,
        action="cdr.reissue",
        target=new,
        source=source,
        organisation_id=new.organisation_id,
        detail={"replaces": cdr.pk, "credit_id": credit.pk, "gross": str(cdr.gross), "reason": reason},
    )
    return credit, new


def cdr_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Issue the CDRs of completed sessions that have none yet and are complete (car left, no parking
    price, or departure never reported in time; a session without a tariff at once: free). Returns how
    many were issued."""
    now = now or clock.now()
    timeout = timedelta(hours=getattr(settings, "CPO_TARIFFS_DEPARTURE_TIMEOUT_H", 24))
    candidates = (
        SessionTariff.objects.filter(
            session__status=SessionStatus.COMPLETED, session__charge_detail_records__isnull=True
        )
        .filter(
            Q(departed_at__isnull=False) | Q(prices_parking=False) | Q(session__stopped_at__lte=now - timeout)
        )
        .order_by("session_id")
        .values_list("session_id", flat=True)[:limit]
    )
    free = (
        ChargingSession.objects.filter(
            status=SessionStatus.COMPLETED,
            tariff_snapshot__isnull=True,
            charge_detail_records__isnull=True,
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    issued = 0
    for session_id in sorted({*candidates, *free}):
        try:
            if cdr_issue(session_id=session_id, now=now) is not None:
                issued += 1
        except Exception:  # one bad session must not stop the sweep
            logger.exception("CDR for session %s could not be issued", session_id)
    return issued
