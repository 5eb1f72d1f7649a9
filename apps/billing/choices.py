from django.db import models
from django.utils.translation import gettext_lazy as _


class StripeCallStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")


class StripeEventStatus(models.TextChoices):
    RECEIVED = "received", _("received")
    PROCESSED = "processed", _("processed")
    IGNORED = "ignored", _("ignored")
    FAILED = "failed", _("failed")


class PaymentStatus(models.TextChoices):
    AUTHORISED = "authorised", _("authorised (held)")
    CAPTURED = "captured", _("captured")
    RELEASED = "released", _("released")
    FAILED = "failed", _("failed")
    DEBT = "debt", _("debt")


class DocumentKind(models.TextChoices):
    INVOICE = "invoice", _("invoice")
    CREDIT_NOTE = "credit_note", _("credit note")


class InvoiceStatus(models.TextChoices):
    PENDING = "pending", _("numbered, not yet finalised at Stripe")
    ISSUED = "issued", _("issued")
