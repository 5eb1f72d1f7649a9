"""Reservations: create (the charger's answer to ReserveNow decides), cancel, expire, consume.

    PENDING ──Accepted──→ RESERVED ──→ CONSUMED (the holder's transaction started there)
       │                     ├──────→ CANCELLED (the driver or an operator; CancelReservation sent)
       │                     └──────→ EXPIRED (expires_at passed: beat, or the charger says so)
       └──refused / offline / no answer──→ FAILED (failure_code)

The reservation's int32 primary key is the OCPP reservation id. The charger is reached through
charging's `charger_control` port; the gateway reports each ReserveNow's final outcome through
`reservation_command_finished` and a 2.x ReservationStatusUpdate through `reservation_status_update`.

- Any connector (`evse_id` ANY_EVSE = 0): OCPP 1.6 ReserveNow connectorId 0, 2.0.1 ReserveNow without
  evseId, only where the charger told us it supports that (ReserveConnectorZeroSupported,
  ReservationCtrlr.NonEvseSpecific). The charger then keeps one connector free for the holder: others may
  take connectors while another one stays free (ReservationsGuard), the holder starts at any of them.
- Hold length: the operator's ReservationSettings (default 15, at most 30 minutes); a driver may ask for
  less (`minutes` or `expires_at`).
- Fees (OCPI reservation restrictions): the holder's charge carries the reservation's time in the
  session's record (tariffs' snapshot); an expired reservation, or one its driver cancelled, gets a record
  of its own where the tariff prices that, charged to the driver's card by billing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from apps.accounts.models import IdToken, User
from apps.billing.tasks import reservation_fee_charge_task
from apps.charging.driver_services import DOWN_STATUSES, driver_app_token
from apps.charging.hooks import ReservationHold
from apps.charging.intents import CommandOutcome, IntentOutcome, charger_control
from apps.charging.models import ChargingSession
from apps.reservations import tasks  # tasks imports this module too: use it by attribute
from apps.reservations.choices import ACTIVE_STATUSES, ReservationStatus
from apps.reservations.models import ANY_EVSE, HOLD_LIMIT_MIN, Reservation, ReservationSettings
from apps.smartcharging.configuration import configuration_value, device_variable_value
from apps.stations.choices import ConnectorStatus, OcppProtocol, RegistrationStatus
from apps.stations.models import ChargePoint, Connector, Evse
from apps.tariffs.models import ChargeDetailRecord
from apps.tariffs.services import cdr_issue_for_reservation, session_tariff_reservation
from cpo import clock
from cpo.exceptions import Conflict, NotFound, ValidationFailed

R = ReservationStatus
# The charger's ReserveNow answers other than Accepted, as the API's codes.
REFUSAL_CODES = {
    "Occupied": "connector_occupied",
    "Faulted": "connector_faulted",
    "Unavailable": "connector_unavailable",
    "Rejected": "reservation_rejected",
}
FAILURE_OFFLINE = "charger_offline"
FAILURE_NO_ANSWER = "charger_no_answer"
# Connector states we refuse a reservation in without asking the charger.
_BUSY = frozenset(
    {
        ConnectorStatus.CHARGING,
        ConnectorStatus.SUSPENDED_EV,
        ConnectorStatus.SUSPENDED_EVSE,
        ConnectorStatus.FINISHING,
        ConnectorStatus.RESERVED,
    }
)


def default_minutes() -> int:
    return int(getattr(settings, "CPO_RESERVATION_DEFAULT_MIN", 15))


def max_minutes() -> int:
    return int(getattr(settings, "CPO_RESERVATION_MAX_MIN", 30))


def hold_minutes(*, organisation_id: int) -> tuple[int, int]:
    """(default, longest) hold in minutes on an operator's chargers: its ReservationSettings, else the
    CPO_RESERVATION_DEFAULT_MIN / CPO_RESERVATION_MAX_MIN settings; never over HOLD_LIMIT_MIN."""
    row = (
        ReservationSettings.objects.filter(organisation_id=organisation_id)
        .values_list("default_minutes", "max_minutes")
        .first()
    )
    default, longest = row if row is not None else (default_minutes(), max_minutes())
    longest = max(1, min(longest, HOLD_LIMIT_MIN))
    return max(1, min(default, longest)), longest


def hold_until(
    *, organisation_id: int, now: datetime, minutes: int | None = None, expires_at: datetime | None = None
) -> datetime:
    """When a hold asked for at `now` ends: `minutes` from now, or at `expires_at`, or the operator's
    default; a driver may ask for less than the longest hold, never more. Errors: validation_failed
    (400) naming `minutes` or `expires_at`."""
    default, longest = hold_minutes(organisation_id=organisation_id)
    if minutes is not None and expires_at is not None:
        raise ValidationFailed(
            _("Send minutes or expires_at, not both."),
            fields={"expires_at": [_("Not with minutes.")]},
        )
    if expires_at is not None:
        if expires_at.tzinfo is None or expires_at.utcoffset() is None:
            raise ValidationFailed(
                _("expires_at needs a time zone (e.g. Z)."), fields={"expires_at": [_("No time zone.")]}
            )
        held = expires_at - now
        if held < timedelta(minutes=1) or held > timedelta(minutes=longest):
            raise ValidationFailed(
                _("A reservation lasts 1 to {max} minutes from now.").format(max=longest),
                fields={"expires_at": [_("Out of range.")]},
            )
        return expires_at.replace(microsecond=0)
    minutes = default if minutes is None else minutes
    if not 1 <= minutes <= longest:
        raise ValidationFailed(
            _("A reservation lasts 1 to {max} minutes.").format(max=longest),
            fields={"minutes": [_("Out of range.")]},
        )
    return now + timedelta(minutes=minutes)


def any_connector_supported(*, charge_point: ChargePoint) -> bool:
    """Whether the charger told us it takes a reservation for any of its connectors: OCPP 1.6
    ReserveConnectorZeroSupported, OCPP 2.x ReservationCtrlr.NonEvseSpecific (unknown: no)."""
    if charge_point.ocpp_protocol == OcppProtocol.OCPP16:
        value = configuration_value(charge_point_id=charge_point.pk, key="ReserveConnectorZeroSupported")
    else:
        value = device_variable_value(
            charge_point_id=charge_point.pk, component="ReservationCtrlr", variable="NonEvseSpecific"
        )
    return (value or "").strip().casefold() == "true"


def free_evses(*, charge_point_id: int, at: datetime) -> set[int]:
    """The EVSEs of a charger where a new charge could begin now: a connector Available, no transaction
    running there, no active reservation of that EVSE."""
    available = set(
        Connector.objects.filter(
            evse__charge_point_id=charge_point_id, status=ConnectorStatus.AVAILABLE
        ).values_list("evse__evse_id", flat=True)
    )
    running = set(
        ChargingSession.objects.filter(charge_point_id=charge_point_id, status="ACTIVE").values_list(
            "evse_id", flat=True
        )
    )
    held = set(
        Reservation.objects.filter(
            charge_point_id=charge_point_id, status__in=ACTIVE_STATUSES, expires_at__gt=at
        )
        .exclude(evse_id=ANY_EVSE)
        .values_list("evse_id", flat=True)
    )
    return available - running - held - {ANY_EVSE}


def _fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _charge_point(charge_point_id: Any) -> ChargePoint:
    cp = ChargePoint.objects.filter(
        pk=charge_point_id, location__is_published=True, registration_status=RegistrationStatus.ACCEPTED
    ).first()
    if cp is None:
        raise NotFound(
            _("No charger with id {id}.").format(id=charge_point_id),
            code="charger_not_found",
            fields={"charge_point": [_("No such charger.")]},
        )
    return cp


def _existing_for_key(driver: User, key: str, fingerprint: str) -> Reservation | None:
    existing = Reservation.objects.filter(driver=driver, idempotency_key=key).first()
    if existing is not None and existing.request_hash != fingerprint:
        raise Conflict(
            _("This Idempotency-Key was used for a different request."),
            code="idempotency_key_reused",
            fields={"Idempotency-Key": [_("Already used with other parameters.")]},
        )
    return existing


def _check_connector(cp: ChargePoint, evse_id: int) -> None:
    statuses = set(
        Connector.objects.filter(evse__charge_point=cp, evse__evse_id=evse_id).values_list(
            "status", flat=True
        )
    )
    if statuses and statuses <= {ConnectorStatus.FAULTED}:
        raise Conflict(_("Connector {no} is faulted.").format(no=evse_id), code="connector_faulted")
    if statuses and statuses <= DOWN_STATUSES:
        raise Conflict(_("Connector {no} is unavailable.").format(no=evse_id), code="connector_unavailable")
    if (
        statuses & _BUSY
        or ChargingSession.objects.filter(charge_point=cp, evse_id=evse_id, status="ACTIVE").exists()
    ):
        raise Conflict(_("Connector {no} is in use.").format(no=evse_id), code="connector_occupied")


class _Taken(Exception):
    def __init__(self, constraint: str) -> None:
        self.constraint = constraint


def _lock_evses(cp: ChargePoint) -> set[int]:
    """Lock every EVSE row of the charger, in pk order (one reservation decision at a time per charger:
    a reservation for any connector depends on all of them); returns their numbers."""
    return set(
        Evse.objects.select_for_update(no_key=True)
        .filter(charge_point=cp)
        .order_by("pk")
        .values_list("evse_id", flat=True)
    )


def _check_any_connector(cp: ChargePoint, now: datetime) -> None:
    if not any_connector_supported(charge_point=cp):
        raise Conflict(
            _("Charger {cp} does not take reservations for any connector: choose one.").format(
                cp=cp.identity
            ),
            code="any_connector_unsupported",
            fields={"connector": [_("Required for this charger.")]},
        )
    if not free_evses(charge_point_id=cp.pk, at=now):
        raise Conflict(
            _("Charger {cp} has no free connector.").format(cp=cp.identity), code="no_free_connector"
        )


def _check_floating_holds(cp: ChargePoint, evse_id: int, now: datetime) -> None:
    """A reservation for any connector of the charger needs one connector left free for its holder: a
    reservation of a specific EVSE that would take the last one is refused."""
    floating = Reservation.objects.filter(
        charge_point=cp, evse_id=ANY_EVSE, status__in=ACTIVE_STATUSES, expires_at__gt=now
    ).exists()
    if floating and not free_evses(charge_point_id=cp.pk, at=now) - {evse_id}:
        raise Conflict(
            _("Connector {no} is reserved for another driver.").format(no=evse_id),
            code="connector_reserved",
            fields={"connector": [_("Reserved.")]},
        )


def reservation_create(
    *,
    driver: User,
    charge_point_id: Any,
    evse_id: int | None,
    idempotency_key: str,
    minutes: int | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
    source: str = "api",
    actor: Any = None,
) -> tuple[Reservation, bool]:
    """Reserve EVSE `evse_id` of a charge point (None: any of its connectors, where the charger supports
    that) for `driver`'s app token, for `minutes` or until `expires_at` (default and longest: the
    operator's hold_minutes); returns (reservation, created). The reservation comes back PENDING with
    ReserveNow handed to the charger on commit (wait for its outcome with `reservation_wait`), or FAILED
    `charger_offline`. The same Idempotency-Key returns the same reservation. No double booking: the
    charger's EVSE rows are locked to order concurrent requests and a partial unique constraint allows
    one active reservation per EVSE and per driver. Errors: idempotency_key_required, validation_failed
    (400), charger_not_found, connector_not_found (404), connector_reserved, reservation_exists,
    connector_occupied, connector_faulted, connector_unavailable, any_connector_unsupported,
    no_free_connector, idempotency_key_reused (409)."""
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValidationFailed(
            _("Send an Idempotency-Key header of 1 to 255 characters."),
            code="idempotency_key_required",
            fields={"Idempotency-Key": [_("Required.")]},
        )
    now = now or clock.now()
    fingerprint = _fingerprint(
        {
            "charge_point": str(charge_point_id),
            "connector": evse_id,
            "minutes": minutes,
            "expires_at": expires_at.isoformat() if expires_at is not None else None,
        }
    )
    cp = _charge_point(charge_point_id)
    token = driver_app_token(driver=driver)
    target = ANY_EVSE if evse_id is None else evse_id
    try:
        with transaction.atomic():
            if target not in _lock_evses(cp) and target != ANY_EVSE:  # locks them all, in order
                raise NotFound(
                    _("Charger {cp} has no connector {no}.").format(cp=cp.identity, no=target),
                    code="connector_not_found",
                    fields={"connector": [_("No such connector.")]},
                )
            existing = _existing_for_key(driver, idempotency_key, fingerprint)
            if existing is not None:
                return existing, False
            until = hold_until(
                organisation_id=cp.organisation_id, now=now, minutes=minutes, expires_at=expires_at
            )
            _expire_due(cp.pk, target, driver.pk, now)
            if Reservation.objects.filter(
                charge_point=cp, evse_id=target, status__in=ACTIVE_STATUSES
            ).exists():
                raise _Taken("reservation_one_active_per_evse")
            if Reservation.objects.filter(driver=driver, status__in=ACTIVE_STATUSES).exists():
                raise _Taken("reservation_one_active_per_driver")
            if target == ANY_EVSE:
                _check_any_connector(cp, now)
            else:
                _check_connector(cp, target)
                _check_floating_holds(cp, target, now)
            reservation = Reservation(
                organisation_id=cp.organisation_id,
                driver=driver,
                charge_point=cp,
                evse_id=target,
                id_token=token,
                id_tag=token.uid,
                expires_at=until,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                created_by=source,
            )
            try:
                with transaction.atomic():
                    reservation.save(force_insert=True)
            except IntegrityError as exc:
                raise _Taken(str(exc)) from None
            _send_reserve(reservation, cp, token, actor=actor or driver, source=source, now=now)
            return reservation, True
    except _Taken as taken:
        existing = _existing_for_key(driver, idempotency_key, fingerprint)
        if existing is not None:  # a concurrent duplicate with the same key committed first
            return existing, False
        if "per_driver" in taken.constraint:
            raise Conflict(_("You already have an active reservation."), code="reservation_exists") from None
        if target == ANY_EVSE:
            raise Conflict(
                _("Charger {cp} has no free connector.").format(cp=cp.identity), code="no_free_connector"
            ) from None
        raise Conflict(
            _("Connector {no} is reserved for another driver.").format(no=target),
            code="connector_reserved",
            fields={"connector": [_("Reserved.")]},
        ) from None


def _send_reserve(
    reservation: Reservation,
    cp: ChargePoint,
    token: IdToken,
    *,
    actor: Any,
    source: str,
    now: datetime,
    token_type: str | None = None,
) -> None:
    """Hand ReserveNow to the charger (on commit); an offline charger fails the reservation at once."""
    sent = charger_control.get().reserve(
        charge_point=cp,
        evse_id=reservation.evse_id,
        id_token=token,
        reservation_id=reservation.pk,
        expires_at=reservation.expires_at,
        actor=actor,
        source=source,
        token_type=token_type,
    )
    reservation.reserve_command_id = sent.command_id
    fields = ["reserve_command_id", "updated_at"]
    if sent.offline:
        reservation.status, reservation.failure_code, reservation.ended_at = R.FAILED, FAILURE_OFFLINE, now
        fields += ["status", "failure_code", "ended_at"]
    reservation.save(update_fields=fields)


def reservation_create_for_token(
    *,
    charge_point: ChargePoint,
    evse_id: int | None,
    uid: str,
    expires_at: datetime,
    actor: Any,
    token_type: str | None = None,
    source: str = "admin",
) -> Reservation:
    """An operator reserves an EVSE (None: any connector, where the charger supports that) for a known
    card or token (`uid`) until `expires_at` (an operator is not bound by the drivers' hold length): the
    reservation id is ours (the new row's), never typed. The charger's answer decides as for a driver's
    reservation (`reservation_command_finished`). Errors: validation_failed (unknown token, a time not in
    the future), connector_not_found (404), connector_reserved, any_connector_unsupported,
    no_free_connector (409)."""
    now = clock.now()
    if expires_at <= now:
        raise ValidationFailed(
            _("The reservation must end in the future."), fields={"expiry_date": [_("Past.")]}
        )
    token = IdToken.objects.filter(uid=uid.strip().upper()).first()
    if token is None:
        raise ValidationFailed(
            _("No token with uid {uid}.").format(uid=uid), fields={"id_tag": [_("Unknown token.")]}
        )
    target = ANY_EVSE if evse_id is None else evse_id
    with transaction.atomic():
        if target not in _lock_evses(charge_point) and target != ANY_EVSE:  # locks them all, in order
            raise NotFound(
                _("Charger {cp} has no connector {no}.").format(cp=charge_point.identity, no=target),
                code="connector_not_found",
                fields={"connector": [_("No such connector.")]},
            )
        _expire_due(charge_point.pk, target, token.owner_id or 0, now)
        if target == ANY_EVSE:
            _check_any_connector(charge_point, now)
        else:
            _check_floating_holds(charge_point, target, now)
        reservation = Reservation(
            organisation_id=charge_point.organisation_id,
            driver_id=token.owner_id,
            charge_point=charge_point,
            evse_id=target,
            id_token=token,
            id_tag=token.uid,
            expires_at=expires_at,
            created_by=source,
        )
        try:
            with transaction.atomic():
                reservation.save(force_insert=True)
        except IntegrityError:
            raise Conflict(
                _("Connector {no} is reserved already (or the token's driver holds a reservation).").format(
                    no=target
                ),
                code="connector_reserved",
            ) from None
        _send_reserve(
            reservation, charge_point, token, actor=actor, source=source, now=now, token_type=token_type
        )
        return reservation


def _expire_due(charge_point_id: int, evse_id: int, driver_id: int, now: datetime) -> None:
    """Expire the reservations past their time that would stand in the way (the beat may not have run)."""
    due = Reservation.objects.filter(status=R.RESERVED, expires_at__lte=now).filter(
        Q(charge_point_id=charge_point_id, evse_id=evse_id) | Q(driver_id=driver_id)
    )
    for pk in due.values_list("pk", flat=True):
        reservation_expire(reservation_id=pk, now=now)


def _locked(pk: int) -> Reservation:
    return Reservation.objects.select_for_update(no_key=True).get(pk=pk)


def _end(
    reservation: Reservation, status: str, *, at: datetime, failure: str = "", fee: bool = False
) -> None:
    """End a locked reservation. An expired one (a no-show), or one its driver cancelled (`fee`), is
    priced after commit where the tariff prices reservations (reservation_fee_issue)."""
    was_held = reservation.status == R.RESERVED
    reservation.status = status
    reservation.ended_at = at
    fields = ["status", "ended_at", "updated_at"]
    if failure:
        reservation.failure_code = failure
        fields.append("failure_code")
    priced = was_held and (status == R.EXPIRED or (status == R.CANCELLED and fee))
    if priced:
        reservation.fee_due = True
        fields.append("fee_due")
    reservation.save(update_fields=fields)
    if priced:
        _dispatch_fee(reservation.pk)


def _dispatch_fee(reservation_id: int) -> None:
    def send() -> None:
        tasks.reservation_fee_task.delay(reservation_id)

    # robust: a broker that does not answer must not undo the reservation's end; the beat's sweep catches up
    transaction.on_commit(send, robust=True)


def reservation_fee_issue(*, reservation_id: int) -> ChargeDetailRecord | None:
    """Price a reservation no charge followed (`fee_due`: an expired one, a no-show, or one its driver
    cancelled). Issues its own charge detail record where the tariff in force for the driver when it was
    made prices reservations (OCPI restrictions.reservation; RESERVATION_EXPIRES only for an expired
    one), then has billing charge it like any record. None when it costs nothing. Idempotent: the
    reservation's row lock orders repeated calls; a priced one returns its record."""
    with transaction.atomic():
        reservation = (
            Reservation.objects.select_for_update(no_key=True, of=("self",))
            .select_related("charge_point", "id_token")
            .filter(pk=reservation_id)
            .first()
        )
        if reservation is None:
            return None
        if not reservation.fee_due:
            return ChargeDetailRecord.objects.filter(
                session__isnull=True, reservation_ref=reservation.pk, kind="CDR"
            ).first()
        token = reservation.id_token
        cdr = cdr_issue_for_reservation(
            reservation_ref=reservation.pk,
            charge_point=reservation.charge_point,
            evse_id=reservation.evse_id,
            id_tag=reservation.id_tag,
            started_at=reservation.created_at,
            ended_at=reservation.ended_at or reservation.expires_at,
            expired=reservation.status == R.EXPIRED,
            token_group_id=token.group_id if token is not None else "",
            customer_account_id=token.customer_account_id if token is not None else None,
        )
        reservation.fee_due = False
        reservation.save(update_fields=["fee_due", "updated_at"])
        driver_id = reservation.driver_id
        if cdr is not None and driver_id is not None:
            record_id = cdr.pk
            transaction.on_commit(
                lambda: reservation_fee_charge_task.delay(record_id, driver_id), robust=True
            )
        return cdr


def reservation_fees_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Periodic (Celery beat): price again the reservations whose fee task was lost (broker down when they
    ended). Returns how many were dispatched."""
    now = now or clock.now()
    due = list(
        Reservation.objects.filter(fee_due=True, ended_at__lte=now - timedelta(minutes=1))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in due:
        tasks.reservation_fee_task.delay(pk)
    return len(due)


def wait_s() -> float:
    """How long the driver API waits for the charger's answer to ReserveNow (below the Redis client's
    socket timeout); a reservation still PENDING then is answered 202 and decided later."""
    return float(getattr(settings, "CPO_RESERVATION_WAIT_S", 10))


def reservation_wait(*, reservation: Reservation, timeout_s: float | None = None) -> Reservation:
    """Wait (outside any transaction) up to `timeout_s` (default `wait_s()`) for the charger's answer to a
    PENDING reservation's ReserveNow and return the reservation as that answer left it (still PENDING
    when the charger has not answered yet)."""
    if reservation.status == R.PENDING and reservation.reserve_command_id is not None:
        outcome = charger_control.get().outcome_wait(
            command_id=reservation.reserve_command_id, timeout_s=wait_s() if timeout_s is None else timeout_s
        )
        if outcome is not None:
            # The gateway applied the outcome already (reservation_command_finished); applying it again is
            # a no-op, and covers a command finalised by the wait itself (its deadline passed).
            reservation_command_finished(outcome=outcome)
    reservation.refresh_from_db()
    return reservation


def reservation_command_finished(*, outcome: IntentOutcome) -> None:
    """A ReserveNow reached its final outcome: Accepted → RESERVED, anything else → FAILED with the
    charger's reason. Idempotent (only a PENDING reservation changes)."""
    with transaction.atomic():
        reservation = (
            Reservation.objects.select_for_update(no_key=True)
            .filter(reserve_command_id=outcome.command_id, status=R.PENDING)
            .first()
        )
        if reservation is None:
            return
        if outcome.outcome == CommandOutcome.ACCEPTED:
            reservation.status = R.RESERVED
            reservation.save(update_fields=["status", "updated_at"])
            return
        if outcome.outcome in (CommandOutcome.OFFLINE, CommandOutcome.DISCONNECTED):
            failure = FAILURE_OFFLINE
        elif outcome.outcome == CommandOutcome.TIMEOUT:
            failure = FAILURE_NO_ANSWER
        else:
            answer = str((outcome.response or {}).get("status", ""))
            failure = REFUSAL_CODES.get(answer, "reservation_rejected")
        _end(reservation, R.FAILED, at=clock.now(), failure=failure)


