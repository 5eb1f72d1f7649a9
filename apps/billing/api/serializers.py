from __future__ import annotations

from rest_framework import serializers

from apps.billing.choices import PaymentStatus
from apps.billing.models import PaymentMethod


class PaymentMethodInput(serializers.Serializer):
    payment_method_id = serializers.CharField(
        max_length=255,
        help_text="The id (pm_...) of a card payment method the app created with Stripe's SDK (the card "
        "itself goes to Stripe, never to us).",
    )


class PaymentMethodOutput(serializers.ModelSerializer):
    payment_method_id = serializers.CharField(source="stripe_id", read_only=True)
    last4 = serializers.CharField(read_only=True, help_text="The card number's last 4 digits.")
    is_default = serializers.BooleanField(read_only=True, help_text="The card charged by default.")

    class Meta:
        model = PaymentMethod
        fields = ("id", "payment_method_id", "brand", "last4", "exp_month", "exp_year", "is_default")
        read_only_fields = fields


class SetupIntentOutput(serializers.Serializer):
    setup_intent_id = serializers.CharField()
    client_secret = serializers.CharField(
        help_text="For Stripe's SDK in the app (confirmCardSetup): the card goes to Stripe with it."
    )
    customer_id = serializers.CharField(help_text="The driver's customer at Stripe.")
    publishable_key = serializers.CharField(help_text="The Stripe publishable key the app initialises with.")


class DebtPaymentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=PaymentStatus.choices)
    amount_held = serializers.IntegerField(help_text="Held on the card, in minor units (cents).")
    amount_captured = serializers.IntegerField(help_text="Charged to the card so far, in minor units.")
    amount_due = serializers.IntegerField(help_text="Still owed (a debt), in minor units.")
    currency = serializers.CharField()
