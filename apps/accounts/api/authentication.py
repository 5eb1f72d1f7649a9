"""Who may use the driver API: drivers, with a JWT. Staff work in the admin (their permissions, tenancy and
audit trail live there): the admin's session cookie means nothing here, and a staff account neither gets
a driver JWT nor gets in with one it obtained earlier (a driver later made staff, or a leaked token)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.tokens import Token


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