def reservation_cancel(*, reservation: Reservation, actor: Any = None, source: str = "api") -> Reservation:
    """Cancel an active reservation and send CancelReservation to the charger. A reservation that is no
    longer active (expired, consumed, cancelled, failed) is returned unchanged: cancelling it is a no-op."""
    with transaction.atomic():
        reservation = _locked(reservation.pk)
        if not reservation.is_active:
            return reservation
        now = clock.now()
        if reservation.status == R.RESERVED and reservation.expires_at <= now:
            _end(reservation, R.EXPIRED, at=reservation.expires_at)
            return reservation
        sent = charger_control.get().cancel_reservation(
            charge_point=reservation.charge_point,
            reservation_id=reservation.pk,
            actor=actor or reservation.driver,
            source=source,
        )
        reservation.cancel_command_id = sent.command_id
        reservation.save(update_fields=["cancel_command_id", "updated_at"])
        # The driver's own cancellation is priced where the tariff prices reservations; an operator's
        # is not the driver's doing.
        _end(reservation, R.CANCELLED, at=now, fee=source == "api")
        return reservation


def reservation_expire(*, reservation_id: int, now: datetime | None = None) -> bool:
    """Expire a RESERVED reservation whose time has come; True if it did."""
    now = now or clock.now()
    with transaction.atomic():
        reservation = _locked(reservation_id)
        if reservation.status != R.RESERVED or reservation.expires_at > now:
            return False
        _end(reservation, R.EXPIRED, at=reservation.expires_at)
        return True


