"""Admin: card payments, their further charges and refunds, and disputes (for finance), within the staff
member's organisations. A payment's page offers finance a refund (full or partial, with a reason) and,
for a debt, marking it settled (with a reason): both audited, each done once per submitted form."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from apps.billing import settlement
from apps.billing.choices import PaymentStatus
from apps.billing.models import Dispute, Payment, PaymentCharge, Refund
from cpo.admin import BaseModelAdmin, ReadOnlyAdminMixin
from cpo.exceptions import ApplicationError


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Disputes of card payments: recorded from Stripe's webhooks (charge.dispute.*), answered in Stripe's
    dashboard. Tenant-scoped: an operator's finance staff see the disputes of its sessions."""

    list_display = ("opened_at", "stripe_id", "amount", "currency", "reason", "status", "evidence_due_by")
    list_filter = ("status", "reason", "currency", "opened_at")
    search_fields = ("stripe_id", "charge_id", "payment_intent_id")
    date_hierarchy = "opened_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.concrete_fields]


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


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, BaseModelAdmin):
    """Card payments of drivers' sessions at the organisation's chargers: held, captured, released, failed
    or a debt. Amounts in minor units (cents)."""

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
