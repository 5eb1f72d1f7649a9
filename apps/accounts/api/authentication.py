"""Who may use the APIs. The driver API: drivers, with a JWT; the admin's session cookie means nothing
there, and a staff account neither gets a driver JWT nor gets in with one it obtained earlier (a driver
later made staff, or a leaked token). The operator API: staff, with an API token of theirs (their roles
and tenancy apply); nothing else gets in there."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.tokens import Token

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_authenticate


def driver_authentication_rule(user: Any) -> bool:
    """Whether `user` may hold driver JWTs: an active account that is neither staff nor a superuser nor a
    member of an organisation. SIMPLE_JWT USER_AUTHENTICATION_RULE: applied on login and on refresh."""
    return (
        user is not None
        and user.is_active
        and not user.is_staff
        and not user.is_superuser
        and getattr(user, "organisation_id", None) is None
    )


class DriverJWTAuthentication(JWTAuthentication):
    """A driver's access token in `Authorization: Bearer ...`; the only way into the driver API."""

    def get_user(self, validated_token: Token) -> Any:
        user = super().get_user(validated_token)  # unknown or inactive accounts are refused here
        if not driver_authentication_rule(user):
            raise AuthenticationFailed(_("This account cannot use the driver API."), code="not_a_driver")
        return user


class DriverJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of DriverJWTAuthentication: the bearer JWT (`jwtAuth`)."""

    target_class = "apps.accounts.api.authentication.DriverJWTAuthentication"


class StaffTokenAuthentication(BaseAuthentication):
    """A staff API token in `Authorization: Token <key>`: the only way into the operator API. The request
    acts as the token's staff member (roles and tenancy). Driver JWTs mean nothing here, and a staff
    token means nothing to the driver API (its JWT authentication reads only `Bearer`)."""

    keyword = "Token"

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                _("Send the token as `Authorization: Token <key>`."), code="token_invalid"
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed(_("Invalid API token."), code="token_invalid") from None
        token = api_token_authenticate(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API token."), code="token_invalid")
        return token.user, token

    def authenticate_header(self, request: Any) -> str:
        return self.keyword  # a 401 (with WWW-Authenticate), not a 403, without valid credentials


class StaffTokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of StaffTokenAuthentication (`staffToken`)."""

    target_class = "apps.accounts.api.authentication.StaffTokenAuthentication"
    name = "staffToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A staff API token: `Token <key>` (admin, or `manage.py api_token_create`).",
        }
