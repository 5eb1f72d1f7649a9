"""Invoices and credit notes as documents (HTML and PDF), rendered as the driver's receipt is
(apps/tariffs/receipts.py): each charge detail record a line with its tariff components itemised (energy,
charging time, parking time, session fee) and their VAT rates, then net, VAT and gross per VAT rate and the
totals. Times are in the issuing organisation's time zone. A document is rendered from its stored rows
only: the same document gives the same bytes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from fpdf import FPDF

from apps.billing.choices import DocumentKind
from apps.billing.invoices import vat_totals
from apps.billing.models import Invoice
from apps.tariffs.receipts import COMPONENT_NAMES, latin, pdf_vat_and_total


@dataclass(frozen=True)
class DocumentComponent:
    label: str
    quantity: str
    unit_price: str
    vat: str
    net: str


@dataclass(frozen=True)
class DocumentLine:
    position: int
    description: str
    components: tuple[DocumentComponent, ...]
    net: str
    tax: str
    gross: str


@dataclass(frozen=True)
class Document:
    title: str
    number: str
    issued_at: datetime
    issued: str
    issued_by: str
    issuer_address: str
    issuer_vat_id: str
    customer: str
    customer_address: str
    customer_vat_id: str
    period: str
    credits: str
    reason: str
    due: str
    currency: str
    lines: tuple[DocumentLine, ...]
    vat_lines: tuple[tuple[str, str, str, str], ...]
    net: str
    tax: str
    gross: str


def document_for(*, invoice: Invoice) -> Document:
    org = invoice.organisation
    account = invoice.customer_account
    tz = ZoneInfo(org.time_zone)
    is_note = invoice.kind == DocumentKind.CREDIT_NOTE
    title = (_("Credit note {number}") if is_note else _("Invoice {number}")).format(number=invoice.number)
    lines = tuple(
        DocumentLine(
            position=line.position,
            description=line.description,
            components=tuple(
                DocumentComponent(
                    label=_(COMPONENT_NAMES.get(c.get("component", ""), c.get("component", ""))),
                    quantity=f"{c.get('quantity', '')} {c.get('unit', '')}".strip(),
                    unit_price=str(c.get("price", "")),
                    vat=f"{c.get('vat', '')} %",
                    net=str(c.get("net", "")),
                )
                for c in line.components
            ),
            net=str(line.net),
            tax=str(line.tax),
            gross=str(line.gross),
        )
        for line in invoice.lines.order_by("position")
    )
    return Document(
        title=title,
        number=invoice.number,
        issued_at=invoice.issued_at,
        issued=invoice.issued_at.astimezone(tz).strftime("%Y-%m-%d"),
        issued_by=org.legal_name or org.name,
        issuer_address=org.address,
        issuer_vat_id=org.vat_id,
        customer=account.name if account else "",
        customer_address=(
            f"{account.address_line}\n{account.postal_code} {account.city}\n{account.country}".strip()
            if account
            else ""
        ),
        customer_vat_id=account.vat_id if account else "",
        period=(
            _("{start} to {end}").format(start=invoice.period_start, end=invoice.period_end)
            if invoice.period_start and invoice.period_end
            else ""
        ),
        credits=invoice.credits.number if invoice.credits_id and invoice.credits else "",
        reason=invoice.reason,
        due=(
            _("Payable within {days} days.").format(days=invoice.due_days)
            if invoice.kind == DocumentKind.INVOICE and invoice.due_days
            else ""
        ),
        currency=invoice.currency,
        lines=lines,
        vat_lines=tuple(
            (f"{row['vat'].normalize():f}", str(row["net"]), str(row["tax"]), str(row["gross"]))
            for row in vat_totals(invoice)
        ),
        net=str(invoice.net),
        tax=str(invoice.tax),
        gross=str(invoice.gross),
    )


def document_html(*, invoice: Invoice, request: Any = None) -> str:
    return render_to_string("billing/invoice.html", {"doc": document_for(invoice=invoice)}, request=request)


def document_pdf(*, invoice: Invoice) -> bytes:
    d = document_for(invoice=invoice)
    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_title(latin(d.title))
    pdf.set_creation_date(d.issued_at)  # the same document gives the same bytes
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 10, latin(d.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", size=10)
    for text in (
        d.issued_by,
        d.issuer_address,
        _("VAT id: {vat_id}").format(vat_id=d.issuer_vat_id) if d.issuer_vat_id else "",
    ):
        if text:
            pdf.multi_cell(0, 5, latin(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    facts = [
        (_("Customer"), d.customer),
        (_("Address"), d.customer_address.replace("\n", ", ")),
        (_("VAT id"), d.customer_vat_id),
        (_("Issued"), d.issued),
        (_("Period"), d.period),
        (_("Credits"), d.credits),
        (_("Reason"), d.reason),
    ]
    for label, value in facts:
        if value:
            pdf.cell(40, 6, latin(label))
            pdf.multi_cell(0, 6, latin(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    widths = (50, 35, 35, 25, 35)
    for line in d.lines:
        pdf.set_font("helvetica", "B", 9)
        pdf.multi_cell(0, 5, latin(f"{line.position}. {line.description}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("helvetica", size=9)
        for c in line.components:
            for width, value in zip(
                widths,
                (c.label, c.quantity, f"{c.unit_price} {d.currency}", c.vat, f"{c.net} {d.currency}"),
                strict=True,
            ):
                pdf.cell(width, 5, latin(value))
            pdf.ln()
        pdf.cell(
            0,
            5,
            latin(
                _("Line total: net {net}, VAT {tax}, gross {gross} {currency}").format(
                    net=line.net, tax=line.tax, gross=line.gross, currency=d.currency
                )
            ),
            new_x="LMARGIN",
            new_y="NEXT",
        )
        pdf.ln(1)
    pdf.ln(2)
    pdf.set_font("helvetica", size=10)
    pdf_vat_and_total(pdf, vat_lines=d.vat_lines, currency=d.currency, net=d.net, tax=d.tax, gross=d.gross)
    if d.due:
        pdf.set_font("helvetica", size=10)
        pdf.cell(0, 6, latin(d.due), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
