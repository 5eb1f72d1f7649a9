"""Payments with Stripe: the calls we made (one row per idempotency key), each driver's Stripe customer
and cards (what the app shows: brand, last 4, expiry; never a card number), the webhook events we took in
(once each), disputes for finance, and the documents we issue to business customers: monthly invoices and
credit notes, numbered gap-free per issuing organisation."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import CustomerAccount, Organisation
from apps.accounts.tenancy import TenantQuerySet
from apps.billing.choices import (
    DocumentKind,
    InvoiceStatus,
    PaymentStatus,
    StripeCallStatus,
    StripeEventStatus,
)
from apps.charging.models import DriverSession
from apps.tariffs.models import ChargeDetailRecord
from cpo import clock


class StripeCall(models.Model):
    """One Stripe request we mean to make exactly once. The idempotency key is derived from our ids
    (`billing.stripe_client.idempotency_key`) and unique here, so a repeated attempt of the same
    operation (a retry, a second worker) finds the first one's row and its result instead of creating a
    second object at Stripe."""

    idempotency_key = models.CharField(_("idempotency key"), max_length=255, unique=True)
    operation = models.CharField(_("operation"), max_length=64)
    status = models.CharField(
        _("status"), max_length=16, choices=StripeCallStatus.choices, default=StripeCallStatus.PENDING
    )
    result_id = models.CharField(_("Stripe object"), max_length=255, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Stripe call")
        verbose_name_plural = _("Stripe calls")

    def __str__(self) -> str:
        return f"{self.operation} {self.idempotency_key} ({self.status})"


class StripeCustomer(models.Model):
    """A driver's customer at Stripe, created the first time they add a card. A customer deleted at Stripe
    (customer.deleted) keeps its row with `deleted_at`; the driver's next card gets a new customer."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="stripe_customers",
        verbose_name=_("driver"),
    )
    stripe_id = models.CharField(_("Stripe customer"), max_length=255, unique=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Stripe customer")
        verbose_name_plural = _("Stripe customers")
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=Q(deleted_at__isnull=True), name="billing_one_customer_per_driver"
            )
        ]

    def __str__(self) -> str:
        return self.stripe_id


