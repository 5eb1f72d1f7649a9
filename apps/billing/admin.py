"""Admin: the finance console. Card payments (failed ones and debts through the status filter), disputes,
invoices and credit notes (with their HTML and PDF documents) and revenue per location and month, each with
a CSV export; read-only (money records change only through services), within the staff member's
organisations. Every export is audited. A payment's page offers finance a refund (full or partial, with
a reason) and, for a debt, marking it settled (with a reason): both audited, each done once per submitted
form; further charges and refunds are listed read-only."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from apps.accounts.services import audit_record_create
from apps.billing import settlement
from apps.billing.choices import DocumentKind, PaymentStatus
from apps.billing.documents import document_html, document_pdf
from apps.billing.invoices import credit_note_for_invoice
from apps.billing.models import Dispute, Invoice, InvoiceLine, Payment, PaymentCharge, Refund
from apps.tariffs.models import ChargeDetailRecord
from cpo.admin import BaseModelAdmin, BaseTabularInline, ReadOnlyAdminMixin, scope_queryset
from cpo.exceptions import ApplicationError

CENT = Decimal("0.01")


class RefundForm(forms.Form):
    amount = forms.IntegerField(
        label=_("Amount (minor units)"),
        min_value=1,
        required=False,
        help_text=_("Leave empty to refund everything that is left."),
    )
    reason = forms.CharField(label=_("Reason"), max_length=255)


class SettleForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=255)


def csv_response(*, filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else str(value) for value in row])
    return response


def _audit_export(request: HttpRequest, what: str, count: int) -> None:
    audit_record_create(
        actor=request.user,
        action=f"{what}.export",
        source="admin",
        organisation_id=getattr(request.user, "organisation_id", None),
        detail={"rows": count},
    )


class CsvExportMixin:
    """An admin action "Export selected as CSV" over `csv_fields` (attribute paths), audited."""

    csv_fields: tuple[str, ...] = ()
    actions = ("export_csv",)

    @admin.action(description=_("Export selected as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        model = queryset.model
        rows = [[_value(obj, field) for field in self.csv_fields] for obj in queryset.order_by("pk")]
        _audit_export(request, model._meta.model_name or "rows", len(rows))
        return csv_response(filename=f"{model._meta.model_name}.csv", header=self.csv_fields, rows=rows)


def _value(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@admin.register(Dispute)
class DisputeAdmin(CsvExportMixin, ReadOnlyAdminMixin, BaseModelAdmin):
    """Disputes of card payments: recorded from Stripe's webhooks (charge.dispute.*), answered in Stripe's
    dashboard. Tenant-scoped: an operator's finance staff see the disputes of its sessions."""

    list_display = ("opened_at", "stripe_id", "amount", "currency", "reason", "status", "evidence_due_by")
    list_filter = ("status", "reason", "currency", "opened_at")
    search_fields = ("stripe_id", "charge_id", "payment_intent_id")
    date_hierarchy = "opened_at"
    csv_fields = ("opened_at", "stripe_id", "payment_intent_id", "amount", "currency", "reason", "status")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]


