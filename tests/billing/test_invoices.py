"""Monthly invoices for customer accounts (one per issuing organisation, account, month and currency, the
month closing in the organisation's time zone), gap-free document numbers, Stripe invoices (customer and
items against localstripe; invoice creation and finalisation, which localstripe lacks, checked on the
request our client sends) and credit notes."""

from __future__ import annotations

import json
import threading
import time as systime
import urllib.parse
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import stripe
from django.db import IntegrityError, connection, transaction

from apps.accounts.models import AuditRecord
from apps.billing import invoices, stripe_client, tasks
from apps.billing.choices import DocumentKind, InvoiceStatus
from apps.billing.models import AccountCustomer, DocumentCounter, Invoice, InvoiceLine, StripeCall
from apps.charging.services import session_start, session_stop
from apps.tariffs import services as tariff_services
from cpo import clock
from cpo.exceptions import Conflict
from tests.billing.conftest import SECRET_KEY
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    CustomerAccountFactory,
    DriverFactory,
    DriverSessionFactory,
    EvseFactory,
    IdTokenFactory,
    LocationFactory,
    OrganisationFactory,
    PaymentFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 5, 6, 8, 0, tzinfo=UTC)
M = timedelta(minutes=1)
# 1 June 2025 00:30 in Berlin: May has ended there (and not yet in New York: 31 May 18:30).
AFTER_MAY = datetime(2025, 5, 31, 22, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    from apps.tariffs import tasks as tariff_tasks

    monkeypatch.setattr(tariff_tasks.cdr_issue_task, "delay", lambda session_id: None)


@pytest.fixture
def org():
    return OrganisationFactory(
        name="Alpha", slug="alpha-inv", invoice_prefix="ALPHA", time_zone="Europe/Berlin"
    )


@pytest.fixture
def cp(org):
    charge_point = ChargePointFactory(
        organisation=org,
        identity="CP-INV",
        location=LocationFactory(organisation=org, name="Depot", country="DE"),
    )
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1))
    tariff = TariffFactory(organisation=org, name="Fleet")
    TariffElementFactory(tariff=tariff, position=0, energy_price=D("0.30"), flat_price=D("1.00"))
    TariffAssignmentFactory(tariff=tariff)
    return charge_point


@pytest.fixture
def account(org):
    return CustomerAccountFactory(organisation=org, name="Nordlicht Logistik", payment_terms_days=30)


@pytest.fixture
def fleet_card(account):
    return IdTokenFactory(uid="04F1EE7C4D", customer_account=account, organisation=account.organisation)


def charge(cp, *, at, uid, kwh=10):
    """A completed session of `kwh` at `at` and its CDR, issued when the car left (an hour later)."""
    session = session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag=uid,
        meter_start_wh=1000,
        started_at_charger=at,
        received_at=at,
        protocol="ocpp1.6",
    ).session
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=1000 + kwh * 1000,
        stopped_at_charger=at + 60 * M,
        received_at=at + 60 * M,
        reason="EVDisconnected",
    )
    return tariff_services.cdr_issue(session_id=session.pk, now=at + 60 * M)


def test_one_invoice_per_account_and_month_with_credits_and_one_number_when_run_twice(
    cp, org, account, fleet_card, monkeypatch
):
    first = charge(cp, at=T0, uid=fleet_card.uid, kwh=10)  # (1.00 + 10 x 0.30) x 1.19 = 4.76
    second = charge(cp, at=T0 + timedelta(days=3), uid=fleet_card.uid, kwh=20)  # 8.33
    monkeypatch.setattr(clock, "now", lambda: T0 + timedelta(days=5))
    credit, reissued = tariff_services.cdr_reissue(cdr=second, reason="meter corrected")  # same gross again
    charge(cp, at=T0, uid="DRIVER-NO-ACCOUNT")  # not a customer account's: never invoiced
    june = charge(cp, at=datetime(2025, 6, 2, 8, 0, tzinfo=UTC), uid=fleet_card.uid)  # next month

    made = invoices.invoices_draft_due(now=AFTER_MAY)
    again = invoices.invoices_draft_due(now=AFTER_MAY + timedelta(hours=1))

    invoice = Invoice.objects.get()
    assert made == [invoice.pk] and again == []
    assert (invoice.number, invoice.kind, invoice.status) == ("ALPHA-INV-2025-000001", "invoice", "pending")
    assert (invoice.customer_account, invoice.period_start.isoformat(), invoice.period_end.isoformat()) == (
        account,
        "2025-05-01",
        "2025-06-01",
    )
    assert [line.cdr_id for line in invoice.lines.order_by("position")] == [
        first.pk,
        second.pk,
        credit.pk,
        reissued.pk,
    ]
    assert [line.gross for line in invoice.lines.order_by("position")] == [
        D("4.76"),
        D("8.33"),
        D("-8.33"),
        D("8.33"),
    ]
    assert (invoice.net, invoice.tax, invoice.gross) == (D("11.00"), D("2.09"), D("13.09"))
    assert invoice.due_days == 30
    energy = next(c for c in invoice.lines.get(cdr=first).components if c["component"] == "ENERGY")
    assert (energy["quantity"], energy["vat"], energy["net"]) == ("10", "19", "3.00")
    assert not InvoiceLine.objects.filter(cdr=june).exists()
    assert DocumentCounter.objects.get(organisation=org).last_number == 1
    assert AuditRecord.objects.filter(action="invoice.issue").count() == 1


