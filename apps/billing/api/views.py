"""The driver's cards: a SetupIntent for the app, attach one the app created, list, choose the default,
remove. Only the driver's own cards are ever found (others' ids answer 404)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.billing import payments, services, settlement
from apps.billing.api.serializers import (
    DebtPaymentOutput,
    PaymentMethodInput,
    PaymentMethodOutput,
    SetupIntentOutput,
)
from cpo.api import THROTTLES, error_responses, validated

TAGS = ["payment methods"]
ERRORS_PROVIDER = (402, 503)


class SetupIntentView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "payment"

    @extend_schema(
        tags=TAGS,
        request=None,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=False,
                description="Repeating a key returns the same SetupIntent.",
            )
        ],
        responses={201: SetupIntentOutput, **error_responses(401, 429, 503)},
        summary="Start adding a card: a SetupIntent's client secret for Stripe's SDK",
    )
    def post(self, request: Request) -> Response:
        intent = services.setup_intent_create(
            user=request.user, request_key=request.headers.get("Idempotency-Key", "")
        )
        body = {**intent, "publishable_key": settings.STRIPE_PUBLISHABLE_KEY}
        return Response(SetupIntentOutput(body).data, status=status.HTTP_201_CREATED)


class PaymentMethodListView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "payment"
    throttle_methods = ("POST",)

    @extend_schema(
        tags=TAGS,
        responses={200: PaymentMethodOutput(many=True), **error_responses(401)},
        summary="My cards (brand, last 4 digits, expiry, which is the default)",
    )
    def get(self, request: Request) -> Response:
        methods = services.payment_methods_of(user=request.user).order_by("created_at", "pk")
        return Response(PaymentMethodOutput(methods, many=True).data)

    @extend_schema(
        tags=TAGS,
        request=PaymentMethodInput,
        responses={
            201: PaymentMethodOutput,
            200: OpenApiResponse(PaymentMethodOutput, description="Already one of my cards"),
            **error_responses(400, 401, 429, *ERRORS_PROVIDER),
        },
        summary="Add a card the app created at Stripe (its payment method id)",
    )
    def post(self, request: Request) -> Response:
        data = validated(PaymentMethodInput, request.data)
        method, created = services.payment_method_attach(
            user=request.user, payment_method_id=data["payment_method_id"]
        )
        return Response(
            PaymentMethodOutput(method).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PaymentMethodDetailView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "payment"
    throttle_methods = ("DELETE",)

    @extend_schema(
        tags=TAGS,
        responses={200: PaymentMethodOutput, **error_responses(401, 404)},
        summary="One of my cards",
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(PaymentMethodOutput(services.payment_method_get(user=request.user, pk=pk)).data)

    @extend_schema(
        tags=TAGS,
        responses={204: OpenApiResponse(description="Removed"), **error_responses(400, 401, 404, 429, 503)},
        summary="Remove one of my cards (detached at Stripe)",
    )
    def delete(self, request: Request, pk: int) -> Response:
        services.payment_method_remove(user=request.user, pk=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PaymentMethodDefaultView(APIView):
    @extend_schema(
        tags=TAGS,
        request=None,
        responses={200: PaymentMethodOutput, **error_responses(401, 404)},
        summary="Make one of my cards the default",
    )
    def post(self, request: Request, pk: int) -> Response:
        method = services.payment_method_set_default(user=request.user, pk=pk)
        return Response(PaymentMethodOutput(method).data)


class PaymentRetryView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "payment"

    @extend_schema(
        tags=["payments"],
        request=None,
        responses={200: DebtPaymentOutput, **error_responses(401, 402, 404, 429, 503)},
        summary="Pay a debt (a payment in `debt`) with my default card; repeating it charges once",
    )
    def post(self, request: Request, pk: int) -> Response:
        payment = settlement.debt_pay(user=request.user, payment_id=pk)
        return Response(DebtPaymentOutput(payments.payment_body(payment)).data)
