"""A completed driver session's receipt, as HTML and as PDF, from its issued charge detail record (here,
with the records it is made of, not in charging: charging does not know prices).

The numbers come from the CDR's price breakdown (the same figures finance sees); times are shown in the
location's time zone. Receipts exist once the CDR is issued: before that, receipt_not_ready (409). A
session without a tariff in force is free: its receipt says so. The number is the CDR's receipt number
(per operator and year), never a database id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from fpdf import FPDF

from apps.charging.choices import DriverSessionStatus
from apps.charging.driver_selectors import session_usage
from apps.charging.models import DriverSession
from apps.tariffs.choices import PricingNote
from apps.tariffs.selectors import cdr_for_session
from cpo.exceptions import Conflict

# Translated where shown (gettext_noop only marks them for `make messages`).
COMPONENT_NAMES = {
    "ENERGY": gettext_noop("Energy"),
    "TIME": gettext_noop("Charging time"),
    "PARKING_TIME": gettext_noop("Parking time"),
    "FLAT": gettext_noop("Session fee"),
    "RESERVATION_FLAT": gettext_noop("Reservation fee"),
    "RESERVATION_TIME": gettext_noop("Reservation time"),
}


@dataclass(frozen=True)
class ReceiptLine:
    label: str
    quantity: str
    unit_price: str
    vat: str
    net: str


@dataclass(frozen=True)
class Receipt:
    number: str
    issued_at: datetime
    issued: str
    issued_by: str
    issuer_address: str
    issuer_vat_id: str
    driver: str
    location: str
    charger: str
    connector: int
    started: str
    stopped: str
    energy_kwh: str
    duration: str
    currency: str
    lines: tuple[ReceiptLine, ...]
    vat_lines: tuple[tuple[str, str, str, str], ...]  # rate %, net, VAT, gross
    net: str
    tax: str
    gross: str
    free_because: str = ""  # why nothing is charged, when it is free by rule rather than by price


def _local(at: datetime | None, tz: str) -> str:
    return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z") if at else "-"


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min"


def _number(value: Decimal, places: int = 3) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)).normalize():f}"


def receipt_for(*, session: DriverSession) -> Receipt:
    """The receipt data; receipt_not_ready (409) until the session completed and its CDR is issued."""
    charging = session.charging_session
    cdr = cdr_for_session(session=charging) if charging is not None else None
    if session.status != DriverSessionStatus.COMPLETED or charging is None or cdr is None:
        raise Conflict(
            _("The receipt is ready once the session is completed and priced."), code="receipt_not_ready"
        )
    usage = session_usage(session=session)
    cost = usage.cost
    org = charging.organisation
    location = session.charge_point.location
    tz = location.time_zone
    money = cost.as_dict()
    lines = tuple(
        ReceiptLine(
            label=_(COMPONENT_NAMES.get(line.component, line.component)),
            quantity=f"{_number(line.quantity)} {line.unit}".strip(),
            unit_price=_number(line.price, 4),
            vat=f"{_number(line.vat, 2)} %",
            net=row["net"],
        )
        for line, row in zip(cost.lines, money["lines"], strict=True)
    )
    vat_lines = tuple((_number(v.vat, 2), str(v.net), str(v.tax), str(v.gross)) for v in cost.vat_lines)
    return Receipt(
        number=cdr.number,
        issued_at=cdr.issued_at,
        issued=_local(cdr.issued_at, tz),
        issued_by=org.legal_name or org.name,
        issuer_address=org.address,
        issuer_vat_id=org.vat_id,
        driver=session.driver.full_name or session.driver.email,
        location=f"{location.name}, {location.address}, {location.postal_code} {location.city}".replace(
            " ,", ","
        ),
        charger=session.charge_point.identity,
        connector=session.evse_id,
        started=_local(usage.started_at, tz),
        stopped=_local(usage.stopped_at, tz),
        energy_kwh=_number(Decimal(usage.energy_wh) / 1000),
        duration=_duration(usage.duration_s),
        currency=cost.currency,
        lines=lines,
        vat_lines=vat_lines,
        net=str(money["net"]),
        tax=str(money.get("tax", money.get("vat"))),
        gross=str(money["gross"]),
        free_because=(
            _("Free: no tariff in force at this charge point.")
            if cdr.pricing_note == PricingNote.NO_TARIFF
            else ""
        ),
    )


def receipt_html(*, session: DriverSession, request: Any = None) -> str:
    return render_to_string(
        "charging/receipt.html", {"receipt": receipt_for(session=session)}, request=request
    )


def latin(text: str) -> str:
    """The PDF's core font covers Windows-1252 (€ included); anything else becomes '?'."""
    return text.encode("cp1252", errors="replace").decode("cp1252")


