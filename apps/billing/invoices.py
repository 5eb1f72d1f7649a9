"""Monthly invoices for customer accounts and credit notes, numbered gap-free per issuing organisation.

A customer account's sessions are not pre-authorised (the driver start marks them "paid on account"):
on the 1st of each month, in the issuing organisation's time zone, `invoices_issue_due` gives each
(issuing organisation, customer account, currency) one invoice for the charge detail records issued in the
previous month, credits of corrected records included (negative lines), then sends it to Stripe: the
account's Stripe customer (one per issuing organisation), one invoice item per record, the invoice
(`send_invoice`, the account's payment terms) and its finalisation.

Two steps, so that no Stripe call runs inside a transaction holding locks:
1. `invoice_draft`: in one transaction, under the customer account's row lock, find the records not yet on
   any document, take the next number from the organisation's locked `DocumentCounter` row and store the
   invoice with its lines. A rollback gives the number back; a second run finds the invoice (and the
   database's unique constraint refuses a duplicate), so running the task twice gives one invoice and one
   number.
2. `invoice_send`: the Stripe calls, each under an idempotency key derived from our ids (`StripeCall`), so a
   retry resumes where the last attempt stopped.

Credit notes (`credit_note_for_invoice`, `credit_note_for_cdr`) are documents of our own with their own
series; they are not sent to Stripe (a refund of a card payment may point at one).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Case, F, OuterRef, QuerySet, Subquery, When
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from apps.accounts.models import CustomerAccount, IdToken, Organisation
from apps.accounts.services import audit_record_create
from apps.billing import stripe_client
from apps.billing.choices import DocumentKind, InvoiceStatus
from apps.billing.models import AccountCustomer, DocumentCounter, Invoice, InvoiceLine
from apps.tariffs.choices import CdrKind
from apps.tariffs.models import ChargeDetailRecord
from apps.tariffs.pricing import minor_digits, quantum, round_money
from cpo import clock
from cpo.exceptions import Conflict

logger = logging.getLogger(__name__)

BILLED_TO = ("account_id", "currency")
NUMBER_INFIX = {DocumentKind.INVOICE: "INV", DocumentKind.CREDIT_NOTE: "CN"}


# --- numbers -------------------------------------------------------------------------------------


def document_number_next(*, organisation_id: int, kind: str, year: int) -> str:
    """The next number of the organisation's series (kind, year): `VOL-INV-2026-000001`. Call inside the
    transaction that stores the document: the counter row stays locked until it commits, and a rollback
    gives the number back."""
    DocumentCounter.objects.bulk_create(
        [DocumentCounter(organisation_id=organisation_id, kind=kind, year=year)], ignore_conflicts=True
    )
    counter = (
        DocumentCounter.objects.select_for_update(no_key=True)
        .select_related("organisation")
        .get(organisation_id=organisation_id, kind=kind, year=year)
    )
    number = counter.last_number + 1
    DocumentCounter.objects.filter(pk=counter.pk).update(last_number=number)
    return f"{counter.organisation.invoice_prefix}-{NUMBER_INFIX[DocumentKind(kind)]}-{year}-{number:06d}"


# --- periods -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A calendar month in a time zone: [start, end) as dates and as aware datetimes."""

    first_day: date
    next_first_day: date
    starts_at: datetime
    ends_at: datetime


def month_period(*, first_day: date, time_zone: str) -> Period:
    tz = ZoneInfo(time_zone)
    next_first = date(first_day.year + (first_day.month == 12), first_day.month % 12 + 1, 1)
    return Period(
        first_day=first_day,
        next_first_day=next_first,
        starts_at=datetime.combine(first_day, time.min, tzinfo=tz),
        ends_at=datetime.combine(next_first, time.min, tzinfo=tz),
    )


def previous_month(*, now: datetime, time_zone: str) -> Period:
    """The month before the one `now` falls in, in `time_zone` (on 1 March 00:30 in Berlin: February)."""
    local = now.astimezone(ZoneInfo(time_zone)).date()
    first_this = local.replace(day=1)
    first_prev = date(first_this.year - (first_this.month == 1), (first_this.month - 2) % 12 + 1, 1)
    return month_period(first_day=first_prev, time_zone=time_zone)


