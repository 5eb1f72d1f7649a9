"""Reconciliation of sessions whose stop was lost: a charger's StopTransaction (or 2.0.1 Ended event)
that never arrived would leave the session ACTIVE for ever, and its card refused everywhere (ConcurrentTx).

A periodic task (`sessions_reconcile`) looks at every active session for a sign that it is over, after
its last sign of life (start, meter value, transaction event, or the charger confirming it runs):

- the charger rebooted (a BootNotification received after it): `reconciled_reboot`;
- the connector reported Available or Finishing after it: `reconciled_charger_idle`;
- nothing at all for CPO_SESSION_IDLE_MINUTES: `reconciled_timeout`.

It then asks the charger where OCPP lets it (`charger_control.transaction_probe`: 2.x GetTransactionStatus,
1.6 TriggerMessage MeterValues and StatusNotification). A charger that says the transaction runs, or
shows it (a triggered meter value of the transaction), keeps it open; one that says it ended gets it
closed at once. Otherwise the session is closed CPO_SESSION_PROBE_WAIT_MINUTES after the question, when
there is evidence (reboot, connector free) or the charger took the question; a charger that could not be
asked (offline, refused, no answer) only after CPO_SESSION_OFFLINE_CLOSE_MINUTES without a sign of life.

Closing goes through the normal stop (`services.session_stop`: priced, receipted, the driver told) at the
last known meter reading and its time, flags the session for review and is audited. An operator may also
force-close an active session (`session_force_close`). The charger's own stop arriving later is linked
to the session as evidence and flags it again; it never makes a second charge detail record
(`services.session_stop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from apps.accounts.services import audit_record_create
from apps.charging import services
from apps.charging.choices import ClosedBy, ProbeOutcome, ReviewReason, SessionStatus
from apps.charging.intents import ProbeAnswer, charger_control
from apps.charging.metering import ENERGY_REGISTER
from apps.charging.models import ChargingSession, MeterSample, TransactionEvent
from apps.stations.choices import ConnectorStatus
from apps.stations.models import Connector
from cpo import clock
from cpo.exceptions import ApplicationError

# What a connector reports once no transaction runs on it any more.
IDLE_STATUSES = frozenset({ConnectorStatus.AVAILABLE, ConnectorStatus.FINISHING})
# What a connector reports only while a transaction runs on it (OCPP 1.6; 2.0.1's Occupied is also a car
# still plugged in after the end, so it proves nothing).
IN_TRANSACTION_STATUSES = frozenset(
    {ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE}
)


@dataclass(frozen=True, slots=True)
class Limits:
    """How long reconciliation waits: without a sign of life before it asks (`idle`), for the charger's
    answer (`probe_wait`), and for a charger that cannot be asked (`offline`)."""

    idle: timedelta
    probe_wait: timedelta
    offline: timedelta


def limits() -> Limits:
    return Limits(
        idle=timedelta(minutes=settings.CPO_SESSION_IDLE_MINUTES),
        probe_wait=timedelta(minutes=settings.CPO_SESSION_PROBE_WAIT_MINUTES),
        offline=timedelta(minutes=settings.CPO_SESSION_OFFLINE_CLOSE_MINUTES),
    )


def _connectors(session: ChargingSession) -> Any:
    connectors = Connector.objects.filter(
        evse__charge_point_id=session.charge_point_id, evse__evse_id=session.evse_id
    )
    if session.connector_id is not None:
        connectors = connectors.filter(pk=session.connector_id)
    return connectors


def session_last_sign_of_life(*, session: ChargingSession) -> datetime:
    """When we last heard of the session's transaction (our receive times, never the charger's clock): its
    start, a meter value or event of it, the charger confirming it runs, or its connector reporting a
    state only a transaction has (e.g. Charging, as a triggered StatusNotification does)."""
    times = [session.start_received_at, session.alive_confirmed_at]
    times.append(MeterSample.objects.filter(session=session).aggregate(at=Max("received_at"))["at"])
    times.append(TransactionEvent.objects.filter(session=session).aggregate(at=Max("received_at"))["at"])
    times.append(
        _connectors(session)
        .filter(status__in=IN_TRANSACTION_STATUSES)
        .aggregate(at=Max("status_received_at"))["at"]
    )
    return max(t for t in times if t is not None)


def session_evidence(*, session: ChargingSession, last_life: datetime, now: datetime) -> ClosedBy | None:
    """Why the session may be over (the strongest sign first), or None when nothing says so."""
    charge_point = session.charge_point
    if charge_point.last_boot_at is not None and charge_point.last_boot_at > last_life:
        return ClosedBy.REBOOT
    if _connectors(session).filter(status__in=IDLE_STATUSES, status_received_at__gt=last_life).exists():
        return ClosedBy.CHARGER_IDLE
    if now - last_life >= limits().idle:
        return ClosedBy.TIMEOUT
    return None


def _last_reading(session: ChargingSession) -> tuple[int, datetime]:
    """The last known meter reading of the session and its time (the start's when there is none)."""
    last = (
        MeterSample.objects.filter(session=session, measurand=ENERGY_REGISTER, phase="", value__isnull=False)
        .order_by("-sampled_at", "-pk")
        .values_list("value", "sampled_at")
        .first()
    )
    if last is None or last[0] is None:
        return session.meter_start_wh, session.started_at_charger
    return int(last[0]), last[1]


def _close(*, session: ChargingSession, reason: ClosedBy, actor: Any, source: str) -> ChargingSession:
    """Stop the locked session through the normal stop at its last known reading (caller's transaction)."""
    last_life = session_last_sign_of_life(session=session)
    meter_stop_wh, at = _last_reading(session)
    result = services.session_stop(
        charge_point_id=session.charge_point_id,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=meter_stop_wh,
        stopped_at_charger=at,
        received_at=clock.now(),
        reason=reason,
    )
    closed = result.session
    assert closed is not None
    if reason != ClosedBy.OPERATOR and closed.review_reason in (ReviewReason.NONE, ReviewReason.RECONCILED):
        closed.review_reason = ReviewReason.RECONCILED
        closed.save(update_fields=["review_reason", "updated_at"])
    audit_record_create(
        actor=actor,
        action="chargingsession.force_close" if reason == ClosedBy.OPERATOR else "chargingsession.reconcile",
        target=closed,
        source=source,
        detail={
            "reason": str(reason),
            "meter_stop_wh": meter_stop_wh,
            "stopped_at": closed.stopped_at.isoformat() if closed.stopped_at else None,
            "last_sign_of_life": last_life.isoformat(),
            "charger_asked_at": session.probe_sent_at.isoformat() if session.probe_sent_at else None,
        },
    )
    return closed


def _locked_active(**filters: Any) -> ChargingSession | None:
    return (
        ChargingSession.objects.select_for_update(no_key=True, of=("self",))
        .select_related("charge_point")
        .filter(status=SessionStatus.ACTIVE, **filters)
        .first()
    )


def _probe(session: ChargingSession) -> None:
    """Ask the charger about the session (the commands leave on commit) and remember the question."""
    session.probe_sent_at = clock.now()
    session.probe_outcome = ProbeOutcome.WAITING
    session.probe_command_id = None
    try:
        sent = charger_control.get().transaction_probe(session=session, actor=None, source="reconcile")
    except ApplicationError:  # e.g. a charger whose protocol we cannot send to: it cannot be asked
        sent = []
    if sent:
        session.probe_command_id = sent[0].command_id
    if not sent or sent[0].offline:
        session.probe_outcome = ProbeOutcome.UNANSWERED
    session.save(update_fields=["probe_sent_at", "probe_outcome", "probe_command_id", "updated_at"])


@transaction.atomic
def session_reconcile(*, session_id: int, now: datetime | None = None) -> str:
    """Look at one session at `now` (default: the clock's; tests pass a later time to play time forward;
    what happens, such as a question sent, is recorded at the clock's time like every receive time).
    Returns "open", "asked" or "closed". Idempotent; a session another process holds is skipped."""
    now = now or clock.now()
    session = (
        ChargingSession.objects.select_for_update(no_key=True, of=("self",), skip_locked=True)
        .select_related("charge_point")
        .filter(pk=session_id, status=SessionStatus.ACTIVE)
        .first()
    )
    if session is None:
        return "open"
    last_life = session_last_sign_of_life(session=session)
    evidence = session_evidence(session=session, last_life=last_life, now=now)
    if evidence is None:
        return "open"
    if session.probe_sent_at is None or session.probe_sent_at <= last_life:
        _probe(session)
        return "asked"
    wait = limits()
    if now - session.probe_sent_at < wait.probe_wait:
        return "open"
    could_not_ask = session.probe_outcome == ProbeOutcome.UNANSWERED or (
        evidence == ClosedBy.TIMEOUT and session.probe_outcome != ProbeOutcome.ANSWERED
    )
    if could_not_ask and now - last_life < wait.offline:
        return "open"
    _close(session=session, reason=evidence, actor=None, source="reconcile")
    return "closed"


def sessions_reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Reconcile every active session (each in its own transaction); counts by result."""
    now = now or clock.now()
    counts = {"open": 0, "asked": 0, "closed": 0}
    ids = list(
        ChargingSession.objects.filter(status=SessionStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for session_id in ids:
        counts[session_reconcile(session_id=session_id, now=now)] += 1
    return counts


@transaction.atomic
def session_probe_finished(*, answer: ProbeAnswer) -> None:
    """The charger's answer to reconciliation's question (called by the gateway for every final outcome of
    the commands it may send; one that is no session's question changes nothing). Runs, or shows, the
    transaction: the session stays open. Says it ended: the session is closed now."""
    session = _locked_active(charge_point_id=answer.charge_point_id, probe_command_id=answer.command_id)
    if session is None:
        return
    if not answer.answered:
        session.probe_outcome = ProbeOutcome.UNANSWERED
        session.save(update_fields=["probe_outcome", "updated_at"])
        return
    session.probe_outcome = ProbeOutcome.ANSWERED
    if answer.ongoing or answer.queued:
        # Running, or its messages are on their way (the stop among them, perhaps): a sign of life.
        session.alive_confirmed_at = clock.now()
        session.save(update_fields=["probe_outcome", "alive_confirmed_at", "updated_at"])
        return
    session.save(update_fields=["probe_outcome", "updated_at"])
    if answer.ongoing is False:
        last_life = session_last_sign_of_life(session=session)
        evidence = session_evidence(session=session, last_life=last_life, now=clock.now())
        # The question was asked for a reason: without a reboot or a free connector, it was the silence.
        reason = evidence if evidence in (ClosedBy.REBOOT, ClosedBy.CHARGER_IDLE) else ClosedBy.TIMEOUT
        _close(session=session, reason=reason, actor=None, source="reconcile")


@transaction.atomic
def session_force_close(*, session: ChargingSession, actor: Any, source: str = "admin") -> bool:
    """An operator closes an active session whose stop never came (audited), at its last known reading.
    Returns False (and writes nothing) when it is not active any more."""
    locked = _locked_active(pk=session.pk)
    if locked is None:
        return False
    _close(session=locked, reason=ClosedBy.OPERATOR, actor=actor, source=source)
    return True


@transaction.atomic
def session_review_done(*, session: ChargingSession, actor: Any, source: str = "admin") -> bool:
    """Mark a session flagged for review as reviewed (audited). False when it was not flagged."""
    locked = ChargingSession.objects.select_for_update(no_key=True).filter(pk=session.pk).first()
    if locked is None or not locked.review_reason:
        return False
    reason = locked.review_reason
    locked.review_reason = ReviewReason.NONE
    locked.save(update_fields=["review_reason", "updated_at"])
    audit_record_create(
        actor=actor,
        action="chargingsession.review_done",
        target=locked,
        source=source,
        detail={"review_reason": reason},
    )
    return True