def pdf_vat_and_total(
    pdf: FPDF,
    *,
    vat_lines: Iterable[tuple[Any, Any, Any, Any]],
    currency: str,
    net: Any,
    tax: Any,
    gross: Any,
) -> None:
    """The closing lines of a receipt or an invoice: one per VAT rate, then the total in bold."""
    for rate, rate_net, rate_tax, rate_gross in vat_lines:
        pdf.cell(
            0,
            6,
            latin(
                _("VAT {rate} % on {net}: {tax} (gross {gross}) {currency}").format(
                    rate=rate, net=rate_net, tax=rate_tax, gross=rate_gross, currency=currency
                )
            ),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.set_font("helvetica", "B", 12)
    pdf.cell(
        0,
        8,
        latin(
            _("Total {gross} {currency} (net {net}, VAT {tax})").format(
                gross=gross, currency=currency, net=net, tax=tax
            )
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )


def receipt_pdf(*, session: DriverSession) -> bytes:
    r = receipt_for(session=session)
    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_title(latin(_("Receipt {number}").format(number=r.number)))
    pdf.set_creation_date(r.issued_at)  # the same receipt gives the same bytes
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 10, latin(_("Receipt {number}").format(number=r.number)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", size=10)
    for text in (
        r.issued_by,
        r.issuer_address,
        _("VAT id: {vat_id}").format(vat_id=r.issuer_vat_id) if r.issuer_vat_id else "",
    ):
        if text:
            pdf.multi_cell(0, 5, latin(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    facts = [
        (_("Issued"), r.issued),
        (_("Driver"), r.driver),
        (_("Location"), r.location),
        (_("Charger"), f"{r.charger} / {r.connector}"),
        (_("Started"), r.started),
        (_("Stopped"), r.stopped),
        (_("Energy"), f"{r.energy_kwh} kWh"),
        (_("Duration"), r.duration),
    ]
    for label, value in facts:
        pdf.cell(40, 6, latin(label))
        pdf.cell(0, 6, latin(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    if r.free_because:
        pdf.set_font("helvetica", "B", 11)
        pdf.multi_cell(0, 6, latin(r.free_because), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.set_font("helvetica", "B", 10)
    widths = (50, 35, 35, 25, 35)
    for width, title in zip(
        widths, (_("Item"), _("Quantity"), _("Unit price (net)"), _("VAT"), _("Net")), strict=True
    ):
        pdf.cell(width, 7, latin(title), border="B")
    pdf.ln()
    pdf.set_font("helvetica", size=10)
    for line in r.lines:
        for width, value in zip(
            widths,
            (
                line.label,
                line.quantity,
                f"{line.unit_price} {r.currency}",
                line.vat,
                f"{line.net} {r.currency}",
            ),
            strict=True,
        ):
            pdf.cell(width, 6, latin(value))
        pdf.ln()
    pdf.ln(2)
    pdf_vat_and_total(pdf, vat_lines=r.vat_lines, currency=r.currency, net=r.net, tax=r.tax, gross=r.gross)
    return bytes(pdf.output())