# --- which records ---------------------------------------------------------------------------------


def _account_of_session() -> Any:
    """The customer account a record's session is billed to: its token's, else its driver's. A record of
    its own (a reservation no charge followed: no session) is billed by its token (uid): the token's
    account, else its owner's."""
    token = IdToken.objects.filter(uid=OuterRef("id_tag")).order_by("pk")
    account_id = BigIntegerField()
    return Coalesce(
        F("session__id_token__customer_account"),
        F("session__driver_session__driver__driver_profile__customer_account"),
        Case(
            When(
                session__isnull=True,
                then=Coalesce(
                    Subquery(token.values("customer_account")[:1]),
                    Subquery(token.values("owner__driver_profile__customer_account")[:1]),
                    output_field=account_id,
                ),
            ),
            output_field=account_id,
        ),
        output_field=account_id,
    )


def cdrs_on_account(*, organisation_id: int, period: Period) -> QuerySet[ChargeDetailRecord]:
    """Records the organisation issued in `period` for sessions billed to a customer account (not paid by
    card) that are on no document yet, annotated with `account_id`."""
    return (
        ChargeDetailRecord.objects.filter(
            organisation_id=organisation_id,
            issued_at__gte=period.starts_at,
            issued_at__lt=period.ends_at,
            invoice_line__isnull=True,
            session__driver_session__payment__isnull=True,
            own_payment__isnull=True,
        )
        .annotate(account_id=_account_of_session())
        .filter(**{"account_id__isnull": False})
    )


# --- lines ---------------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _line_fields(cdr: ChargeDetailRecord, time_zone: str) -> dict[str, Any]:
    """What a record's line shows: its components and VAT rates from the price breakdown, amounts
    rounded to the currency's minor unit (negative for a credit)."""
    sign = Decimal(-1) if cdr.kind == CdrKind.CREDIT else Decimal(1)
    currency = cdr.currency
    breakdown = cdr.breakdown or {}
    components = [
        {
            "component": row.get("component", ""),
            "quantity": str(row.get("quantity", "")),
            "unit": row.get("unit", ""),
            "price": str(row.get("price", "")),
            "vat": str(row.get("vat", "")),
            "net": str(round_money(sign * _dec(row.get("net", "0")), currency)),
            "gross": str(round_money(sign * _dec(row.get("gross", "0")), currency)),
        }
        for row in breakdown.get("lines", [])
    ]
    vat_lines = [
        {
            "vat": str(row["vat"]),
            "net": str(round_money(sign * _dec(row["net"]), currency)),
            "tax": str(round_money(sign * _dec(row["tax"]), currency)),
            "gross": str(round_money(sign * _dec(row["gross"]), currency)),
        }
        for row in breakdown.get("vat_lines", [])
    ]
    location = cdr.charge_point.location
    place = location.name if location is not None else ""
    local = cdr.started_at.astimezone(ZoneInfo(time_zone)).strftime("%Y-%m-%d %H:%M")
    energy = (Decimal(cdr.energy_wh) / 1000).quantize(Decimal("0.001"))
    description = f"{cdr.number} · {place} · {cdr.charge_point.identity} · {local} · {energy} kWh"
    if cdr.kind == CdrKind.CREDIT:
        credited = cdr.credits.number if cdr.credits_id and cdr.credits else ""
        description = _("Credit of {number}").format(number=credited) + f" · {description}"
    return {
        "cdr": cdr,
        "location": place[:200],
        "description": description[:300],
        "net": round_money(cdr.net, currency),
        "tax": round_money(cdr.tax, currency),
        "gross": round_money(cdr.gross, currency),
        "components": components,
        "vat_lines": vat_lines,
    }


def _store(
    *,
    organisation: Organisation,
    kind: str,
    currency: str,
    lines: list[dict[str, Any]],
    issued_at: datetime,
    **fields: Any,
) -> Invoice:
    year = issued_at.astimezone(ZoneInfo(organisation.time_zone)).year
    invoice = Invoice.objects.create(
        organisation=organisation,
        kind=kind,
        number=document_number_next(organisation_id=organisation.pk, kind=kind, year=year),
        currency=currency,
        net=sum((line["net"] for line in lines), Decimal(0)),
        tax=sum((line["tax"] for line in lines), Decimal(0)),
        gross=sum((line["gross"] for line in lines), Decimal(0)),
        issued_at=issued_at,
        **fields,
    )
    InvoiceLine.objects.bulk_create(
        [InvoiceLine(invoice=invoice, position=i, **line) for i, line in enumerate(lines, start=1)]
    )
    return invoice