def test_the_month_closes_in_the_issuing_organisations_time_zone(cp, org, fleet_card):
    charge(cp, at=T0, uid=fleet_card.uid)
    org.time_zone = "America/New_York"
    org.save()
    assert invoices.invoices_draft_due(now=AFTER_MAY) == []  # 31 May 18:30 in New York: May still runs
    assert not Invoice.objects.exists()
    org.time_zone = "Europe/Berlin"
    org.save()
    assert len(invoices.invoices_draft_due(now=AFTER_MAY)) == 1  # 1 June 00:30 in Berlin
    berlin_may = invoices.previous_month(now=AFTER_MAY, time_zone="Europe/Berlin")
    assert berlin_may.starts_at == datetime(2025, 4, 30, 22, 0, tzinfo=UTC)
    assert berlin_may.ends_at == datetime(2025, 5, 31, 22, 0, tzinfo=UTC)


def test_a_record_is_on_one_document_at_most(cp, org, fleet_card):
    """A record on an invoice is on no other document: the unique line per record holds in the database."""
    cdr = charge(cp, at=T0, uid=fleet_card.uid)
    invoices.invoices_draft_due(now=AFTER_MAY)
    invoice = Invoice.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceLine.objects.create(
            invoice=invoice, position=99, cdr=cdr, description="twice", net=0, tax=0, gross=0
        )


def test_a_session_paid_by_card_and_a_driver_on_account_are_told_apart(cp, org, account, fleet_card):
    """A session of a driver in the account (no fleet card) is the account's; one paid by card is not."""
    member = DriverFactory(driver_profile__customer_account=account)
    own_card = IdTokenFactory(uid="0400AA11BB", owner=member)
    by_member = charge(cp, at=T0, uid=own_card.uid)
    assert by_member.session.driver_session.driver == member  # started at the charger with their own card
    card_paid = charge(cp, at=T0 + timedelta(days=1), uid=fleet_card.uid)
    paid = DriverSessionFactory(
        charging_session=card_paid.session, driver=DriverFactory(), charge_point=cp, status="COMPLETED"
    )
    PaymentFactory(driver_session=paid, organisation=org)

    invoices.invoices_draft_due(now=AFTER_MAY)

    assert [line.cdr_id for line in Invoice.objects.get().lines.all()] == [by_member.pk]


# --- numbers under concurrency --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_issuing_with_a_rollback_leaves_no_gap():
    org = OrganisationFactory(invoice_prefix="GAP")
    first_holds, release = threading.Event(), threading.Event()
    numbers: dict[str, str] = {}

    class RolledBack(Exception):
        pass

    def first() -> None:
        try:
            with transaction.atomic():
                numbers["first"] = invoices.document_number_next(
                    organisation_id=org.pk, kind=DocumentKind.INVOICE, year=2025
                )
                first_holds.set()
                release.wait(30)
                raise RolledBack  # the issue fails after taking its number
        except RolledBack:
            pass
        finally:
            connection.close()

    def second() -> None:
        try:
            with transaction.atomic():
                numbers["second"] = invoices.document_number_next(
                    organisation_id=org.pk, kind=DocumentKind.INVOICE, year=2025
                )
        finally:
            connection.close()

    a = threading.Thread(target=first)
    a.start()
    try:
        assert first_holds.wait(30)
        b = threading.Thread(target=second)
        b.start()
        deadline = systime.monotonic() + 30
        waiting = False
        while not waiting and systime.monotonic() < deadline:  # until the second waits for the row lock
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                waiting = cursor.fetchone()[0] > 0
            systime.sleep(0.05)
        assert waiting and "second" not in numbers
    finally:
        release.set()
        a.join(30)
    b.join(30)
    assert numbers == {"first": "GAP-INV-2025-000001", "second": "GAP-INV-2025-000001"}
    with transaction.atomic():
        third = invoices.document_number_next(organisation_id=org.pk, kind=DocumentKind.INVOICE, year=2025)
        note = invoices.document_number_next(organisation_id=org.pk, kind=DocumentKind.CREDIT_NOTE, year=2025)
    assert (third, note) == ("GAP-INV-2025-000002", "GAP-CN-2025-000001")


