"""The finance console: invoices and credit notes with their HTML and PDF documents, revenue per location
and month, CSV exports (audited), all within the finance staff member's organisations and read-only."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client

from apps.accounts.models import AuditRecord
from apps.billing import invoices
from apps.billing.documents import document_for, document_html, document_pdf
from apps.billing.models import Invoice
from tests.billing.test_invoices import AFTER_MAY, T0, charge
from tests.billing.test_invoices import account as account
from tests.billing.test_invoices import cp as cp
from tests.billing.test_invoices import fleet_card as fleet_card
from tests.billing.test_invoices import no_broker as no_broker
from tests.billing.test_invoices import org as org
from tests.factories import OrganisationFactory, StaffUserFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/billing/invoice/"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def invoice(cp, org, fleet_card):
    charge(cp, at=T0, uid=fleet_card.uid, kwh=10)
    charge(cp, at=T0 + timedelta(days=2), uid=fleet_card.uid, kwh=20)
    invoices.invoices_draft_due(now=AFTER_MAY)
    return Invoice.objects.get()


def test_the_invoice_document_itemises_components_and_totals_per_vat_rate(invoice):
    doc = document_for(invoice=invoice)
    assert (doc.title, doc.customer, doc.period) == (
        "Invoice ALPHA-INV-2025-000001",
        "Nordlicht Logistik",
        "2025-05-01 to 2025-06-01",
    )
    components = {c.label: (c.quantity, c.unit_price, c.vat, c.net) for c in doc.lines[0].components}
    assert components["Energy"] == ("10 kWh", "0.3", "19 %", "3.00")
    assert set(components) == {"Energy", "Session fee"} and components["Session fee"][3] == "1.00"
    assert doc.vat_lines == (("19", "11.00", "2.09", "13.09"),)
    assert (doc.net, doc.tax, doc.gross) == ("11.00", "2.09", "13.09")
    html = document_html(invoice=invoice)
    assert "ALPHA-INV-2025-000001" in html and "13.09" in html and "Payable within 30 days." in html
    pdf = document_pdf(invoice=invoice)
    assert pdf.startswith(b"%PDF") and pdf == document_pdf(invoice=invoice)  # same document, same bytes


def test_a_credit_note_document_names_the_invoice_it_credits(invoice):
    note = invoices.credit_note_for_invoice(invoice=invoice, reason="wrong account")
    doc = document_for(invoice=note)
    assert doc.title.startswith("Credit note ") and doc.credits == "ALPHA-INV-2025-000001"
    assert (doc.gross, doc.vat_lines) == ("-13.09", (("19", "-11.00", "-2.09", "-13.09"),))


def test_finance_sees_its_invoices_documents_and_revenue_and_nothing_of_another_operator(invoice, org):
    other = OrganisationFactory(slug="other-fin", invoice_prefix="OTHER")
    outsider = signed_in(StaffUserFactory(organisation=other, role="Finance"))
    finance = signed_in(StaffUserFactory(organisation=org, role="Finance"))

    page = finance.get(CHANGELIST)
    assert page.status_code == 200 and "ALPHA-INV-2025-000001" in page.content.decode()
    assert finance.get(f"{CHANGELIST}{invoice.pk}/document.html").content.count(b"ALPHA-INV-2025-000001") >= 1
    pdf = finance.get(f"{CHANGELIST}{invoice.pk}/document.pdf")
    assert (pdf.status_code, pdf["Content-Type"]) == (200, "application/pdf")
    detail = finance.get(f"{CHANGELIST}{invoice.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert finance.post(f"{CHANGELIST}{invoice.pk}/delete/", {"post": "yes"}).status_code == 403

    assert "ALPHA-INV" not in outsider.get(CHANGELIST).content.decode()
    assert outsider.get(f"{CHANGELIST}{invoice.pk}/document.html").status_code == 404
    assert outsider.get(f"{CHANGELIST}{invoice.pk}/document.pdf").status_code == 404
    assert "Depot" not in outsider.get(f"{CHANGELIST}revenue/").content.decode()

    revenue = finance.get(f"{CHANGELIST}revenue/?format=csv")
    rows = list(csv.reader(io.StringIO(revenue.content.decode())))
    assert rows == [
        ["month", "location", "currency", "records", "energy_kwh", "net", "tax", "gross"],
        ["2025-05", "Depot", "EUR", "2", "30.000", "11.00", "2.09", "13.09"],
    ]
    assert AuditRecord.objects.filter(action="revenue.export").count() == 1
    technician = signed_in(StaffUserFactory(organisation=org, role="Technician"))
    assert technician.get(f"{CHANGELIST}revenue/").status_code == 403
    assert technician.get(f"{CHANGELIST}{invoice.pk}/document.pdf").status_code == 403


def test_csv_export_of_selected_invoices_is_audited_and_scoped(invoice, org):
    finance = signed_in(StaffUserFactory(organisation=org, role="Finance"))
    response = finance.post(CHANGELIST, {"action": "export_csv", "_selected_action": [invoice.pk]})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["number", "kind", "status"]
    assert rows[1][:3] == ["ALPHA-INV-2025-000001", "invoice", "pending"]
    assert rows[1][rows[0].index("gross")] == "13.09"
    assert AuditRecord.objects.filter(action="invoice.export").count() == 1
    outsider = signed_in(StaffUserFactory(organisation=OrganisationFactory(slug="x-fin"), role="Finance"))
    refused = outsider.post(CHANGELIST, {"action": "export_csv", "_selected_action": [invoice.pk]})
    assert list(csv.reader(io.StringIO(refused.content.decode()))) == [rows[0]]  # nothing of ours


def test_finance_credits_an_invoice_from_the_admin_with_a_reason(invoice, org):
    finance = signed_in(StaffUserFactory(organisation=org, role="Finance"))
    selected = {"action": "credit_note", "_selected_action": [invoice.pk]}

    asks = finance.post(CHANGELIST, selected)
    assert asks.status_code == 200 and b'name="reason"' in asks.content
    no_reason = finance.post(CHANGELIST, {**selected, "confirm": "yes", "reason": "  "})
    assert b"Give a reason for the credit note." in no_reason.content
    assert not Invoice.objects.filter(kind="credit_note").exists()

    done = finance.post(CHANGELIST, {**selected, "confirm": "yes", "reason": "wrong account"}, follow=True)
    assert "ALPHA-CN-" in done.content.decode()
    note = Invoice.objects.get(kind="credit_note")
    assert (note.credits, note.reason, note.gross) == (invoice, "wrong account", -invoice.gross)
    assert AuditRecord.objects.filter(action="invoice.credit", outcome="succeeded").count() == 1
    again = finance.post(CHANGELIST, {**selected, "confirm": "yes", "reason": "again"}, follow=True)
    assert "already been credited" in again.content.decode()
    assert Invoice.objects.filter(kind="credit_note").count() == 1

    support = signed_in(StaffUserFactory(organisation=org, role="Support"))
    assert support.post(CHANGELIST, {**selected, "confirm": "yes", "reason": "x"}).status_code == 403
    outsider = signed_in(StaffUserFactory(organisation=OrganisationFactory(slug="o-cn"), role="Finance"))
    outsider.post(CHANGELIST, {**selected, "confirm": "yes", "reason": "taken"})
    assert Invoice.objects.filter(kind="credit_note").count() == 1
