"""Writes of the console: alerts (raise, resolve, acknowledge, deliver) and the status and connection
intervals uptime is computed from. Alerts are raised from the lower apps' hooks (receivers.py) and from
the periodic sweep (`alerts_sweep`); a new alert is e-mailed and sent to the organisation's webhook after
commit (tasks.py), and live consoles are told after commit."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from apps.accounts.services import audit_record_create
from apps.console import tasks  # tasks imports this module too: use by attribute
from apps.console.choices import AlertKind, DeliveryChannel, DeliveryStatus
from apps.console.models import Alert, AlertChannels, AlertDelivery, ConnectionInterval, StatusInterval
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.stations.choices import RegistrationStatus
from apps.stations.models import ChargePoint
from cpo import clock, live
from cpo.exceptions import ValidationFailed

logger = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-CPO-Signature"
BOOTS_KEY = "cpo:console:boots:{charge_point_id}"


def offline_alert_after_s() -> float:
    return float(getattr(settings, "CPO_ALERT_OFFLINE_MINUTES", 15)) * 60


def boot_loop_threshold() -> tuple[int, float]:
    """(boots, window in seconds): that many BootNotifications within the window is a boot loop."""
    return (
        int(getattr(settings, "CPO_ALERT_BOOT_LOOP_COUNT", 5)),
        float(getattr(settings, "CPO_ALERT_BOOT_LOOP_WINDOW_S", 600)),
    )


def webhook_max_attempts() -> int:
    return int(getattr(settings, "CPO_ALERT_WEBHOOK_MAX_ATTEMPTS", 8))


def webhook_backoff_s(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1` (30 s, 60 s, 120 s … at most an hour)."""
    base = float(getattr(settings, "CPO_ALERT_WEBHOOK_BACKOFF_S", 30))
    return float(min(3600.0, base * 2 ** max(0, attempt - 1)))


def _publish(organisation_id: int, charge_point_id: int | None, what: str) -> None:
    transaction.on_commit(
        partial(
            live.operations_publish,
            organisation_id=organisation_id,
            charge_point_id=charge_point_id,
            what=what,
        )
    )


# --- alerts --------------------------------------------------------------------------------------------


def _open_alerts(*, kind: str, organisation_id: int, charge_point_id: int | None, subject: str) -> Any:
    return Alert.objects.filter(
        organisation_id=organisation_id,
        kind=kind,
        charge_point_id=charge_point_id,
        subject=subject,
        resolved_at__isnull=True,
    )


