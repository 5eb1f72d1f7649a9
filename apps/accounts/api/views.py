"""Driver accounts: register, log in (JWT), password reset, e-mail verification, profile, tokens."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions as drf_exceptions
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import AuthenticationFailed, TokenError
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from apps.accounts import services
from apps.accounts.api.authentication import driver_authentication_rule
from apps.accounts.api.serializers import (
    CardLinkOutput,
    EmailInput,
    EmailVerifyInput,
    LogoutInput,
    MeOutput,
    MeUpdateInput,
    PasswordResetConfirmInput,
    RegisterInput,
    TokenInput,
    TokenOutput,
)
from apps.accounts.models import IdToken, User
from apps.charging import card_links
from apps.charging.driver_selectors import driver_has_running_charge
from cpo import clock
from cpo.api import (
    THROTTLES,
    AddressRateThrottle,
    FailureBudget,
    LoginFailureLimit,
    error_responses,
    scope_rate,
    validated,
)
from cpo.exceptions import Conflict, ValidationFailed
from cpo.public_url import public_base_url

TAG_AUTH = ["auth"]
TAG_ME = ["me"]


REGISTER_ACCEPTED = (
    "An e-mail went to the address: the verification link for a new account (log in with the password "
    "meanwhile); for an address already registered, a note to its owner"
)


LINK_ACCEPTED = (
    "A pending link request, the same whatever the uid: hold the card to the charger's reader before "
    "`expires_at`, then poll `GET tokens/links/{id}` (linked with the token, refused with "
    "token_not_linkable, or expired)"
)


class RegisterView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = THROTTLES
    throttle_scope_base = "register"

    @extend_schema(
        tags=TAG_AUTH,
        request=RegisterInput,
        responses={202: OpenApiResponse(description=REGISTER_ACCEPTED), **error_responses(400, 429)},
        summary="Create a driver account (always 202: no account enumeration)",
    )
    def post(self, request: Request) -> Response:
        data = validated(RegisterInput, request.data)
        # The same answer whether or not the address was free: only its owner learns, by e-mail.
        services.driver_register(base_url=public_base_url(request), **data)
        return Response(status=status.HTTP_202_ACCEPTED)


class DriverTokenObtainSerializer(TokenObtainPairSerializer):
    """Only drivers get JWTs: staff accounts (staff flag or an organisation) use the admin, where their
    permissions and audit trail live; to them this answers as to a wrong password."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        data = super().validate(attrs)  # USER_AUTHENTICATION_RULE refuses them already; kept explicit
        if not driver_authentication_rule(self.user):
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account")
        return data