@pytest.mark.django_db(transaction=True)
def test_concurrent_monthly_runs_with_a_rollback_leave_no_gap(cp, org, account, fleet_card):
    """One issuing run stores account A's invoice and then fails (its transaction rolls back, number
    and all) while the beat task's run issues every account at the same time: it waits for A, then
    numbers A and B 1 and 2. Nothing is lost, nothing skipped, nothing issued twice."""
    other = CustomerAccountFactory(organisation=org, name="Zeta Fleet")
    other_card = IdTokenFactory(uid="04F1EE7C99", customer_account=other, organisation=org)
    charge(cp, at=T0, uid=fleet_card.uid)
    charge(cp, at=T0 + timedelta(days=1), uid=other_card.uid)
    period = invoices.previous_month(now=AFTER_MAY, time_zone=org.time_zone)
    holding, release = threading.Event(), threading.Event()
    taken: dict[str, object] = {}

    class Failed(Exception):
        pass

    def failing_run() -> None:
        try:
            with transaction.atomic():
                invoice = invoices.invoice_draft(
                    organisation=org, account=account, currency="EUR", period=period, now=AFTER_MAY
                )
                taken["failed"] = invoice.number
                holding.set()
                release.wait(30)
                raise Failed  # e.g. the worker is killed after storing, before its commit
        except Failed:
            pass
        finally:
            connection.close()

    def beat_run() -> None:
        try:
            taken["beat"] = invoices.invoices_draft_due(now=AFTER_MAY)
        finally:
            connection.close()

    a = threading.Thread(target=failing_run)
    a.start()
    try:
        assert holding.wait(30)
        b = threading.Thread(target=beat_run)
        b.start()
        deadline = systime.monotonic() + 30
        waiting = False
        while not waiting and systime.monotonic() < deadline:  # until the beat run waits for a lock
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                waiting = cursor.fetchone()[0] > 0
            systime.sleep(0.05)
        assert waiting and "beat" not in taken
    finally:
        release.set()
        a.join(30)
    b.join(30)
    assert taken["failed"] == "ALPHA-INV-2025-000001"  # taken, then given back by the rollback
    numbers = dict(Invoice.objects.values_list("customer_account__name", "number"))
    assert numbers == {"Nordlicht Logistik": "ALPHA-INV-2025-000001", "Zeta Fleet": "ALPHA-INV-2025-000002"}
    assert sorted(taken["beat"]) == sorted(Invoice.objects.values_list("pk", flat=True))
    assert DocumentCounter.objects.get(organisation=org, kind=DocumentKind.INVOICE).last_number == 2
    assert invoices.invoices_draft_due(now=AFTER_MAY) == []  # run again: nothing more, no number taken
    assert DocumentCounter.objects.get(organisation=org, kind=DocumentKind.INVOICE).last_number == 2


# --- Stripe ----------------------------------------------------------------------------------------