@admin.register(Payment)
class PaymentAdmin(CsvExportMixin, ReadOnlyAdminMixin, BaseModelAdmin):
    """Card payments of drivers' sessions at the organisation's chargers: held, captured, released, failed
    or a debt (the status filter lists failed payments and debts). Amounts in minor units (cents)."""

    list_display = (
        "created_at",
        "stripe_id",
        "status",
        "amount_held",
        "amount_captured",
        "currency",
        "driver_session",
    )
    list_filter = ("status", "currency", "created_at")
    search_fields = ("stripe_id",)
    date_hierarchy = "created_at"
    list_select_related = ("driver_session",)
    csv_fields = (
        "created_at",
        "stripe_id",
        "status",
        "amount_held",
        "amount_captured",
        "currency",
        "driver_session_id",
        "organisation_id",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:payment_id>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="billing_payment_refund",
            ),
            path(
                "<int:payment_id>/settle/",
                self.admin_site.admin_view(self.settle_view),
                name="billing_payment_settle",
            ),
            *super().get_urls(),
        ]

    def _payment(self, request: HttpRequest, payment_id: int, permission: str) -> Payment:
        payment: Payment = self.get_object(request, str(payment_id))  # 404 outside the user's organisations
        if not request.user.has_perm(permission):
            raise PermissionDenied
        return payment

    def _page(
        self, request: HttpRequest, payment: Payment, form: forms.Form, title: Any, explanation: Any
    ) -> HttpResponse:
        page = {
            **self.admin_site.each_context(request),
            "title": title,
            "explanation": explanation,
            "opts": self.opts,
            "payment": payment,
            "form": form,
            "request_key": request.POST.get("request_key") or uuid.uuid4().hex,
        }
        return TemplateResponse(request, "admin/billing/payment/action.html", page)

    def _back(self, payment: Payment) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:billing_payment_change", args=[payment.pk]))

    def refund_view(self, request: HttpRequest, payment_id: int) -> HttpResponse:
        """Refund a captured payment (finance: billing.add_refund). The form's request key makes a second
        submission of the same form find the first refund instead of making another."""
        payment = self._payment(request, payment_id, "billing.add_refund")
        form = RefundForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                refund = settlement.refund_create(
                    payment=payment,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    request_key=f"admin-{request.POST.get('request_key', '')[:40]}",
                    actor=request.user,
                )
            except ApplicationError as exc:
                messages.error(request, exc.detail)
            else:
                if refund.status == Refund.Status.SUCCEEDED:
                    messages.success(
                        request,
                        _("{amount} {currency} (minor units) refunded.").format(
                            amount=refund.amount, currency=refund.currency
                        ),
                    )
                else:
                    messages.error(request, _("The payment provider did not refund it: see the refund."))
                return self._back(payment)
        return self._page(
            request,
            payment,
            form,
            _("Refund"),
            _("Refundable: {amount} {currency} (minor units).").format(
                amount=settlement.refundable(payment), currency=payment.currency
            ),
        )

    def settle_view(self, request: HttpRequest, payment_id: int) -> HttpResponse:
        """Mark a debt settled (finance: billing.change_payment): the driver is unblocked."""
        payment = self._payment(request, payment_id, "billing.change_payment")
        form = SettleForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                done = settlement.debt_settle(
                    payment=payment, actor=request.user, reason=form.cleaned_data["reason"]
                )
            except ApplicationError as exc:
                messages.error(request, exc.detail)
            else:
                if done:
                    messages.success(request, _("The debt is settled; the driver may charge again."))
                else:
                    messages.info(request, _("This payment is not a debt."))
                return self._back(payment)
        due = settlement.amount_due(payment) if payment.status == PaymentStatus.DEBT else 0
        return self._page(
            request,
            payment,
            form,
            _("Mark the debt settled"),
            _("Owed: {amount} {currency} (minor units).").format(amount=due, currency=payment.currency),
        )


class InvoiceLineInline(ReadOnlyAdminMixin, BaseTabularInline):
    model = InvoiceLine
    fields = ("position", "description", "net", "tax", "gross", "stripe_item_id")
    readonly_fields = fields
    extra = 0