@transaction.atomic
def alert_raise(
    *,
    organisation_id: int,
    kind: str,
    message: str,
    charge_point_id: int | None = None,
    subject: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> tuple[Alert, bool]:
    """Open an alert, unless one of the same kind and subject is open already: (alert, created). A new
    alert is delivered (e-mail, webhook) and shown to live consoles once committed."""
    if kind not in AlertKind.values:
        raise ValidationFailed(
            _("{kind} is not a kind of alert.").format(kind=kind),
            code="invalid_alert_kind",
            fields={"kind": [kind]},
        )
    existing = _open_alerts(
        kind=kind, organisation_id=organisation_id, charge_point_id=charge_point_id, subject=subject
    ).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():  # a concurrent raise of the same alert wins; ours becomes a no-op
            alert = Alert.objects.create(
                organisation_id=organisation_id,
                charge_point_id=charge_point_id,
                kind=kind,
                subject=subject[:64],
                message=message[:500],
                detail=detail or {},
                opened_at=at or clock.now(),
            )
    except IntegrityError:
        return _open_alerts(
            kind=kind, organisation_id=organisation_id, charge_point_id=charge_point_id, subject=subject
        ).get(), False
    transaction.on_commit(partial(alert_dispatch, alert.pk))
    _publish(organisation_id, charge_point_id, "alert")
    return alert, True


@transaction.atomic
def alert_resolve(
    *, kind: str, charge_point_id: int, subject: str | None = None, at: datetime | None = None
) -> int:
    """Resolve the open alerts of `kind` for the charger (only `subject`'s when given). Returns how many."""
    alerts = Alert.objects.filter(kind=kind, charge_point_id=charge_point_id, resolved_at__isnull=True)
    if subject is not None:
        alerts = alerts.filter(subject=subject)
    organisation_ids = set(alerts.values_list("organisation_id", flat=True))
    resolved = alerts.update(resolved_at=at or clock.now())
    for organisation_id in organisation_ids:
        _publish(organisation_id, charge_point_id, "alert")
    return resolved


@transaction.atomic
def alert_acknowledge(*, alert: Alert, actor: Any, source: str = "admin") -> Alert:
    """Staff saw the alert. Audited (one record per call); acknowledging twice keeps the first time."""
    alert = Alert.objects.select_for_update(no_key=True).get(pk=alert.pk)
    already = alert.acknowledged_at is not None
    if not already:
        alert.acknowledged_at = clock.now()
        alert.acknowledged_by = actor if getattr(actor, "pk", None) else None
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
        _publish(alert.organisation_id, alert.charge_point_id, "alert")
    audit_record_create(
        actor=actor,
        action="alert.acknowledge",
        target=alert,
        organisation_id=alert.organisation_id,
        source=source,
        detail={"kind": alert.kind, "already_acknowledged": already},
    )
    return alert


def alert_dispatch(alert_id: int) -> list[int]:
    """Create the alert's deliveries for its organisation's channels and queue them (after commit of the
    alert). Returns the delivery ids. Safe to repeat: one delivery per channel."""
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:
        return []
    channels = AlertChannels.objects.filter(organisation_id=alert.organisation_id).first()
    if channels is None:
        return []
    wanted = []
    if channels.email_list():
        wanted.append(DeliveryChannel.EMAIL)
    if channels.webhook_url:
        wanted.append(DeliveryChannel.WEBHOOK)
    ids = []
    for channel in wanted:
        delivery, created = AlertDelivery.objects.get_or_create(alert=alert, channel=channel)
        ids.append(delivery.pk)
        if created:
            task = tasks.alert_email_task if channel == DeliveryChannel.EMAIL else tasks.alert_webhook_task
            task.delay(delivery.pk)
    return ids


def alert_body(alert: Alert) -> dict[str, Any]:
    """What the webhook receives about an alert (JSON)."""
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "organisation": alert.organisation_id,
        "charge_point": alert.charge_point.identity if alert.charge_point else None,
        "subject": alert.subject,
        "message": alert.message,
        "detail": alert.detail,
        "opened_at": alert.opened_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The X-CPO-Signature header: HMAC-SHA256 over "<timestamp>." + body, keyed with the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook answers itself: a redirect is an answer that is not 2xx (never followed)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to an http(s) URL; the answer's status code."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - checked above
    try:
        with _opener.open(
            request, timeout=float(getattr(settings, "CPO_ALERT_WEBHOOK_TIMEOUT_S", 10))
        ) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _delivery_failed(delivery: AlertDelivery, error: str, *, final: bool) -> None:
    delivery.last_error = error[:500]
    if final:
        delivery.status = DeliveryStatus.FAILED
    delivery.save(update_fields=["attempts", "last_error", "status"])


def alert_webhook_attempt(*, delivery_id: int) -> bool | None:
    """One attempt to POST the alert to its organisation's webhook. True: delivered (or nothing left to
    do); False: failed, try again later; None: failed for the last time (status FAILED)."""
    delivery = AlertDelivery.objects.select_related("alert__charge_point").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return True
    channels = AlertChannels.objects.filter(organisation_id=delivery.alert.organisation_id).first()
    if channels is None or not channels.webhook_url:
        delivery.status, delivery.last_error = DeliveryStatus.FAILED, "no webhook configured"
        delivery.save(update_fields=["status", "last_error"])
        return None
    body = json.dumps(alert_body(delivery.alert), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: webhook_signature(secret=channels.webhook_secret, timestamp=timestamp, body=body),
    }
    delivery.attempts += 1
    final = delivery.attempts >= webhook_max_attempts()
    try:
        status = _post(channels.webhook_url, body, headers)
    except (OSError, ValueError) as exc:  # unreachable, refused, timed out, or not an http(s) URL
        _delivery_failed(delivery, f"{type(exc).__name__}: {exc}", final=final)
        return None if final else False
    if not 200 <= status < 300:
        _delivery_failed(delivery, f"HTTP {status}", final=final)
        return None if final else False
    delivery.status, delivery.delivered_at, delivery.last_error = DeliveryStatus.DELIVERED, clock.now(), ""
    delivery.save(update_fields=["attempts", "status", "delivered_at", "last_error"])
    return True


def alert_email_send(*, delivery_id: int) -> bool:
    """E-mail the alert to its organisation's addresses; raises on an SMTP failure (the task retries)."""
    delivery = AlertDelivery.objects.select_related("alert__charge_point", "alert__organisation").get(
        pk=delivery_id
    )
    if delivery.status != DeliveryStatus.PENDING:
        return True
    channels = AlertChannels.objects.filter(organisation_id=delivery.alert.organisation_id).first()
    recipients = channels.email_list() if channels else []
    alert = delivery.alert
    delivery.attempts += 1
    if not recipients:
        delivery.status, delivery.last_error = DeliveryStatus.FAILED, "no e-mail address configured"
        delivery.save(update_fields=["attempts", "status", "last_error"])
        return False
    subject = _("[{operator}] {kind}: {message}").format(
        operator=alert.organisation, kind=alert.get_kind_display(), message=alert.message
    )
    body = "\n".join(
        [
            alert.message,
            "",
            _("Charge point: {identity}").format(
                identity=alert.charge_point.identity if alert.charge_point else "-"
            ),
            _("Opened at: {at}").format(at=alert.opened_at.isoformat()),
        ]
    )
    send_mail(subject[:200], body, None, recipients)
    delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, clock.now()
    delivery.save(update_fields=["attempts", "status", "delivered_at"])
    return True


# --- detection ------------------------------------------------------------------------------------------


def boot_noted(*, charge_point_id: int, organisation_id: int, at: datetime) -> bool:
    """Count a boot; raise a boot-loop alert when the charger booted `count` times within the window.
    Returns whether the charger is in a boot loop now."""
    count, window_s = boot_loop_threshold()
    key = BOOTS_KEY.format(charge_point_id=charge_point_id)
    now = at.timestamp()
    pipe = sync_redis().pipeline(transaction=True)
    pipe.zadd(key, {f"{now:.6f}": now})
    pipe.zremrangebyscore(key, "-inf", now - window_s)
    pipe.zcard(key)
    pipe.expire(key, int(window_s) + 60)
    boots = int(pipe.execute()[2])
    if boots < count:
        return False
    alert_raise(
        organisation_id=organisation_id,
        kind=AlertKind.BOOT_LOOP,
        charge_point_id=charge_point_id,
        message=_("Booted {n} times within {minutes} minutes.").format(n=boots, minutes=round(window_s / 60)),
        detail={"boots": boots, "window_s": window_s},
        at=at,
    )
    return True


def boots_in_window(charge_point_id: int, now: datetime) -> int:
    _count, window_s = boot_loop_threshold()
    return int(
        sync_redis().zcount(
            BOOTS_KEY.format(charge_point_id=charge_point_id), now.timestamp() - window_s, "+inf"
        )
    )


def alerts_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic pass (Celery beat): connection intervals follow presence; chargers offline for longer
    than CPO_ALERT_OFFLINE_MINUTES get an alert, those back online have theirs resolved; boot-loop alerts
    of chargers that stopped rebooting are resolved."""
    now = now or clock.now()
    connections_reconcile(now=now)
    chargers = list(
        ChargePoint.objects.filter(registration_status=RegistrationStatus.ACCEPTED).values_list(
            "pk", "identity", "organisation_id", "last_seen_at"
        )
    )
    online = presence.online([identity for _pk, identity, _org, _seen in chargers])
    cutoff = now - timedelta(seconds=offline_alert_after_s())
    raised = resolved = 0
    for pk, identity, organisation_id, last_seen_at in chargers:
        if identity in online:
            resolved += alert_resolve(kind=AlertKind.OFFLINE, charge_point_id=pk, at=now)
        elif last_seen_at is not None and last_seen_at < cutoff:
            minutes = int((now - last_seen_at).total_seconds() // 60)
            _alert, created = alert_raise(
                organisation_id=organisation_id,
                kind=AlertKind.OFFLINE,
                charge_point_id=pk,
                message=_("{identity} has been offline for {minutes} minutes.").format(
                    identity=identity, minutes=minutes
                ),
                detail={"last_seen_at": last_seen_at.isoformat()},
                at=now,
            )
            raised += int(created)
    for alert in Alert.objects.filter(kind=AlertKind.BOOT_LOOP, resolved_at__isnull=True).only(
        "charge_point_id"
    ):
        if alert.charge_point_id and boots_in_window(alert.charge_point_id, now) < boot_loop_threshold()[0]:
            resolved += alert_resolve(kind=AlertKind.BOOT_LOOP, charge_point_id=alert.charge_point_id, at=now)
    return {"raised": raised, "resolved": resolved}


# --- status and connection history -----------------------------------------------------------------------


def status_interval_record(
    *, charge_point_id: int, evse_id: int, connector_id: int, status: str, error_code: str, at: datetime
) -> StatusInterval | None:
    """A newer status of a connector (EVSE 0 / connector 0: the charge point): close the open interval
    and open one for the new status. The same status again changes nothing (None). Runs in the status
    report's transaction (the report holds the charge point's row lock)."""
    current = StatusInterval.objects.filter(
        charge_point_id=charge_point_id, evse_id=evse_id, connector_id=connector_id, ended_at__isnull=True
    ).first()
    if current is not None:
        if current.status == status and current.error_code == error_code[:50]:
            return None
        current.ended_at = max(at, current.started_at)
        current.save(update_fields=["ended_at"])
    return StatusInterval.objects.create(
        charge_point_id=charge_point_id,
        evse_id=evse_id,
        connector_id=connector_id,
        status=status,
        error_code=error_code[:50],
        started_at=at if current is None else max(at, current.started_at),
    )


@transaction.atomic
def connection_intervals_record(*, came_back: list[int], went_offline: list[int], at: datetime) -> None:
    """Open a connection interval for chargers that came back, close the open one of those that went."""
    ConnectionInterval.objects.filter(charge_point_id__in=went_offline, ended_at__isnull=True).update(
        ended_at=at
    )
    already = set(
        ConnectionInterval.objects.filter(charge_point_id__in=came_back, ended_at__isnull=True).values_list(
            "charge_point_id", flat=True
        )
    )
    ConnectionInterval.objects.bulk_create(
        [ConnectionInterval(charge_point_id=pk, started_at=at) for pk in came_back if pk not in already],
        ignore_conflicts=True,
    )


def connections_reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Make the open connection intervals agree with presence (a charger connected before the console
    existed, a flush that was missed). Returns how many were opened and closed."""
    now = now or clock.now()
    chargers = dict(ChargePoint.objects.values_list("identity", "pk"))
    online_ids = {chargers[identity] for identity in presence.online(list(chargers))}
    open_ids = set(
        ConnectionInterval.objects.filter(ended_at__isnull=True).values_list("charge_point_id", flat=True)
    )
    came_back, went = sorted(online_ids - open_ids), sorted(open_ids - online_ids)
    if came_back or went:
        connection_intervals_record(came_back=came_back, went_offline=went, at=now)
    return {"opened": len(came_back), "closed": len(went)}
