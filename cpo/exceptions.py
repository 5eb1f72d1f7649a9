"""One error hierarchy for the whole product.

Services raise these; every interface presents them its own way (DRF: one JSON shape through
`cpo.api.exception_handler`; admin: a form or message error; OCPP: a CALLERROR; commands: exit code).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _


class ApplicationError(Exception):
    """A failure a caller can act on. `code` is stable (apps switch on it); `detail` is for people."""

    code: str = "error"
    http_status: int = 400
    default_detail: Any = _("The request could not be completed.")

    def __init__(
        self, detail: Any = None, *, code: str | None = None, fields: dict[str, list[str]] | None = None
    ) -> None:
        self.detail = str(detail if detail is not None else self.default_detail)
        if code is not None:
            self.code = code
        self.fields = fields or {}
        super().__init__(self.detail)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail, "fields": self.fields}


class ValidationFailed(ApplicationError):
    code = "validation_failed"
    http_status = 400
    default_detail = _("The input is invalid.")


class NotFound(ApplicationError):
    code = "not_found"
    http_status = 404
    default_detail = _("Not found.")


class Conflict(ApplicationError):
    code = "conflict"
    http_status = 409
    default_detail = _("The request conflicts with the current state.")


class PermissionDenied(ApplicationError):
    code = "permission_denied"
    http_status = 403
    default_detail = _("You may not do this.")


class ServiceUnavailable(ApplicationError):
    code = "service_unavailable"
    http_status = 503
    default_detail = _("A server the product depends on does not answer.")


def validation_error_fields(error: Any) -> dict[str, list[str]]:
    """Django's ValidationError as {field: [messages]} ("__all__" for non-field errors)."""
    if hasattr(error, "error_dict"):
        return {
            field: [str(m) for e in errors for m in e.messages] for field, errors in error.error_dict.items()
        }
    return {"__all__": [str(m) for m in getattr(error, "messages", [str(error)])]}