class StripeRecorder(stripe.RequestsClient):
    """Sends everything to localstripe except what it lacks (creating an invoice with the options a real
    invoice needs, finalising it): those requests are recorded and answered as Stripe answers them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.recorded: list[tuple[str, str, dict, dict]] = []

    def request(self, method, url, headers, post_data=None):
        path = urllib.parse.urlsplit(url).path
        if method.lower() == "post" and (path == "/v1/invoices" or path.endswith("/finalize")):
            params = urllib.parse.parse_qs(
                post_data.decode() if isinstance(post_data, bytes) else post_data or ""
            )
            self.recorded.append((method.lower(), path, {k: v[0] for k, v in params.items()}, dict(headers)))
            stripe_id = path.split("/")[3] if path.endswith("/finalize") else f"in_rec{len(self.recorded)}"
            status = "open" if path.endswith("/finalize") else "draft"
            body = {"id": stripe_id, "object": "invoice", "status": status}
            return json.dumps(body).encode(), 200, {}
        return super().request(method, url, headers, post_data)


@pytest.fixture
def recorder(stripe_server, monkeypatch):
    recording = StripeRecorder(timeout=5)
    client = stripe.StripeClient(
        SECRET_KEY, base_addresses={"api": stripe_server.url}, http_client=recording, max_network_retries=0
    )
    monkeypatch.setattr(stripe_client, "client", lambda: client)
    return recording


def test_the_task_sends_the_invoice_to_stripe_once(
    cp, org, account, fleet_card, recorder, stripe_server, monkeypatch
):
    first = charge(cp, at=T0, uid=fleet_card.uid, kwh=10)
    charge(cp, at=T0 + timedelta(days=1), uid=fleet_card.uid, kwh=20)
    monkeypatch.setattr(clock, "now", lambda: AFTER_MAY)
    monkeypatch.setattr(tasks.invoice_send_task, "delay", lambda pk: tasks.invoice_send_task.run(pk))

    assert tasks.invoices_issue_task() == 1
    assert tasks.invoices_issue_task() == 0  # issued: nothing pending, nothing sent again

    invoice = Invoice.objects.get()
    assert (invoice.number, invoice.status, invoice.stripe_invoice_id) == (
        "ALPHA-INV-2025-000001",
        "issued",
        "in_rec1",
    )
    assert invoice.finalised_at == AFTER_MAY
    customer = AccountCustomer.objects.get(organisation=org, customer_account=account)
    # Against localstripe: the account's customer and one invoice item per record, in minor units.
    status, items = stripe_server.request("GET", f"/v1/invoiceitems?customer={customer.stripe_id}&limit=10")
    assert status == 200
    assert sorted(item["amount"] for item in items["data"]) == [476, 833]
    assert {item["currency"] for item in items["data"]} == {"eur"}
    assert invoice.lines.get(cdr=first).stripe_item_id in {item["id"] for item in items["data"]}
    status, found = stripe_server.request("GET", f"/v1/customers/{customer.stripe_id}")
    assert (status, found["name"]) == (200, "Nordlicht Logistik")
    # What localstripe lacks: the invoice and its finalisation, as our client sent them, once each.
    assert [(m, p) for m, p, _params, _h in recorder.recorded] == [
        ("post", "/v1/invoices"),
        ("post", "/v1/invoices/in_rec1/finalize"),
    ]
    _m, _p, params, headers = recorder.recorded[0]
    assert params["customer"] == customer.stripe_id
    assert params["collection_method"] == "send_invoice"
    assert params["days_until_due"] == "30"
    assert params["pending_invoice_items_behavior"] == "include"
    assert params["metadata[cpo_invoice_number]"] == "ALPHA-INV-2025-000001"
    assert params["custom_fields[0][value]"] == "ALPHA-INV-2025-000001"
    assert headers["Idempotency-Key"] == f"cpo-invoice-{invoice.pk}"
    assert recorder.recorded[1][2] == {"auto_advance": "false"}
    assert recorder.recorded[1][3]["Idempotency-Key"] == f"cpo-invoice-finalize-{invoice.pk}"
    assert StripeCall.objects.filter(operation="invoice_item_create").count() == 2


def test_a_failed_finalisation_is_resumed_without_a_second_invoice(
    cp, org, fleet_card, recorder, stripe_server, monkeypatch
):
    charge(cp, at=T0, uid=fleet_card.uid)
    invoices.invoices_draft_due(now=AFTER_MAY)
    invoice = Invoice.objects.get()
    original = StripeRecorder.request
    calls = {"n": 0}

    def flaky(self, method, url, headers, post_data=None):
        if url.endswith("/finalize") and calls["n"] == 0:
            calls["n"] += 1
            return b'{"error": {"message": "try later", "type": "api_error"}}', 500, {}
        return original(self, method, url, headers, post_data)

    monkeypatch.setattr(StripeRecorder, "request", flaky)
    with pytest.raises(stripe_client.PaymentProviderUnavailable):
        invoices.invoice_send(invoice.pk)
    assert Invoice.objects.get().status == InvoiceStatus.PENDING
    sent = invoices.invoice_send(invoice.pk)
    assert sent.status == InvoiceStatus.ISSUED
    assert [p for _m, p, _params, _h in recorder.recorded] == [
        "/v1/invoices",
        "/v1/invoices/in_rec1/finalize",
    ]
    assert (Invoice.objects.count(), sent.number) == (1, "ALPHA-INV-2025-000001")


# --- credit notes ----------------------------------------------------------------------------------


def test_an_invoice_is_corrected_by_one_credit_note(cp, org, fleet_card, monkeypatch):
    charge(cp, at=T0, uid=fleet_card.uid)
    invoices.invoices_draft_due(now=AFTER_MAY)
    invoice = Invoice.objects.get()
    monkeypatch.setattr(clock, "now", lambda: AFTER_MAY + timedelta(days=3))

    note = invoices.credit_note_for_invoice(invoice=invoice, reason="wrong account")

    assert (note.kind, note.number, note.credits, note.gross) == (
        "credit_note",
        "ALPHA-CN-2025-000001",
        invoice,
        D("-4.76"),
    )
    assert [line.credits_line_id for line in note.lines.all()] == [line.pk for line in invoice.lines.all()]
    assert note.lines.get().vat_lines[0]["tax"] == "-0.76"
    with pytest.raises(Conflict):
        invoices.credit_note_for_invoice(invoice=invoice, reason="again")
    with pytest.raises(Conflict):
        invoices.credit_note_for_invoice(invoice=note, reason="a note")
    assert Invoice.objects.count() == 2
    invoice.refresh_from_db()
    assert invoice.gross == D("4.76")  # the invoice itself never changes
    assert AuditRecord.objects.filter(action="invoice.credit").count() == 1


def test_a_credited_record_gets_its_own_credit_note_and_is_then_not_invoiced(
    cp, org, fleet_card, monkeypatch
):
    cdr = charge(cp, at=T0, uid=fleet_card.uid)
    monkeypatch.setattr(clock, "now", lambda: T0 + timedelta(days=1))
    credit = tariff_services.cdr_credit(cdr=cdr, reason="charger fault")
    with pytest.raises(Conflict):
        invoices.credit_note_for_cdr(credit=cdr)
    note = invoices.credit_note_for_cdr(credit=credit)
    assert invoices.credit_note_for_cdr(credit=credit) == note  # once
    assert (note.number, note.gross, note.reason) == ("ALPHA-CN-2025-000001", D("-4.76"), "charger fault")
    invoices.invoices_draft_due(now=AFTER_MAY)
    invoice = Invoice.objects.get(kind="invoice")
    assert [line.cdr_id for line in invoice.lines.all()] == [cdr.pk]


def test_a_no_show_record_of_a_fleet_card_is_on_the_accounts_invoice(cp, org, account, fleet_card):
    """A reservation no charge followed, priced by the tariff, has a record of its own (no session): a
    fleet card's goes on its account's invoice; one paid by card does not."""
    tariff = TariffFactory(organisation=org, name="Reservations")
    TariffElementFactory(
        tariff=tariff, position=0, energy_price=None, flat_price=D("4.00"), reservation="RESERVATION_EXPIRES"
    )
    TariffAssignmentFactory(tariff=tariff, charge_point=cp)
    record = tariff_services.cdr_issue_for_reservation(
        reservation_ref=77,
        charge_point=cp,
        evse_id=1,
        id_tag=fleet_card.uid,
        started_at=T0,
        ended_at=T0 + 15 * M,
        expired=True,
        customer_account_id=account.pk,
        now=T0 + 15 * M,
    )
    assert record.session_id is None and record.gross == D("4.76")  # 4.00 + 19 %
    driver = DriverFactory()
    paid = tariff_services.cdr_issue_for_reservation(
        reservation_ref=78,
        charge_point=cp,
        evse_id=1,
        id_tag=IdTokenFactory(owner=driver).uid,
        started_at=T0,
        ended_at=T0 + 15 * M,
        expired=True,
        now=T0 + 15 * M,
    )
    PaymentFactory(cdr=paid, organisation=org, driver_session=None)

    invoices.invoices_draft_due(now=AFTER_MAY)

    assert [line.cdr_id for line in Invoice.objects.get().lines.all()] == [record.pk]