def reservations_expire(*, now: datetime | None = None) -> dict[str, int]:
    """Periodic (Celery beat): expire RESERVED reservations past `expires_at`, and fail PENDING ones whose
    ReserveNow never got an answer well past the time. The charger is told too (CancelReservation), so it
    does not go on holding an EVSE by a clock of its own that runs late. Idempotent."""
    now = now or clock.now()
    expired = 0
    for pk in Reservation.objects.filter(status=R.RESERVED, expires_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            if reservation_expire(reservation_id=pk, now=now):
                expired += 1
                reservation = Reservation.objects.select_related("charge_point").get(pk=pk)
                sent = charger_control.get().cancel_reservation(
                    charge_point=reservation.charge_point, reservation_id=pk, actor=None, source="beat"
                )
                reservation.cancel_command_id = sent.command_id
                reservation.save(update_fields=["cancel_command_id", "updated_at"])
    stale = 0
    for pk in Reservation.objects.filter(status=R.PENDING, expires_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            reservation = _locked(pk)
            if reservation.status == R.PENDING:
                _end(reservation, R.FAILED, at=now, failure=FAILURE_NO_ANSWER)
                stale += 1
    return {"expired": expired, "failed": stale}


def reservation_status_update(
    *, charge_point_id: int, reservation_id: int, status: str, at: datetime
) -> bool:
    """OCPP 2.x ReservationStatusUpdate: the charger ended reservation `reservation_id` itself (Expired,
    or Removed by the station). True if it changed our record; an id that is not ours, or a reservation
    no longer active, changes nothing."""
    with transaction.atomic():
        reservation = (
            Reservation.objects.select_for_update(no_key=True)
            .filter(pk=reservation_id, charge_point_id=charge_point_id, status__in=ACTIVE_STATUSES)
            .first()
        )
        if reservation is None:
            return False
        if status == "Expired":
            _end(reservation, R.EXPIRED, at=min(at, reservation.expires_at))
        else:
            _end(reservation, R.CANCELLED, at=at, failure="removed_by_charger")
        return True


def reservation_connector_status(*, charge_point_id: int, evse_id: int, status: str, at: datetime) -> None:
    """stations.connector_status_reported: a connector that is Available again once its reservation's time
    has come means the charger ended it (OCPP 1.6 has no other word for it)."""
    if status != ConnectorStatus.AVAILABLE:
        return
    grace = timedelta(seconds=float(getattr(settings, "CPO_RESERVATION_EXPIRY_GRACE_S", 30)))
    for pk in Reservation.objects.filter(
        charge_point_id=charge_point_id, evse_id=evse_id, status=R.RESERVED, expires_at__lte=at + grace
    ).values_list("pk", flat=True):
        reservation_expire(reservation_id=pk, now=max(at, clock.now()) + grace)


def reservation_consume_on_start(
    *,
    session: ChargingSession,
    charge_point: ChargePoint,
    token_group_id: str,
    customer_account_id: int | None,
) -> None:
    """charging.session_started: the holder's transaction on the reserved EVSE consumes the reservation
    (named by the transaction's reservationId, or found by token and EVSE)."""
    candidates = Reservation.objects.select_for_update(no_key=True).filter(
        charge_point_id=charge_point.pk, status__in=ACTIVE_STATUSES
    )
    reservation = None
    if session.reservation_id is not None:
        reservation = candidates.filter(pk=session.reservation_id).first()
    if reservation is None and session.id_tag:
        # By token: the EVSE's own reservation first, else the token's reservation for any connector.
        reservation = (
            candidates.filter(evse_id__in=(session.evse_id, ANY_EVSE), id_tag=session.id_tag)
            .order_by("-evse_id")
            .first()
        )
    if reservation is None:
        return
    if session.id_token_id is not None and reservation.id_token_id not in (None, session.id_token_id):
        return  # another token's transaction does not consume the holder's reservation
    reservation.charging_session = session
    reservation.save(update_fields=["charging_session", "updated_at"])
    _end(reservation, R.CONSUMED, at=session.started_at)
    # The reservation's time until the start is priced in the session's record (tariff permitting).
    session_tariff_reservation(
        session_id=session.pk, started_at=reservation.created_at, ended_at=session.started_at
    )


class ReservationsGuard:
    """apps.charging.hooks.ReservationGuard: the active reservation holding an EVSE. That is the EVSE's own
    reservation or, when a reservation for any connector of the charger is active and this EVSE is the
    last free one, that reservation: its holder must find a connector free (OCPP 1.6 ReserveNow with
    connectorId 0, 2.0.1 ReserveNow without evseId), so nobody else may take the last one."""

    def holder(self, *, charge_point_id: int, evse_id: int, at: datetime) -> ReservationHold | None:
        active = Reservation.objects.filter(
            charge_point_id=charge_point_id, status__in=ACTIVE_STATUSES, expires_at__gt=at
        ).order_by("pk")
        reservation = active.filter(evse_id=evse_id).first()
        if reservation is None:
            floating = active.filter(evse_id=ANY_EVSE).first()
            if floating is not None and not free_evses(charge_point_id=charge_point_id, at=at) - {evse_id}:
                reservation = floating
        if reservation is None:
            return None
        return ReservationHold(
            reservation_id=reservation.pk,
            driver_id=reservation.driver_id,
            id_token_id=reservation.id_token_id,
            id_tag=reservation.id_tag,
            expires_at=reservation.expires_at,
        )