class LoginView(TokenObtainPairView):
    """Exchange e-mail and password for an access and a refresh token. Failed attempts are limited per
    account and address and, much higher, per account (429 with Retry-After); a success never counts."""

    serializer_class = DriverTokenObtainSerializer
    throttle_classes = [AddressRateThrottle]
    throttle_scope_base = "login"

    @extend_schema(
        tags=TAG_AUTH,
        summary="Log in: e-mail and password for a JWT pair",
        responses={
            200: inline_serializer(
                "TokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()}
            ),
            **error_responses(400, 401, 429),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        limit = LoginFailureLimit(request, base=self.throttle_scope_base)
        limit.begin()
        try:
            response = super().post(request, *args, **kwargs)
        except drf_exceptions.AuthenticationFailed:
            raise  # a wrong password (or not a driver): it stays counted
        except BaseException:
            limit.abandon()
            raise
        limit.succeeded()
        return response


class RefreshView(TokenRefreshView):
    """A new access token (and a new refresh token: the old one is revoked) for a refresh token."""

    @extend_schema(
        tags=TAG_AUTH,
        summary="Refresh the JWT pair",
        responses={
            200: inline_serializer(
                "TokenRefreshed", {"access": serializers.CharField(), "refresh": serializers.CharField()}
            ),
            **error_responses(400, 401),
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class LogoutView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        tags=TAG_AUTH,
        request=LogoutInput,
        responses={204: None, **error_responses(400)},
        summary="Log out: revoke a refresh token",
    )
    def post(self, request: Request) -> Response:
        data = validated(LogoutInput, request.data)
        try:
            RefreshToken(data["refresh"]).blacklist()
        except TokenError as exc:
            raise ValidationFailed(
                _("This refresh token is invalid or expired."),
                code="token_not_valid",
                fields={"refresh": [str(exc)]},
            ) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordResetView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = THROTTLES
    throttle_scope_base = "password"

    @extend_schema(
        tags=TAG_AUTH,
        request=EmailInput,
        responses={202: None, **error_responses(400, 429)},
        summary="E-mail a password reset code (always 202: no account enumeration)",
    )
    def post(self, request: Request) -> Response:
        data = validated(EmailInput, request.data)
        services.user_send_password_reset(email=data["email"], base_url=public_base_url(request))
        return Response(status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = THROTTLES
    throttle_scope_base = "password"

    @extend_schema(
        tags=TAG_AUTH,
        request=PasswordResetConfirmInput,
        responses={204: None, **error_responses(400)},
        summary="Set a new password with the e-mailed uid and code",
    )
    def post(self, request: Request) -> Response:
        data = validated(PasswordResetConfirmInput, request.data)
        services.user_reset_password(
            uidb64=data["uid"], token=data["token"], new_password=data["new_password"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class EmailVerifyView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        tags=TAG_AUTH,
        request=EmailVerifyInput,
        responses={200: MeOutput, **error_responses(400)},
        summary="Confirm the e-mail address with the uid and code of the e-mailed link",
    )
    def post(self, request: Request) -> Response:
        data = validated(EmailVerifyInput, request.data)
        user = services.user_verify_email(uidb64=data["uid"], token=data["token"])
        return Response(MeOutput.of(user))


class EmailResendView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "password"

    @extend_schema(
        tags=TAG_AUTH,
        request=None,
        responses={202: None, **error_responses(401, 409, 429)},
        summary="Send the verification e-mail again",
    )
    def post(self, request: Request) -> Response:
        if request.user.email_verified:
            raise Conflict(_("Your e-mail address is already verified."), code="email_already_verified")
        services.user_send_email_verification(user=request.user, base_url=public_base_url(request))
        return Response(status=status.HTTP_202_ACCEPTED)


class MeView(APIView):
    @extend_schema(tags=TAG_ME, responses={200: MeOutput, **error_responses(401)}, summary="My profile")
    def get(self, request: Request) -> Response:
        return Response(MeOutput.of(request.user))

    @extend_schema(
        tags=TAG_ME,
        request=MeUpdateInput,
        responses={200: MeOutput, **error_responses(400, 401)},
        summary="Change my profile",
    )
    def patch(self, request: Request) -> Response:
        data = validated(MeUpdateInput, request.data)
        user = services.driver_update(user=request.user, **data)
        return Response(MeOutput.of(user))

    @extend_schema(
        tags=TAG_ME,
        responses={204: None, **error_responses(401, 409)},
        summary="Delete my account (personal data erased; invoices and charge records kept)",
    )
    def delete(self, request: Request) -> Response:
        with transaction.atomic():
            # The driver's row lock: a start that comes in meanwhile waits and then finds the account closed.
            User.objects.select_for_update(no_key=True).filter(pk=request.user.pk).first()
            if driver_has_running_charge(driver=request.user):
                raise Conflict(
                    _("Stop your running charge before deleting your account."), code="session_active"
                )
            services.driver_delete(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenListView(APIView):
    throttle_classes = THROTTLES
    throttle_scope_base = "token"
    throttle_methods = ("POST",)

    @extend_schema(
        tags=TAG_ME,
        responses={200: TokenOutput(many=True), **error_responses(401)},
        summary="My cards and app tokens",
    )
    def get(self, request: Request) -> Response:
        tokens = IdToken.objects.filter(owner=request.user).order_by("created_at", "pk")
        return Response(TokenOutput(tokens, many=True).data)

    @extend_schema(
        tags=TAG_ME,
        request=TokenInput,
        responses={
            202: OpenApiResponse(CardLinkOutput, description=LINK_ACCEPTED),
            **error_responses(400, 401, 403, 404, 409, 429),
        },
        summary="Ask to link a card: confirmed by presenting it at the charger (always 202 pending)",
    )
    def post(self, request: Request) -> Response:
        data = validated(TokenInput, request.data)
        _refusals_within_budget(request.user)
        requests = FailureBudget(
            "token-links-user",
            str(request.user.pk),
            detail=_("Too many requests to link a card today."),
        )
        requests.spend()
        try:
            link = card_links.card_link_request(
                driver=request.user,
                charge_point_id=data["charge_point"],
                uid=data["uid"],
                type=data["type"],
                label=data["label"],
            )
        except BaseException:
            requests.refund()  # refused input or a busy charger kept no charger waiting
            raise
        response = Response(CardLinkOutput.of(link), status=status.HTTP_202_ACCEPTED)
        response["Location"] = reverse("api-token-link", kwargs={"pk": link.pk})
        return response


def _refusals_within_budget(driver: User) -> None:
    """429 once the driver's link requests were refused CPO_API_RATE_TOKEN_REFUSALS_USER times within its
    window (counted from the stored refusals, which happen at the charger), until the oldest ages out."""
    rate = scope_rate("token-refusals-user")
    if rate is None:
        return
    limit, seconds = rate
    now = clock.now()
    refused = card_links.card_link_refusals_since(driver=driver, since=now - timedelta(seconds=seconds))
    if len(refused) >= limit:
        wait = (refused[len(refused) - limit] + timedelta(seconds=seconds) - now).total_seconds()
        raise drf_exceptions.Throttled(
            wait=max(1, math.ceil(wait)), detail=_("Too many cards could not be linked to your account.")
        )


class CardLinkDetailView(APIView):
    @extend_schema(
        tags=TAG_ME,
        responses={200: CardLinkOutput, **error_responses(401, 404)},
        summary="One of my card link requests: pending, linked, refused, expired or cancelled",
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(CardLinkOutput.of(card_links.card_link_get(driver=request.user, link_id=pk)))

    @extend_schema(
        tags=TAG_ME,
        responses={204: OpenApiResponse(description="Cancelled"), **error_responses(401, 404, 409)},
        summary="Cancel my pending card link request",
    )
    def delete(self, request: Request, pk: int) -> Response:
        card_links.card_link_cancel(driver=request.user, link_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenDetailView(APIView):
    @extend_schema(
        tags=TAG_ME, responses={200: TokenOutput, **error_responses(401, 404)}, summary="One of my tokens"
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(TokenOutput(get_object_or_404(IdToken, pk=pk, owner=request.user)).data)

    @extend_schema(
        tags=TAG_ME,
        responses={204: OpenApiResponse(description="Unlinked and blocked"), **error_responses(401, 404)},
        summary="Unlink one of my tokens (it stops working)",
    )
    def delete(self, request: Request, pk: int) -> Response:
        token = get_object_or_404(IdToken, pk=pk, owner=request.user)
        services.driver_token_remove(driver=request.user, token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