# --- monthly invoices -----------------------------------------------------------------------------


def invoice_draft(
    *,
    organisation: Organisation,
    account: CustomerAccount,
    currency: str,
    period: Period,
    now: datetime | None = None,
) -> Invoice | None:
    """The account's invoice of `period` in `currency` from `organisation`: stored with its number and
    lines (PENDING until Stripe finalised it), or the one already there. None when nothing is due."""
    with transaction.atomic():
        CustomerAccount.objects.select_for_update(no_key=True).filter(pk=account.pk).first()
        existing = Invoice.objects.filter(
            organisation=organisation,
            customer_account=account,
            kind=DocumentKind.INVOICE,
            period_start=period.first_day,
            currency=currency,
        ).first()
        if existing is not None:
            return existing
        cdrs = list(
            cdrs_on_account(organisation_id=organisation.pk, period=period)
            .filter(**{"account_id": account.pk}, currency=currency)
            .select_related("charge_point__location", "credits")
            .order_by("issued_at", "pk")
        )
        if not cdrs:
            return None
        lines = [_line_fields(cdr, organisation.time_zone) for cdr in cdrs]
        invoice = _store(
            organisation=organisation,
            kind=DocumentKind.INVOICE,
            currency=currency,
            lines=lines,
            issued_at=now or clock.now(),
            customer_account=account,
            period_start=period.first_day,
            period_end=period.next_first_day,
            due_days=account.payment_terms_days,
        )
        audit_record_create(
            actor=None,
            action="invoice.issue",
            target=invoice,
            source="task",
            organisation_id=organisation.pk,
            detail={"number": invoice.number, "gross": str(invoice.gross), "lines": len(lines)},
        )
        return invoice


def invoices_draft_due(*, now: datetime | None = None) -> list[int]:
    """Store the invoices of every organisation's previous month (in its time zone) not yet stored.
    Safe to run any time and any number of times: a month's invoice is made once."""
    now = now or clock.now()
    made: list[int] = []
    for organisation in Organisation.objects.filter(is_active=True).order_by("pk"):
        period = previous_month(now=now, time_zone=organisation.time_zone)
        due = (
            cdrs_on_account(organisation_id=organisation.pk, period=period).values_list(*BILLED_TO).distinct()
        )
        for account_id, currency in sorted(set(due)):
            account = CustomerAccount.objects.get(pk=account_id)
            try:
                invoice = invoice_draft(
                    organisation=organisation, account=account, currency=currency, period=period, now=now
                )
            except IntegrityError:  # a concurrent run stored it first (the unique constraint)
                logger.info(
                    "invoice of %s/%s for %s stored concurrently", organisation.pk, account_id, period
                )
                continue
            if invoice is not None:
                made.append(invoice.pk)
    return made


