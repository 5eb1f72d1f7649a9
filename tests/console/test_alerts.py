"""Alerts: detection through the lower apps' hooks and the sweep, acknowledgement (audited), delivery by
e-mail and by a signed webhook retried with back-off."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.urls import reverse

from apps.accounts.models import AuditRecord
from apps.charging.intents import CommandOutcome, IntentOutcome
from apps.console import services, tasks
from apps.console.choices import AlertKind, DeliveryStatus
from apps.console.models import Alert, AlertDelivery
from apps.smartcharging.services import charging_limit_finished
from apps.stations.services import chargepoint_record_boot, connector_status_record
from cpo import clock
from tests.console.conftest import put_presence
from tests.factories import (
    AlertChannelsFactory,
    AlertFactory,
    ChargePointFactory,
    ChargingLimitFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    """Deliveries handed to Celery (not run)."""
    sent: list[tuple[str, int]] = []
    monkeypatch.setattr(tasks.alert_email_task, "delay", lambda pk: sent.append(("email", pk)))
    monkeypatch.setattr(tasks.alert_webhook_task, "delay", lambda pk: sent.append(("webhook", pk)))
    return sent


def _status(cp, status, *, evse=1, at=None, code=""):
    now = at or clock.now()
    return connector_status_record(
        charge_point_id=cp.pk,
        evse_id=evse,
        connector_id=1 if evse else 0,
        status=status,
        received_at=now,
        charger_at=now,
        error_code=code,
    )


def test_a_faulted_connector_raises_one_alert_and_recovery_resolves_it(
    org_a, queued, django_capture_on_commit_callbacks
):
    cp = ChargePointFactory(organisation=org_a, identity="FAULTY")
    AlertChannelsFactory(organisation=org_a, emails="ops@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        _status(cp, "Faulted", code="GroundFailure")
        _status(cp, "Faulted", code="GroundFailure", at=clock.now() + timedelta(seconds=1))  # a repeat
    alert = Alert.objects.get()
    assert (alert.kind, alert.subject, alert.resolved_at) == (AlertKind.FAULTED, "evse 1/1", None)
    assert alert.message == "FAULTY: EVSE 1 connector 1 is faulted (GroundFailure)."
    assert queued == [("email", AlertDelivery.objects.get().pk)]  # delivered once, not per report
    _status(cp, "Available", at=clock.now() + timedelta(seconds=2))
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_the_charge_point_as_a_whole_faulted_is_its_own_subject(org_a, queued):
    cp = ChargePointFactory(organisation=org_a)
    _status(cp, "Faulted", evse=0)
    _status(cp, "Faulted", evse=1)
    assert sorted(Alert.objects.values_list("subject", flat=True)) == ["charge point", "evse 1/1"]


def test_a_boot_loop_raises_an_alert_at_the_threshold(org_a, settings, queued):
    settings.CPO_ALERT_BOOT_LOOP_COUNT = 3
    settings.CPO_ALERT_BOOT_LOOP_WINDOW_S = 600
    cp = ChargePointFactory(organisation=org_a)
    start = clock.now()
    for n in range(2):
        chargepoint_record_boot(
            charge_point_id=cp.pk, protocol="ocpp1.6", received_at=start + timedelta(seconds=n)
        )
    assert not Alert.objects.exists()
    chargepoint_record_boot(
        charge_point_id=cp.pk, protocol="ocpp1.6", received_at=start + timedelta(seconds=2)
    )
    alert = Alert.objects.get()
    assert alert.kind == AlertKind.BOOT_LOOP and alert.detail["boots"] == 3
    # Quiet for longer than the window: the sweep resolves it.
    services.alerts_sweep(now=start + timedelta(seconds=700))
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_boots_spread_beyond_the_window_are_no_loop(org_a, settings, queued):
    settings.CPO_ALERT_BOOT_LOOP_COUNT = 3
    cp = ChargePointFactory(organisation=org_a)
    start = clock.now()
    for n in range(5):
        chargepoint_record_boot(
            charge_point_id=cp.pk, protocol="ocpp1.6", received_at=start + timedelta(minutes=6 * n)
        )
    assert not Alert.objects.exists()


def test_a_rejected_charging_profile_raises_an_alert_and_an_accepted_one_resolves_it(org_a, queued):
    cp = ChargePointFactory(organisation=org_a, identity="SMART-X")
    first = ChargingLimitFactory(charge_point=cp, status="sent", command_id=501)
    charging_limit_finished(
        charge_point_id=cp.pk, outcome=IntentOutcome(command_id=501, outcome=CommandOutcome.REFUSED)
    )
    alert = Alert.objects.get()
    assert (alert.kind, alert.detail) == (AlertKind.PROFILE_REJECTED, {"command_id": 501})
    ChargingLimitFactory(charge_point=cp, site=first.site, status="sent", command_id=502, evse_id=2)
    charging_limit_finished(
        charge_point_id=cp.pk, outcome=IntentOutcome(command_id=502, outcome=CommandOutcome.ACCEPTED)
    )
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_failed_payment_capture_raises_an_alert(org_a, queued):
    from apps.billing import hooks as billing_hooks
    from tests.factories import PaymentFactory

    payment = PaymentFactory(organisation=org_a, status="debt")
    billing_hooks.payment_capture_failed.emit(
        payment_id=payment.pk, organisation_id=org_a.pk, reason="card_declined"
    )
    alert = Alert.objects.get()
    assert (alert.kind, alert.subject, alert.organisation_id) == (
        AlertKind.CAPTURE_FAILED,
        f"payment {payment.pk}",
        org_a.pk,
    )
    assert "card_declined" in alert.message


def test_the_sweep_raises_offline_alerts_after_n_minutes_and_resolves_them_when_back(org_a, settings, queued):
    settings.CPO_ALERT_OFFLINE_MINUTES = 15
    now = clock.now()
    gone = ChargePointFactory(organisation=org_a, identity="GONE", last_seen_at=now - timedelta(minutes=20))
    ChargePointFactory(organisation=org_a, identity="BRIEF", last_seen_at=now - timedelta(minutes=5))
    ChargePointFactory(organisation=org_a, identity="NEVER", last_seen_at=None)  # never connected: no alert
    here = ChargePointFactory(organisation=org_a, identity="HERE", last_seen_at=now - timedelta(minutes=30))
    put_presence("HERE")  # the database copy is old, presence says it is connected
    assert services.alerts_sweep(now=now) == {"raised": 1, "resolved": 0}
    alert = Alert.objects.get()
    assert (alert.kind, alert.charge_point_id) == (AlertKind.OFFLINE, gone.pk)
    assert services.alerts_sweep(now=now)["raised"] == 0  # still the same open alert
    put_presence("GONE")
    assert services.alerts_sweep(now=now) == {"raised": 0, "resolved": 1}
    assert here.alerts.count() == 0


def test_acknowledging_is_audited_once_per_alert(org_a):
    user = StaffUserFactory(organisation=org_a, role="Technician")
    alert = AlertFactory(organisation=org_a)
    services.alert_acknowledge(alert=alert, actor=user)
    alert.refresh_from_db()
    assert alert.acknowledged_by == user and alert.acknowledged_at is not None
    record = AuditRecord.objects.get(action="alert.acknowledge")
    assert (record.actor_id, record.organisation_id, record.detail["already_acknowledged"]) == (
        user.pk,
        org_a.pk,
        False,
    )


def test_staff_acknowledge_from_the_alert_list(client, org_a, org_b):
    user = StaffUserFactory(organisation=org_a, role="Support")
    mine = AlertFactory(organisation=org_a, message="alpha charger faulted")
    theirs = AlertFactory(organisation=org_b, message="beta charger faulted")
    client.force_login(user)
    page = client.get(reverse("admin:console_alert_changelist") + "?state=open").content.decode()
    assert "alpha charger faulted" in page and "beta charger faulted" not in page
    response = client.post(
        reverse("admin:console_alert_changelist"),
        {"action": "acknowledge", "_selected_action": [mine.pk, theirs.pk]},
    )
    assert response.status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.acknowledged_by == user
    assert theirs.acknowledged_at is None  # another organisation's alert is out of reach
    assert AuditRecord.objects.filter(action="alert.acknowledge").count() == 1


def test_finance_may_see_alerts_but_not_acknowledge(client, org_a):
    user = StaffUserFactory(organisation=org_a, role="Finance")
    alert = AlertFactory(organisation=org_a)
    client.force_login(user)
    assert client.get(reverse("admin:console_alert_changelist")).status_code == 200
    client.post(
        reverse("admin:console_alert_changelist"), {"action": "acknowledge", "_selected_action": [alert.pk]}
    )
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_an_alert_is_emailed_to_the_organisations_addresses(org_a):
    AlertChannelsFactory(organisation=org_a, emails="ops@example.com, night@example.com")
    alert = AlertFactory(organisation=org_a, message="FAULTY is faulted")
    delivery = AlertDelivery.objects.create(alert=alert, channel="email")
    assert services.alert_email_send(delivery_id=delivery.pk) is True
    assert mail.outbox[0].to == ["ops@example.com", "night@example.com"]
    assert "FAULTY is faulted" in mail.outbox[0].subject
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


class _Hook(BaseHTTPRequestHandler):
    answers: list[int] = []
    received: list[tuple[dict, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).answers.pop(0) if type(self).answers else 204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Hook.answers, _Hook.received = [], []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", _Hook
    server.shutdown()
    server.server_close()


def test_the_webhook_is_signed_with_the_organisations_secret(org_a, receiver):
    url, hook = receiver
    AlertChannelsFactory(
        organisation=org_a, emails="", webhook_url=url, webhook_secret="s3cret-s3cret-s3cret"
    )
    alert = AlertFactory(organisation=org_a)
    delivery = AlertDelivery.objects.create(alert=alert, channel="webhook")
    assert services.alert_webhook_attempt(delivery_id=delivery.pk) is True
    headers, body = hook.received[0]
    signature = dict(part.split("=", 1) for part in headers["x-cpo-signature"].split(","))
    expected = hmac.new(
        b"s3cret-s3cret-s3cret", f"{signature['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(signature["v1"], expected)
    assert json.loads(body)["id"] == alert.pk and json.loads(body)["kind"] == "faulted"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)


def test_a_failing_webhook_is_retried_with_back_off_until_it_answers(org_a, receiver, settings, monkeypatch):
    url, hook = receiver
    hook.answers = [500, 503]
    AlertChannelsFactory(
        organisation=org_a, emails="", webhook_url=url, webhook_secret="s3cret-s3cret-s3cret"
    )
    delivery = AlertDelivery.objects.create(alert=AlertFactory(organisation=org_a), channel="webhook")
    waits = []
    real = services.webhook_backoff_s
    monkeypatch.setattr(services, "webhook_backoff_s", lambda attempt: waits.append(real(attempt)) or 0)
    tasks.alert_webhook_task.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, len(hook.received)) == (DeliveryStatus.DELIVERED, 3, 3)
    assert waits == [30.0, 60.0]


def test_a_webhook_that_never_answers_gives_up_after_the_last_attempt(org_a, receiver, settings, monkeypatch):
    url, hook = receiver
    hook.answers = [500] * 10
    settings.CPO_ALERT_WEBHOOK_MAX_ATTEMPTS = 3
    AlertChannelsFactory(
        organisation=org_a, emails="", webhook_url=url, webhook_secret="s3cret-s3cret-s3cret"
    )
    delivery = AlertDelivery.objects.create(alert=AlertFactory(organisation=org_a), channel="webhook")
    monkeypatch.setattr(services, "webhook_backoff_s", lambda attempt: 0)
    tasks.alert_webhook_task.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DeliveryStatus.FAILED, 3, "HTTP 500")
    assert len(hook.received) == 3


def test_back_off_doubles_up_to_an_hour():
    assert [services.webhook_backoff_s(n) for n in (1, 2, 3, 8, 20)] == [30.0, 60.0, 120.0, 3600.0, 3600.0]


def test_a_webhook_needs_a_long_enough_secret(client, org_a):
    user = StaffUserFactory(organisation=org_a, role="Operator admin")
    client.force_login(user)
    response = client.post(
        reverse("admin:console_alertchannels_add"),
        {
            "organisation": org_a.pk,
            "emails": "ops@example.com, not-an-address",
            "webhook_url": "https://x.example/h",
            "webhook_secret": "short",
        },
    )
    errors = response.context["adminform"].form.errors
    assert "not-an-address" in errors["emails"][0]
    assert errors["webhook_secret"] == [
        "A webhook needs a secret of at least 16 characters to sign its requests."
    ]


def test_an_unknown_alert_kind_is_refused(org_a):
    from cpo.exceptions import ValidationFailed

    with pytest.raises(ValidationFailed) as exc:
        services.alert_raise(organisation_id=org_a.pk, kind="meteor", message="x")
    assert exc.value.code == "invalid_alert_kind"
