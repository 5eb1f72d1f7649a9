"""Reads of billing for other interfaces: what the driver's data export shows of their cards and payments."""

from __future__ import annotations

from typing import Any

from apps.accounts.models import User
from apps.billing import services, settlement
from apps.billing.choices import PaymentStatus
from apps.billing.models import Payment


def driver_payments_export(*, driver: User) -> dict[str, Any]:
    """The driver's saved cards and payments for the data export (charging's `driver_export_parts`).

    Cards as the app shows them: brand, last 4 digits, expiry and which is the default (the card number
    never reaches us: it stays at Stripe). Payments with what was held, captured, refunded, charged again
    and is still owed, in minor units of their currency, also those of a Stripe customer since deleted."""
    cards = [
        {
            "brand": method.brand,
            "last4": method.last4,
            "exp_month": method.exp_month,
            "exp_year": method.exp_year,
            "is_default": method.is_default,
        }
        for method in services.payment_methods_of(user=driver).order_by("created_at", "pk")
    ]
    payments = []
    for payment in (
        Payment.objects.filter(customer__user=driver)
        .prefetch_related("refunds", "charges")
        .order_by("created_at", "pk")
    ):
        payments.append(
            {
                "id": payment.pk,
                "session": payment.driver_session_id,
                "status": payment.status,
                "currency": payment.currency,
                "amount_held": payment.amount_held,
                "amount_captured": payment.amount_captured,
                "amount_due": settlement.amount_due(payment) if payment.status == PaymentStatus.DEBT else 0,
                "created_at": payment.created_at.isoformat(),
                "refunds": [
                    {
                        "amount": refund.amount,
                        "status": refund.status,
                        "reason": refund.reason,
                        "created_at": refund.created_at.isoformat(),
                    }
                    for refund in sorted(payment.refunds.all(), key=lambda r: (r.created_at, r.pk))
                ],
                "further_charges": [
                    {
                        "purpose": charge.purpose,
                        "amount": charge.amount,
                        "created_at": charge.created_at.isoformat(),
                    }
                    for charge in payment.charges.all()
                ],
            }
        )
    return {"payment_methods": cards, "payments": payments}
