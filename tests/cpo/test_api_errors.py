"""The one JSON error shape {"code", "detail", "fields"} that cpo.api.exception_handler gives API errors."""

import json

import pytest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from cpo.exceptions import Conflict, NotFound, PermissionDenied, ServiceUnavailable, ValidationFailed

NO_COORDINATES = "A location needs coordinates (latitude and longitude)."
DUPLICATE = "A charge point with this OCPP identity already exists."


class _ChargerInput(serializers.Serializer):
    identity = serializers.CharField(max_length=8)
    max_power_w = serializers.IntegerField(min_value=1)


class _Raising(APIView):
    """Raises `error` when given one; otherwise validates the body with `_ChargerInput`."""

    authentication_classes = []
    permission_classes = [AllowAny]
    error: Exception | None = None

    def post(self, request):
        if self.error is not None:
            raise self.error
        _ChargerInput(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


class _Private(APIView):
    permission_classes = [IsAuthenticated]

    def post(self, request):
        return Response({"ok": True})


def call(view, data: dict | None = None) -> tuple[int, dict]:
    response = view(APIRequestFactory().post("/", data or {}, format="json"))
    response.render()
    return response.status_code, json.loads(response.content)


def raising(error: Exception):
    return _Raising.as_view(error=error)


def error_body(code: str, detail: str, fields: dict | None = None) -> dict:
    return {"code": code, "detail": detail, "fields": fields or {}}


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            ValidationFailed(NO_COORDINATES, code="coordinates_missing", fields={"point": [NO_COORDINATES]}),
            400,
            error_body("coordinates_missing", NO_COORDINATES, {"point": [NO_COORDINATES]}),
        ),
        (ValidationFailed(), 400, error_body("validation_failed", "The input is invalid.")),
        (
            NotFound("No location with id 7.", code="location_not_found"),
            404,
            error_body("location_not_found", "No location with id 7."),
        ),
        (Conflict(DUPLICATE), 409, error_body("conflict", DUPLICATE)),
        (PermissionDenied(), 403, error_body("permission_denied", "You may not do this.")),
        (
            ServiceUnavailable(),
            503,
            error_body("service_unavailable", "A server the product depends on does not answer."),
        ),
    ],
)
def test_application_errors(error, status, body):
    assert call(raising(error)) == (status, body)


def test_serializer_errors_name_each_field():
    status, body = call(raising(None), {"identity": "CP-TOO-LONG", "max_power_w": 0})

    assert status == 400
    assert body == error_body(
        "validation_failed",
        "The input is invalid.",
        {
            "identity": ["Ensure this field has no more than 8 characters."],
            "max_power_w": ["Ensure this value is greater than or equal to 1."],
        },
    )


def test_valid_input_passes():
    assert call(raising(None), {"identity": "CP-1", "max_power_w": 22000}) == (200, {"ok": True})


def test_django_validation_error_with_fields():
    error = DjangoValidationError({"point": [NO_COORDINATES], "name": ["This field cannot be blank."]})

    assert call(raising(error)) == (
        400,
        error_body(
            "validation_failed",
            "The input is invalid.",
            {"point": [NO_COORDINATES], "name": ["This field cannot be blank."]},
        ),
    )


def test_django_validation_error_without_fields():
    error = DjangoValidationError("Audit records cannot be changed.")

    assert call(raising(error)) == (
        400,
        error_body(
            "validation_failed", "The input is invalid.", {"__all__": ["Audit records cannot be changed."]}
        ),
    )


def test_non_field_drf_validation_error():
    error = drf_exceptions.ValidationError("Pick a connector.")

    assert call(raising(error)) == (
        400,
        error_body("validation_failed", "The input is invalid.", {"__all__": ["Pick a connector."]}),
    )


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (Http404("no such thing"), 404, error_body("not_found", "Not found.")),
        (
            DjangoPermissionDenied(),
            403,
            error_body("permission_denied", "You do not have permission to perform this action."),
        ),
        (
            drf_exceptions.Throttled(wait=30),
            429,
            error_body("throttled", "Request was throttled. Expected available in 30 seconds."),
        ),
        (
            drf_exceptions.MethodNotAllowed("PUT"),
            405,
            error_body("method_not_allowed", 'Method "PUT" not allowed.'),
        ),
    ],
)
def test_django_and_drf_errors(error, status, body):
    assert call(raising(error)) == (status, body)


def test_unauthenticated(db):
    # JWT is the first authentication class: it names a scheme (WWW-Authenticate), so this is 401.
    assert call(_Private.as_view()) == (
        401,
        error_body("not_authenticated", "Authentication credentials were not provided."),
    )


def test_unexpected_errors_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        call(raising(ZeroDivisionError()))