class PaymentMethod(models.Model):
    """A card attached to a driver's Stripe customer: what the app lists. The card itself stays at Stripe."""

    customer = models.ForeignKey(
        StripeCustomer,
        on_delete=models.CASCADE,
        related_name="payment_methods",
        verbose_name=_("customer"),
    )
    stripe_id = models.CharField(_("Stripe payment method"), max_length=255, unique=True)
    brand = models.CharField(_("brand"), max_length=32, blank=True)
    last4 = models.CharField(_("last 4 digits"), max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(_("expiry month"), null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(_("expiry year"), null=True, blank=True)
    is_default = models.BooleanField(_("default"), default=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("payment method")
        verbose_name_plural = _("payment methods")
        ordering = ("created_at", "pk")
        constraints = [
            models.UniqueConstraint(
                fields=["customer"], condition=Q(is_default=True), name="billing_one_default_payment_method"
            )
        ]

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4}"


class StripeEvent(models.Model):
    """A webhook event, taken in once: a replay of the same event id changes nothing."""

    event_id = models.CharField(_("event id"), max_length=255, unique=True)
    type = models.CharField(_("type"), max_length=128)
    payload = models.JSONField(_("payload"))
    status = models.CharField(
        _("status"), max_length=16, choices=StripeEventStatus.choices, default=StripeEventStatus.RECEIVED
    )
    error = models.TextField(_("error"), blank=True)
    attempts = models.PositiveIntegerField(_("processing attempts"), default=0)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Stripe event")
        verbose_name_plural = _("Stripe events")

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class Dispute(models.Model):
    """A card holder's dispute of a charge, as Stripe reported it (charge.dispute.*): for finance.

    `organisation` is the operator whose session the disputed payment paid for, when we know it; a
    dispute of a payment we cannot place is the deployment's (only a superuser sees it)."""

    stripe_id = models.CharField(_("Stripe dispute"), max_length=255, unique=True)
    charge_id = models.CharField(_("Stripe charge"), max_length=255, blank=True)
    payment_intent_id = models.CharField(_("Stripe payment intent"), max_length=255, blank=True)
    amount = models.BigIntegerField(_("amount (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    reason = models.CharField(_("reason"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=64, blank=True)
    evidence_due_by = models.DateTimeField(_("evidence due by"), null=True, blank=True)
    customer = models.ForeignKey(
        StripeCustomer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="disputes",
        verbose_name=_("customer"),
    )
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="disputes",
        verbose_name=_("organisation"),
    )
    opened_at = models.DateTimeField(_("opened at"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("dispute")
        verbose_name_plural = _("disputes")
        ordering = ("-opened_at", "-pk")

    def __str__(self) -> str:
        return self.stripe_id


class Payment(models.Model):
    """A card payment of one driver session: a PaymentIntent with manual capture, held when the start was
    requested (before the charger is asked), released when the start fails. Or the payment of a record of
    its own (`cdr`: a reservation no charge followed), charged off-session when the record is issued."""

    stripe_id = models.CharField(_("Stripe payment intent"), max_length=255, unique=True)
    customer = models.ForeignKey(
        StripeCustomer, on_delete=models.PROTECT, related_name="payments", verbose_name=_("customer")
    )
    driver_session = models.OneToOneField(
        DriverSession,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="payment",
        verbose_name=_("driver session"),
    )
    cdr = models.OneToOneField(
        ChargeDetailRecord,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="own_payment",
        verbose_name=_("charge detail record"),
        help_text=_("The record this payment pays when it is no session's (a reservation's fee)."),
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="payments", verbose_name=_("organisation")
    )
    payment_method_id = models.CharField(_("Stripe payment method"), max_length=255)
    currency = models.CharField(_("currency"), max_length=3)
    amount_held = models.BigIntegerField(_("amount held (minor units)"))
    amount_captured = models.BigIntegerField(_("amount captured (minor units)"), default=0)
    status = models.CharField(
        _("status"), max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.AUTHORISED
    )
    # Captured at a running session's cost so far because the hold was about to expire: its record, once
    # issued, is followed like a corrected one (the difference refunded or charged).
    captured_before_record = models.BooleanField(_("captured before its record"), default=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")

    def __str__(self) -> str:
        return f"{self.stripe_id} ({self.status})"


class PaymentCharge(models.Model):
    """A further charge of a payment, after its hold was captured or lost: a debt paid (the driver's
    retry) or the difference a corrected charge detail record asks for. An off-session PaymentIntent on
    the driver's card, made once (its idempotency key comes from the payment and what it is for)."""

    class Purpose(models.TextChoices):
        DEBT = "debt", _("debt paid")
        CORRECTION = "correction", _("corrected record")

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="charges", verbose_name=_("payment")
    )
    purpose = models.CharField(_("purpose"), max_length=16, choices=Purpose.choices)
    stripe_id = models.CharField(_("Stripe payment intent"), max_length=255, unique=True)
    amount = models.BigIntegerField(_("amount (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    cdr_id = models.BigIntegerField(_("charge detail record"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "payment__organisation"

    class Meta:
        verbose_name = _("further charge")
        verbose_name_plural = _("further charges")
        ordering = ("created_at", "pk")

    def __str__(self) -> str:
        return f"{self.stripe_id} {self.amount} {self.currency}"


class Refund(models.Model):
    """Money given back on a payment (a Stripe refund of its captured PaymentIntent): by finance staff from
    the admin (`created_by`), or for a corrected charge detail record (`cdr_id`, the record that asked
    for less; created_by empty). Credit notes reference it."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("payment")
    )
    amount = models.BigIntegerField(_("amount (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    reason = models.CharField(_("reason"), max_length=255)
    stripe_id = models.CharField(_("Stripe refund"), max_length=255, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    cdr_id = models.BigIntegerField(_("charge detail record"), null=True, blank=True)
    request_key = models.CharField(_("request key"), max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "payment__organisation"

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ("-created_at", "-pk")

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} ({self.status})"


class DocumentCounter(models.Model):
    """The last number an organisation gave to an invoice or a credit note in a year (its own series per
    kind). Taken with a row lock in the transaction that issues the document: numbers are per
    organisation, in order, and a rolled-back issue gives its number back (a sequence would not)."""

    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("organisation"),
        on_delete=models.CASCADE,
        related_name="document_counters",
    )
    kind = models.CharField(_("kind"), max_length=16, choices=DocumentKind.choices)
    year = models.PositiveSmallIntegerField(_("year"))
    last_number = models.PositiveIntegerField(_("last number"), default=0)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("document counter")
        verbose_name_plural = _("document counters")
        constraints = [
            models.UniqueConstraint(fields=["organisation", "kind", "year"], name="documentcounter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.organisation_id} {self.kind} {self.year}: {self.last_number}"


class AccountCustomer(models.Model):
    """A customer account's customer at Stripe as one issuing organisation bills it (a fleet charging at
    two operators gets an invoice from each, so a customer from each: their pending items never mix)."""

    organisation = models.ForeignKey(
        Organisation, verbose_name=_("issuing organisation"), on_delete=models.PROTECT, related_name="+"
    )
    customer_account = models.ForeignKey(
        CustomerAccount,
        verbose_name=_("customer account"),
        on_delete=models.PROTECT,
        related_name="stripe_customers",
    )
    stripe_id = models.CharField(_("Stripe customer"), max_length=255, unique=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("customer account at Stripe")
        verbose_name_plural = _("customer accounts at Stripe")
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "customer_account"], name="accountcustomer_one_per_issuer"
            ),
        ]

    def __str__(self) -> str:
        return self.stripe_id


class Invoice(models.Model):
    """An invoice or a credit note an organisation issued to a customer account. Its number is final when
    the row exists (gap-free per organisation, kind and year); amounts never change. A monthly invoice
    covers the charge detail records (and credits of corrected ones) issued in one calendar month of the
    organisation's time zone, in one currency; it is PENDING until Stripe finalised it. A correction is a
    credit note (kind CREDIT_NOTE, negative amounts), for a whole invoice (`credits`) or for one credited
    charge detail record."""

    organisation = models.ForeignKey(
        Organisation,
        verbose_name=_("issuing organisation"),
        on_delete=models.PROTECT,
        related_name="invoices",
    )
    customer_account = models.ForeignKey(
        CustomerAccount,
        verbose_name=_("customer account"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoices",
    )
    kind = models.CharField(
        _("kind"), max_length=16, choices=DocumentKind.choices, default=DocumentKind.INVOICE
    )
    number = models.CharField(_("number"), max_length=40)
    status = models.CharField(
        _("status"), max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.PENDING
    )
    period_start = models.DateField(_("period from"), null=True, blank=True)
    period_end = models.DateField(_("period until (exclusive)"), null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3)
    net = models.DecimalField(_("net"), max_digits=18, decimal_places=2)
    tax = models.DecimalField(_("VAT"), max_digits=18, decimal_places=2)
    gross = models.DecimalField(_("gross"), max_digits=18, decimal_places=2)
    credits = models.OneToOneField(
        "self",
        verbose_name=_("credits invoice"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credited_by",
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    due_days = models.PositiveSmallIntegerField(_("payment terms (days)"), default=0)
    stripe_invoice_id = models.CharField(_("Stripe invoice"), max_length=255, blank=True)
    issued_at = models.DateTimeField(_("issued at"), default=clock.now, db_index=True)
    finalised_at = models.DateTimeField(_("finalised at Stripe"), null=True, blank=True)

    objects = TenantQuerySet.as_manager()
    tenant_field: ClassVar[str] = "organisation"

    class Meta:
        verbose_name = _("invoice or credit note")
        verbose_name_plural = _("invoices and credit notes")
        ordering = ("-issued_at", "-pk")
        constraints = [
            models.UniqueConstraint(fields=["organisation", "number"], name="invoice_unique_number"),
            models.UniqueConstraint(
                fields=["organisation", "customer_account", "period_start", "currency"],
                condition=Q(kind="invoice"),
                name="invoice_one_per_account_month_currency",
            ),
            models.CheckConstraint(
                condition=Q(kind="invoice", credits__isnull=True) | Q(kind="credit_note"),
                name="invoice_only_credit_notes_credit",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class InvoiceLine(models.Model):
    """One charge detail record on an invoice or a credit note (a Stripe invoice item each), with its
    tariff components (energy, time, parking, flat fee) and VAT rates in `components`. A record is on one
    document at most; a credit note for a whole invoice points at the lines it cancels (`credits_line`)."""

    invoice = models.ForeignKey(
        Invoice, verbose_name=_("document"), on_delete=models.PROTECT, related_name="lines"
    )
    position = models.PositiveIntegerField(_("position"))
    cdr = models.OneToOneField(
        ChargeDetailRecord,
        verbose_name=_("charge detail record"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoice_line",
    )
    credits_line = models.OneToOneField(
        "self",
        verbose_name=_("credits line"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credited_by",
    )
    location = models.CharField(_("location"), max_length=200, blank=True)
    description = models.CharField(_("description"), max_length=300)
    net = models.DecimalField(_("net"), max_digits=18, decimal_places=2)
    tax = models.DecimalField(_("VAT"), max_digits=18, decimal_places=2)
    gross = models.DecimalField(_("gross"), max_digits=18, decimal_places=2)
    components = models.JSONField(_("tariff components"), default=list)
    vat_lines = models.JSONField(_("VAT per rate"), default=list)
    stripe_item_id = models.CharField(_("Stripe invoice item"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("invoice line")
        verbose_name_plural = _("invoice lines")
        ordering = ("invoice", "position")
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoiceline_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}/{self.position}"