def invoices_pending() -> list[int]:
    return list(
        Invoice.objects.filter(kind=DocumentKind.INVOICE, status=InvoiceStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _minor(amount: Decimal, currency: str) -> int:
    return int((amount.quantize(quantum(currency)) * (10 ** minor_digits(currency))).to_integral_value())


def account_customer_for(*, organisation: Organisation, account: CustomerAccount) -> AccountCustomer:
    """The account's Stripe customer as `organisation` bills it, created at Stripe once."""
    existing = AccountCustomer.objects.filter(organisation=organisation, customer_account=account).first()
    if existing is not None:
        return existing
    stripe = stripe_client.client()
    params: Any = {
        "name": account.name,
        "email": account.billing_email or None,
        "address": {
            "line1": account.address_line,
            "postal_code": account.postal_code,
            "city": account.city,
            "country": account.country,
        },
        "metadata": {"cpo_customer_account_id": str(account.pk), "cpo_organisation_id": str(organisation.pk)},
    }
    create_params: Any = {k: v for k, v in params.items() if v is not None}
    customer = stripe_client.call(
        "customer_create",
        stripe_client.idempotency_key("customer", "account", account.pk, "org", organisation.pk),
        lambda options: stripe.v1.customers.create(create_params, options),
        retrieve=lambda customer_id: stripe.v1.customers.retrieve(customer_id),
    )
    try:
        with transaction.atomic():
            return AccountCustomer.objects.create(
                organisation=organisation, customer_account=account, stripe_id=customer.id
            )
    except IntegrityError:
        return AccountCustomer.objects.get(organisation=organisation, customer_account=account)


def _item_create(stripe: Any, params: Any, options: Any) -> Any:
    return stripe.v1.invoice_items.create(params, options)


def invoice_send(invoice_id: int) -> Invoice:
    """Send a stored invoice to Stripe and finalise it there. Idempotent: every call carries a key from
    our ids, and a finalised invoice is returned unchanged. Stripe's errors are raised as the product's
    (the task retries PaymentProviderUnavailable)."""
    invoice = Invoice.objects.select_related("organisation", "customer_account").get(pk=invoice_id)
    if invoice.status == InvoiceStatus.ISSUED or invoice.kind != DocumentKind.INVOICE:
        return invoice
    if invoice.customer_account is None:
        raise Conflict(
            _("This invoice has no customer account to send it to."), code="invoice_without_account"
        )
    customer = account_customer_for(organisation=invoice.organisation, account=invoice.customer_account)
    stripe = stripe_client.client()
    currency = invoice.currency.lower()
    for line in invoice.lines.filter(stripe_item_id="").order_by("position"):
        item_params: Any = {
            "customer": customer.stripe_id,
            "amount": _minor(line.gross, invoice.currency),
            "currency": currency,
            "description": line.description,
            "metadata": {"cpo_invoice_number": invoice.number, "cpo_cdr_id": str(line.cdr_id or "")},
        }
        item = stripe_client.call(
            "invoice_item_create",
            stripe_client.idempotency_key("invoice-item", line.pk),
            functools.partial(_item_create, stripe, item_params),
            retrieve=lambda item_id: stripe.v1.invoice_items.retrieve(item_id),
        )
        InvoiceLine.objects.filter(pk=line.pk).update(stripe_item_id=str(item.id))
    if not invoice.stripe_invoice_id:
        invoice_params: Any = {
            "customer": customer.stripe_id,
            "collection_method": "send_invoice",
            "days_until_due": invoice.due_days,
            "pending_invoice_items_behavior": "include",
            "auto_advance": False,
            "description": _("Charging sessions {start} to {end}").format(
                start=invoice.period_start, end=invoice.period_end
            ),
            "custom_fields": [{"name": "Invoice number", "value": invoice.number}],
            "metadata": {"cpo_invoice_id": str(invoice.pk), "cpo_invoice_number": invoice.number},
        }
        created = stripe_client.call(
            "invoice_create",
            stripe_client.idempotency_key("invoice", invoice.pk),
            lambda options: stripe.v1.invoices.create(invoice_params, options),
            retrieve=lambda stripe_id: stripe.v1.invoices.retrieve(stripe_id),
        )
        Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=str(created.id))
        invoice.stripe_invoice_id = str(created.id)
    stripe_invoice_id = invoice.stripe_invoice_id
    stripe_client.call(
        "invoice_finalize",
        stripe_client.idempotency_key("invoice-finalize", invoice.pk),
        lambda options: stripe.v1.invoices.finalize_invoice(
            stripe_invoice_id, {"auto_advance": False}, options
        ),
    )
    Invoice.objects.filter(pk=invoice.pk, status=InvoiceStatus.PENDING).update(
        status=InvoiceStatus.ISSUED, finalised_at=clock.now()
    )
    invoice.refresh_from_db()
    return invoice


# --- credit notes --------------------------------------------------------------------------------


@transaction.atomic
def credit_note_for_invoice(
    *, invoice: Invoice, reason: str, actor: Any = None, source: str = "admin"
) -> Invoice:
    """Cancel a whole invoice: a credit note with its lines negated (the only way to correct one).
    An invoice is credited once: a second attempt is a Conflict and changes nothing."""
    invoice = Invoice.objects.select_for_update(no_key=True).select_related("organisation").get(pk=invoice.pk)
    if invoice.kind != DocumentKind.INVOICE:
        raise Conflict(_("Only an invoice can be credited."), code="not_an_invoice")
    if Invoice.objects.filter(credits=invoice).exists():
        raise Conflict(_("This invoice has already been credited."), code="invoice_already_credited")
    if not reason.strip():
        raise Conflict(_("Give a reason for the credit note."), code="reason_required")
    lines = [
        {
            "credits_line": line,
            "location": line.location,
            "description": (_("Credit of {number}").format(number=invoice.number) + f" · {line.description}")[
                :300
            ],
            "net": -line.net,
            "tax": -line.tax,
            "gross": -line.gross,
            "components": [_negated(row, ("net", "gross")) for row in line.components],
            "vat_lines": [_negated(row, ("net", "tax", "gross")) for row in line.vat_lines],
        }
        for line in invoice.lines.order_by("position")
    ]
    note = _store(
        organisation=invoice.organisation,
        kind=DocumentKind.CREDIT_NOTE,
        currency=invoice.currency,
        lines=lines,
        issued_at=clock.now(),
        customer_account_id=invoice.customer_account_id,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        credits=invoice,
        reason=reason.strip()[:200],
        status=InvoiceStatus.ISSUED,
    )
    audit_record_create(
        actor=actor,
        action="invoice.credit",
        target=note,
        source=source,
        organisation_id=invoice.organisation_id,
        detail={"number": note.number, "credits": invoice.number, "gross": str(note.gross), "reason": reason},
    )
    return note


@transaction.atomic
def credit_note_for_cdr(
    *, credit: ChargeDetailRecord, reason: str = "", actor: Any = None, source: str = "admin"
) -> Invoice:
    """The credit note document of a credited charge detail record (a CREDIT record), e.g. for a card
    payment's refund. A record is on one document at most: a second attempt returns the first note; a
    record already on an invoice (as a negative line) is a Conflict."""
    credit = ChargeDetailRecord.objects.select_related(
        "organisation", "charge_point__location", "credits"
    ).get(pk=credit.pk)
    if credit.kind != CdrKind.CREDIT:
        raise Conflict(_("Only a credit record gets a credit note."), code="not_a_credit_record")
    ChargeDetailRecord.objects.select_for_update(no_key=True).filter(pk=credit.pk).first()
    line = InvoiceLine.objects.filter(cdr=credit).select_related("invoice").first()
    if line is not None:
        if line.invoice.kind == DocumentKind.CREDIT_NOTE:
            return line.invoice
        raise Conflict(_("This credit is already on invoice {number}.").format(number=line.invoice.number))
    organisation = credit.organisation
    account_id = (
        ChargeDetailRecord.objects.filter(pk=credit.pk)
        .annotate(account_id=_account_of_session())
        .values_list("account_id", flat=True)
        .first()
    )
    note = _store(
        organisation=organisation,
        kind=DocumentKind.CREDIT_NOTE,
        currency=credit.currency,
        lines=[_line_fields(credit, organisation.time_zone)],
        issued_at=clock.now(),
        customer_account_id=account_id,
        reason=(reason or credit.reason)[:200],
        status=InvoiceStatus.ISSUED,
    )
    audit_record_create(
        actor=actor,
        action="creditnote.issue",
        target=note,
        source=source,
        organisation_id=organisation.pk,
        detail={"number": note.number, "cdr": credit.pk, "gross": str(note.gross)},
    )
    return note


def _negated(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: (str(-_dec(v)) if k in keys else v) for k, v in row.items()}


# --- the document's figures -----------------------------------------------------------------------


def vat_totals(invoice: Invoice) -> list[dict[str, Decimal]]:
    """Net, VAT and gross per VAT rate over the document's lines, highest rate first."""
    totals: dict[Decimal, dict[str, Decimal]] = defaultdict(
        lambda: {"net": Decimal(0), "tax": Decimal(0), "gross": Decimal(0)}
    )
    for line in invoice.lines.all():
        for row in line.vat_lines:
            bucket = totals[_dec(row["vat"])]
            for key in ("net", "tax", "gross"):
                bucket[key] += _dec(row[key])
    return [{"vat": rate, **values} for rate, values in sorted(totals.items(), reverse=True)]
