"""Stripe's webhooks: signature checked, each event taken in once, unknown types ignored, network work in
Celery retried on network errors and 5xx and never on 4xx; disputes for finance."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
from django.test import Client

from apps.billing import services, webhooks
from apps.billing.choices import StripeEventStatus
from apps.billing.models import Dispute, PaymentMethod, StripeCustomer, StripeEvent
from apps.billing.tasks import MAX_RETRIES, stripe_event_process_task
from tests.billing.conftest import event, signed
from tests.factories import DriverFactory
from tests.processes import free_port

pytestmark = pytest.mark.django_db
URL = "/webhooks/stripe/"


def deliver(payload, *, secret=None, signature=None):
    body, header = signed(payload, **({"secret": secret} if secret else {}))
    return Client().post(
        URL,
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=header if signature is None else signature,
    )


@pytest.fixture
def driver(db):
    return DriverFactory(email="hooked@example.com")


@pytest.fixture
def customer(driver, stripe_server):
    return services.customer_for(user=driver)


def dispute_event(event_id="evt_dp_1", status="needs_response"):
    return event(
        event_id,
        "charge.dispute.created",
        {
            "id": "dp_123",
            "object": "dispute",
            "amount": 2350,
            "currency": "eur",
            "charge": "ch_1",
            "payment_intent": "pi_1",
            "reason": "fraudulent",
            "status": status,
            "created": 1764000000,
            "evidence_details": {"due_by": 1764900000},
        },
    )


def test_a_bad_or_missing_signature_is_400_and_records_nothing(stripe_server):
    payload = dispute_event()
    wrong = deliver(payload, secret="whsec_someone_else")
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "signature_invalid"
    missing = Client().post(URL, b"{}", content_type="application/json")
    assert missing.status_code == 400
    assert missing.json()["code"] == "signature_invalid"
    garbage = deliver(payload, signature="t=1,v1=deadbeef")
    assert garbage.status_code == 400
    assert not StripeEvent.objects.exists() and not Dispute.objects.exists()


def test_an_old_signature_is_refused(stripe_server):
    body, header = signed(dispute_event(), at=int(time.time()) - 3600)
    response = Client().post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    assert response.status_code == 400


def test_only_post(stripe_server):
    assert Client().get(URL).status_code == 405


def test_a_dispute_is_recorded_once_and_a_replay_changes_nothing(stripe_server):
    first = deliver(dispute_event())
    assert first.status_code == 200
    assert first.json() == {"received": True, "duplicate": False, "status": "processed"}
    dispute = Dispute.objects.get()
    assert (
        dispute.stripe_id,
        dispute.amount,
        dispute.currency,
        dispute.reason,
        dispute.payment_intent_id,
    ) == (
        "dp_123",
        2350,
        "EUR",
        "fraudulent",
        "pi_1",
    )
    assert dispute.evidence_due_by is not None
    # the same event again, even with a changed body: nothing changes
    replay = deliver(dispute_event(status="won"))
    assert replay.status_code == 200
    assert replay.json()["duplicate"] is True
    assert Dispute.objects.get().status == "needs_response"
    assert StripeEvent.objects.count() == 1
    # a later event about the same dispute updates it
    deliver(
        event("evt_dp_2", "charge.dispute.closed", {**dispute_event()["data"]["object"], "status": "won"})
    )
    assert Dispute.objects.get().status == "won"


def test_unknown_types_are_acknowledged_and_ignored(stripe_server):
    response = deliver(event("evt_x", "balance.available", {"id": "bal_1", "object": "balance"}))
    assert response.status_code == 200
    assert StripeEvent.objects.get().status == StripeEventStatus.IGNORED


def test_an_event_without_an_id_is_400(stripe_server):
    response = deliver({"type": "charge.dispute.created", "data": {"object": {}}})
    assert response.status_code == 400
    assert response.json()["code"] == "event_invalid"


def test_payment_method_attached_and_detached(customer, stripe_server):
    card = {
        "id": "pm_from_hook",
        "object": "payment_method",
        "type": "card",
        "customer": customer.stripe_id,
        "card": {"brand": "mastercard", "last4": "4444", "exp_month": 3, "exp_year": 2030},
    }
    deliver(event("evt_a", "payment_method.attached", card))
    method = PaymentMethod.objects.get(stripe_id="pm_from_hook")
    assert (method.brand, method.last4, method.exp_year, method.is_default) == (
        "mastercard",
        "4444",
        2030,
        True,
    )
    # someone else's customer: not ours to record
    deliver(
        event("evt_b", "payment_method.attached", {**card, "id": "pm_stranger", "customer": "cus_stranger"})
    )
    assert not PaymentMethod.objects.filter(stripe_id="pm_stranger").exists()
    deliver(event("evt_c", "payment_method.detached", {**card, "customer": None}))
    assert not PaymentMethod.objects.exists()


def test_customer_deleted_forgets_the_cards_and_the_next_card_gets_a_new_customer(
    driver, customer, stripe_server
):
    services.payment_method_attach(user=driver, payment_method_id="pm_card_visa")
    deliver(event("evt_del", "customer.deleted", {"id": customer.stripe_id, "object": "customer"}))
    customer.refresh_from_db()
    assert customer.deleted_at is not None
    assert not PaymentMethod.objects.exists()
    fresh = services.customer_for(user=driver)
    assert fresh.pk != customer.pk and fresh.stripe_id != customer.stripe_id
    assert StripeCustomer.objects.filter(user=driver, deleted_at=None).get() == fresh


def setup_intent_event(customer, payment_method_id, event_id="evt_seti"):
    return event(
        event_id,
        "setup_intent.succeeded",
        {
            "id": "seti_1",
            "object": "setup_intent",
            "customer": customer.stripe_id,
            "payment_method": payment_method_id,
            "status": "succeeded",
        },
    )


def test_setup_intent_succeeded_records_the_card_in_celery(
    customer, stripe_server, django_capture_on_commit_callbacks
):
    card = stripe_server.client().v1.payment_methods.attach("pm_card_visa", {"customer": customer.stripe_id})
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = deliver(setup_intent_event(customer, card.id))
    assert response.status_code == 200
    assert len(callbacks) == 1  # the task's dispatch, after commit
    stored = StripeEvent.objects.get()
    assert stored.status == StripeEventStatus.RECEIVED and not PaymentMethod.objects.exists()
    stripe_event_process_task.apply(args=[stored.pk])
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEventStatus.PROCESSED, 1)
    assert PaymentMethod.objects.get().stripe_id == card.id
    # processed once: running the task again changes nothing
    stripe_event_process_task.apply(args=[stored.pk])
    assert PaymentMethod.objects.count() == 1


def _received(customer, payment_method_id):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webhooks, "_dispatch", lambda pk: None)
        deliver(setup_intent_event(customer, payment_method_id))
    return StripeEvent.objects.get()


def test_network_errors_are_retried(customer, settings, stripe_server):
    stored = _received(customer, "pm_whatever")
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    stripe_event_process_task.apply(args=[stored.pk])
    stored.refresh_from_db()
    assert stored.attempts == MAX_RETRIES + 1
    assert stored.status == StripeEventStatus.RECEIVED  # still to do: the sweep dispatches it again
    assert "payment provider" in stored.error


class _Answer500(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"error": {"type": "api_error", "message": "boom"}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_stripe_5xx_is_retried(customer, settings, stripe_server):
    stored = _received(customer, "pm_whatever")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
        stripe_event_process_task.apply(args=[stored.pk])
    finally:
        server.shutdown()
        server.server_close()
    stored.refresh_from_db()
    assert stored.attempts == MAX_RETRIES + 1
    assert stored.status == StripeEventStatus.RECEIVED


def test_stripe_4xx_is_never_retried(customer, stripe_server):
    stored = _received(customer, "pm_doesnotexist")  # localstripe: 404
    stripe_event_process_task.apply(args=[stored.pk])
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEventStatus.FAILED, 1)
    assert not PaymentMethod.objects.exists()


def test_the_sweep_finds_events_whose_task_was_lost(customer, stripe_server):
    stored = _received(customer, "pm_whatever")
    assert webhooks.events_pending(older_than_s=300) == []
    StripeEvent.objects.filter(pk=stored.pk).update(
        received_at=stored.received_at - webhooks.timedelta(hours=1)
    )
    assert webhooks.events_pending(older_than_s=300) == [stored.pk]


def test_webhooks_are_refused_while_no_secret_is_set(settings, stripe_server):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = deliver(dispute_event())
    assert response.status_code == 503
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_localstripe_delivers_a_signed_event_that_we_take_in(live_server, stripe_server):
    """End to end: localstripe signs and posts customer.deleted to our running server."""
    driver = DriverFactory(email="e2e-hook@example.com")
    customer = services.customer_for(user=driver)
    stripe_server.register_webhook(f"{live_server.url}{URL}")
    stripe_server.client().v1.customers.delete(customer.stripe_id)
    deadline = time.monotonic() + 20
    while StripeCustomer.objects.get(pk=customer.pk).deleted_at is None:
        assert time.monotonic() < deadline, stripe_server.log.read_text()[-2000:]
        time.sleep(0.05)
    assert (
        StripeEvent.objects.filter(type="customer.deleted", status=StripeEventStatus.PROCESSED).count() == 1
    )