@admin.register(Invoice)
class InvoiceAdmin(CsvExportMixin, ReadOnlyAdminMixin, BaseModelAdmin):
    """Monthly invoices to customer accounts and credit notes (the only way to correct an invoice), as
    issued: numbered, never changed. Each with its document as HTML and PDF."""

    list_display = (
        "number",
        "kind",
        "customer_account",
        "period_start",
        "currency",
        "net",
        "tax",
        "gross",
        "status",
        "issued_at",
        "documents",
    )
    list_filter = ("kind", "status", "currency", "issued_at")
    search_fields = ("number", "customer_account__name", "stripe_invoice_id")
    date_hierarchy = "issued_at"
    list_select_related = ("customer_account",)
    inlines = (InvoiceLineInline,)
    actions = ("export_csv", "credit_note")
    csv_fields = (
        "number",
        "kind",
        "status",
        "organisation.name",
        "customer_account.name",
        "period_start",
        "period_end",
        "currency",
        "net",
        "tax",
        "gross",
        "credits.number",
        "stripe_invoice_id",
        "issued_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]

    def has_credit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_invoice")

    @admin.action(description=_("Issue a credit note for the selected invoices"), permissions=["credit"])
    def credit_note(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Cancel the selected invoices, each by a credit note (asks for the reason first). Audited by the
        service (invoice.credit); an invoice already credited is reported and left alone."""
        reason = str(request.POST.get("reason", "")).strip()
        confirmed = request.POST.get("confirm") == "yes"
        chosen = queryset.filter(kind=DocumentKind.INVOICE).order_by("pk")
        if confirmed and reason:
            made = []
            for invoice in chosen:
                try:
                    made.append(
                        credit_note_for_invoice(
                            invoice=invoice, reason=reason[:200], actor=request.user, source="admin"
                        ).number
                    )
                except ApplicationError as exc:
                    self.message_user(request, f"{invoice.number}: {exc.detail}", messages.ERROR)
            if made:
                self.message_user(
                    request,
                    _("Credit notes issued: {numbers}").format(numbers=", ".join(made)),
                    messages.SUCCESS,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Issue credit notes"),
            "invoices": chosen,
            "reason": reason,
            "missing_reason": confirmed and not reason,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/billing/credit_note_confirm.html", context)

    @admin.display(description=_("document"))
    def documents(self, obj: Invoice) -> str:
        return format_html(
            '<a href="{}">HTML</a> · <a href="{}">PDF</a>',
            reverse("admin:billing_invoice_document", args=[obj.pk, "html"]),
            reverse("admin:billing_invoice_document", args=[obj.pk, "pdf"]),
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:object_id>/document.<str:fmt>",
                self.admin_site.admin_view(self.document_view),
                name="billing_invoice_document",
            ),
            path("revenue/", self.admin_site.admin_view(self.revenue_view), name="billing_invoice_revenue"),
            *super().get_urls(),
        ]

    def document_view(self, request: HttpRequest, object_id: int, fmt: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        invoice = get_object_or_404(self.get_queryset(request), pk=object_id)
        if fmt == "pdf":
            response = HttpResponse(document_pdf(invoice=invoice), content_type="application/pdf")
            response["Content-Disposition"] = f'inline; filename="{invoice.number}.pdf"'
            return response
        if fmt == "html":
            return HttpResponse(document_html(invoice=invoice, request=request), content_type="text/html")
        raise PermissionDenied

    def revenue_view(self, request: HttpRequest) -> HttpResponse:
        """Revenue per location and month (UTC months) from the issued charge detail records, credits
        netted; ?format=csv for the export."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        rows = revenue_per_location_and_month(user=request.user)
        if request.GET.get("format") == "csv":
            _audit_export(request, "revenue", len(rows))
            return csv_response(
                filename="revenue.csv",
                header=("month", "location", "currency", "records", "energy_kwh", "net", "tax", "gross"),
                rows=[
                    (
                        r["month"],
                        r["location"],
                        r["currency"],
                        r["records"],
                        r["energy_kwh"],
                        r["net"],
                        r["tax"],
                        r["gross"],
                    )
                    for r in rows
                ],
            )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Revenue per location and month"),
            "rows": rows,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/billing/revenue.html", context)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra = {"revenue_url": reverse("admin:billing_invoice_revenue"), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)


def revenue_per_location_and_month(*, user: Any) -> list[dict[str, Any]]:
    """Net, VAT and gross of the records the user's organisations issued, per location, month (UTC) and
    currency, newest month first."""
    records = scope_queryset(ChargeDetailRecord.objects.all(), user)
    grouped = (
        records.annotate(month=TruncMonth("issued_at", tzinfo=ZoneInfo("UTC")))
        .values("month", "charge_point__location__name", "currency")
        .annotate(
            records=Count("pk"),
            energy_wh=Sum("energy_wh"),
            net=Sum("net"),
            tax=Sum("tax"),
            gross=Sum("gross"),
        )
        .order_by("-month", "charge_point__location__name", "currency")
    )
    out = []
    for row in grouped:
        month: datetime = row["month"]
        out.append(
            {
                "month": month.strftime("%Y-%m"),
                "location": row["charge_point__location__name"],
                "currency": row["currency"],
                "records": row["records"],
                "energy_kwh": f"{(row['energy_wh'] or 0) / 1000:.3f}",
                "net": row["net"].quantize(CENT),
                "tax": row["tax"].quantize(CENT),
                "gross": row["gross"].quantize(CENT),
            }
        )
    return out


@admin.register(PaymentCharge)
class PaymentChargeAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Further charges of payments: a debt paid by the driver, or the difference of a corrected record."""

    list_display = ("created_at", "stripe_id", "purpose", "amount", "currency", "payment")
    list_filter = ("purpose", "currency", "created_at")
    search_fields = ("stripe_id", "payment__stripe_id")
    list_select_related = ("payment",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Refunds of payments: by finance (from a payment's page) or for corrected records."""

    list_display = ("created_at", "payment", "amount", "currency", "status", "reason", "created_by")
    list_filter = ("status", "currency", "created_at")
    search_fields = ("stripe_id", "payment__stripe_id")
    list_select_related = ("payment", "created_by")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]
