"""Outbound pushes: every request we send to a party unprompted (location status PATCH, session PUT/PATCH,
CDR POST, command result POST) is a Push row written in the transaction that caused it, then sent by a
Celery task after commit (`tasks.push_send_task`) with retries and exponential back-off, and by a periodic
sweep behind it. Requests about one object go out in creation order: a push waits while an earlier one
for the same object is not sent. A push that used up its attempts is FAILED: visible in the admin, with a
retry action. A party that is down costs our chargers nothing: nothing waits for a push.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.roaming import tasks
from apps.roaming.choices import PartyStatus, PushStatus
from apps.roaming.client import OcpiRequestFailed, ocpi_request
from apps.roaming.models import Party, Push
from apps.roaming.objects import our_identity
from cpo import clock

logger = logging.getLogger(__name__)

_OPEN = (PushStatus.PENDING, PushStatus.RETRYING)


def push_create(
    *,
    party: Party,
    module: str,
    method: str,
    url: str,
    object_key: str,
    body: Any,
    to: tuple[str, str] | None = None,
    once: bool = False,
) -> Push:
    """Record a push (in the caller's transaction) and send it after commit. `once`: an existing push for
    the same object and module is returned instead (a CDR is sent once, whatever happens)."""
    if once:
        existing = Push.objects.filter(party=party, module=module, object_key=object_key).first()
        if existing is not None:
            return existing
    to_cc, to_pid = to or (party.country_code, party.party_id)
    push = Push.objects.create(
        party=party,
        module=module,
        method=method,
        url=url,
        object_key=object_key,
        body=body,
        to_country_code=to_cc,
        to_party_id=to_pid,
        next_attempt_at=clock.now(),
    )
    _dispatch(push.pk)
    return push


def _dispatch(push_id: int, countdown: float | None = None) -> None:
    def send() -> None:
        if countdown:
            tasks.push_send_task.apply_async((push_id,), countdown=countdown)
        else:
            tasks.push_send_task.delay(push_id)

    # robust: a broker that does not answer must never fail the transaction that caused the push; the
    # sweep sends it later.
    transaction.on_commit(send, robust=True)


def _backoff_s(attempts: int) -> float:
    base = float(settings.CPO_OCPI_PUSH_BACKOFF_S)
    return min(base * (2 ** max(0, attempts - 1)), float(settings.CPO_OCPI_PUSH_BACKOFF_MAX_S))


def _blocked(push: Push) -> bool:
    return (
        Push.objects.filter(party_id=push.party_id, object_key=push.object_key, pk__lt=push.pk)
        .exclude(status=PushStatus.SENT)
        .exists()
    )


def push_send(*, push_id: int, now: datetime | None = None) -> str:
    """Send one push if it is due and every earlier push for its object was sent. Returns its status
    afterwards ("" when there is no such open push). Idempotent: a sent push is never sent again."""
    now = now or clock.now()
    with transaction.atomic():
        push = (
            Push.objects.select_for_update(no_key=True, skip_locked=True, of=("self",))
            .select_related("party")
            .filter(pk=push_id, status__in=_OPEN)
            .first()
        )
        if push is None:
            return ""
        if push.next_attempt_at > now or _blocked(push):
            return push.status
        party = push.party
    if party.status != PartyStatus.REGISTERED or not party.outgoing_token:
        return _failed(push, now, "the party is not registered", final=True)
    try:
        ocpi_request(
            push.method,
            push.url,
            token=party.outgoing_token,
            body=push.body,
            route=(our_identity(), (push.to_country_code, push.to_party_id))
            if push.module != "commands"
            else None,
        )
    except OcpiRequestFailed as exc:
        return _failed(push, now, str(exc), http_status=exc.http_status, ocpi_status=exc.ocpi_status)
    with transaction.atomic():
        Push.objects.filter(pk=push.pk, status__in=_OPEN).update(
            status=PushStatus.SENT,
            attempts=push.attempts + 1,
            sent_at=now,
            last_http_status=200,
            last_ocpi_status=1000,
            last_error="",
        )
        following = (
            Push.objects.filter(
                party_id=push.party_id, object_key=push.object_key, pk__gt=push.pk, status__in=_OPEN
            )
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        if following is not None:
            _dispatch(following)
    return PushStatus.SENT


def _failed(
    push: Push,
    now: datetime,
    error: str,
    *,
    http_status: int | None = None,
    ocpi_status: int | None = None,
    final: bool = False,
) -> str:
    attempts = push.attempts + 1
    final = final or attempts >= settings.CPO_OCPI_PUSH_MAX_ATTEMPTS
    status = PushStatus.FAILED if final else PushStatus.RETRYING
    delay = _backoff_s(attempts)
    with transaction.atomic():
        Push.objects.filter(pk=push.pk, status__in=_OPEN).update(
            status=status,
            attempts=attempts,
            next_attempt_at=now + timedelta(seconds=delay),
            last_http_status=http_status,
            last_ocpi_status=ocpi_status,
            last_error=error[:500],
        )
        if not final:
            _dispatch(push.pk, countdown=delay)
    logger.warning("roaming push %s %s (attempt %s): %s", push.pk, status, attempts, error)
    return status


def push_retry(*, push: Push) -> Push:
    """An operator's retry of a failed push: due now, with a fresh set of attempts."""
    with transaction.atomic():
        Push.objects.filter(pk=push.pk, status=PushStatus.FAILED).update(
            status=PushStatus.PENDING, attempts=0, next_attempt_at=clock.now()
        )
        _dispatch(push.pk)
    push.refresh_from_db()
    return push


def pushes_send_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Send the due pushes in creation order (the periodic sweep; tests act as the worker with it).
    Returns how many were sent."""
    now = now or clock.now()
    ids = list(
        Push.objects.filter(status__in=_OPEN, next_attempt_at__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for pk in ids if push_send(push_id=pk, now=now) == PushStatus.SENT)
