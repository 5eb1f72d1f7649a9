"""Who may use the grid events API: a utility system with the key issued to it in the admin
(`X-API-Key: <key>`). Drivers' JWTs and the admin's session mean nothing here."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from apps.smartcharging.integrations import grid_integration_authenticate
from apps.smartcharging.models import GridIntegration

HEADER = "X-API-Key"


class GridIntegrationKeyAuthentication(BaseAuthentication):
    """`X-API-Key`: the integration's key. No header: not authenticated (401 not_authenticated); a key
    that is malformed, unknown, wrong or revoked: 401 invalid_api_key. `request.auth` is the integration."""

    def authenticate(self, request: Any) -> tuple[Any, GridIntegration] | None:
        key = request.headers.get(HEADER)
        if key is None:
            return None
        integration = grid_integration_authenticate(key=key)
        if integration is None:
            raise AuthenticationFailed(
                _("This API key is not valid (unknown or revoked)."), code="invalid_api_key"
            )
        return AnonymousUser(), integration

    def authenticate_header(self, request: Any) -> str:
        # A value here makes DRF answer 401 (not 403) to a request without a key.
        return f'{HEADER} realm="grid-events"'


class IsGridIntegration(BasePermission):
    """The request carries an active integration's key."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.auth, GridIntegration)


class GridIntegrationKeyScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of GridIntegrationKeyAuthentication (`gridIntegrationKey`)."""

    target_class = "apps.smartcharging.api.authentication.GridIntegrationKeyAuthentication"
    name = "gridIntegrationKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": HEADER}
