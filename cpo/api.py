"""DRF plumbing: one exception handler, one JSON error shape {"code", "detail", "fields"}."""

from __future__ import annotations

import abc
import contextlib
import hashlib
import math
import re
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions as drf_exceptions
from rest_framework import pagination, serializers, throttling
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cpo.asgi_limits import request_too_large_detail
from cpo.exceptions import ApplicationError, validation_error_fields


def _flatten(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in detail.items()}
    if isinstance(detail, list):
        return {"__all__": [str(x) for x in detail]}
    return {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, RequestDataTooBig):  # a body over DATA_UPLOAD_MAX_MEMORY_SIZE: not Django's HTML 400
        detail = request_too_large_detail(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        return Response({"code": "request_too_large", "detail": detail, "fields": {}}, status=413)
    if isinstance(exc, DjangoValidationError):
        fields = validation_error_fields(exc)
        return Response(
            {"code": "validation_failed", "detail": _("The input is invalid."), "fields": fields}, status=400
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        body = {
            "code": "validation_failed",
            "detail": _("The input is invalid."),
            "fields": _flatten(exc.detail),
        }
    else:
        detail = exc.detail if isinstance(exc, drf_exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, drf_exceptions.APIException) else "error"
        if isinstance(detail, dict) and "code" in detail:  # simplejwt: {"detail", "code", "messages"}
            code, detail = detail["code"], detail.get("detail", "")
        body = {"code": code if isinstance(code, str) else "error", "detail": str(detail), "fields": {}}
    response.data = body
    return response


class CursorPagination(pagination.CursorPagination):
    """Cursor pagination (stable under inserts) for every list; newest first unless a view says otherwise."""

    ordering = ("-created_at", "-pk")
    page_size_query_param = "page_size"
    max_page_size = 100


class _ScopedRateThrottle(throttling.SimpleRateThrottle, metaclass=abc.ABCMeta):
    """Rate limit for the view's `throttle_scope_base` (e.g. "start") keyed by `kind`, applied to the
    methods in the view's `throttle_methods` (all when unset). Rates: REST_FRAMEWORK DEFAULT_THROTTLE_RATES
    ["<base>-<kind>"]; a scope without a rate is not limited."""

    kind = ""

    def __init__(self) -> None:  # the rate is known only once the view is
        pass

    def allow_request(self, request: Any, view: Any) -> bool:
        base = getattr(view, "throttle_scope_base", None)
        methods = getattr(view, "throttle_methods", None)
        if not base or (methods is not None and request.method not in methods):
            return True
        self.scope = f"{base}-{self.kind}"
        if self.scope not in self.THROTTLE_RATES:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        ident = self.ident(request)
        if not ident:
            return None
        return self.cache_format % {"scope": self.scope, "ident": ident}

    @abc.abstractmethod
    def ident(self, request: Any) -> str:
        """What this kind counts by ('' for nothing to count: the request is not limited)."""


class UserRateThrottle(_ScopedRateThrottle):
    """Per signed-in user (a request without one is not counted here; logins: LoginFailureLimit)."""

    kind = "user"

    def ident(self, request: Any) -> str:
        if request.user and request.user.is_authenticated:
            return str(request.user.pk)
        return ""


class AddressRateThrottle(_ScopedRateThrottle):
    """Per client address (NUM_PROXIES decides how far X-Forwarded-For is trusted)."""

    kind = "address"

    def ident(self, request: Any) -> str:
        return self.get_ident(request)


THROTTLES = [UserRateThrottle, AddressRateThrottle]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """A rate as (count, seconds): "10/min", "10/15m", "100/h", "5/2d"."""
    match = _RATE.match(rate or "")
    if not match:
        raise ImproperlyConfigured(f"Not a rate: {rate!r} (use e.g. 10/min, 10/15m, 100/h)")
    count, multiple, unit = match.groups()
    return int(count), int(multiple or 1) * _SECONDS[unit]


def scope_rate(scope: str) -> tuple[int, int] | None:
    """The rate of a DEFAULT_THROTTLE_RATES scope as (count, seconds), or None where it is not limited."""
    rate = _ScopedRateThrottle.THROTTLE_RATES.get(scope)
    return parse_rate(rate) if rate else None


class FailureBudget:
    """At most the rate of `scope` (a DEFAULT_THROTTLE_RATES key: "10/15m") failures per `ident`, in fixed
    windows in the cache; a scope without a rate is not limited (`rate`, (count, seconds), overrides the
    scope's). An attempt is counted before it is judged (an atomic increment: parallel attempts cannot slip
    past the count) and refunded when it turns out not to be a failure. Over budget: 429 `throttled` with
    Retry-After (the window's end)."""

    def __init__(
        self, scope: str, ident: str, *, detail: str | None = None, rate: tuple[int, int] | None = None
    ) -> None:
        self.scope, self.ident, self.detail, self.rate = scope, ident, detail, rate
        self.key: str | None = None

    def spend(self) -> None:
        if not self.ident:
            return
        if self.rate is not None:
            limit, duration = self.rate
        else:
            rate = _ScopedRateThrottle.THROTTLE_RATES.get(self.scope)
            if not rate:
                return
            limit, duration = parse_rate(rate)
        now = time.time()
        window = int(now // duration)
        wait = (window + 1) * duration - now
        key = f"{self.scope}:{self.ident}:{duration}:{window}"
        if self._count(key, wait) > limit:
            self._uncount(key)
            raise drf_exceptions.Throttled(wait=math.ceil(wait), detail=self.detail)
        self.key = key

    def refund(self) -> None:
        if self.key:
            self._uncount(self.key)
            self.key = None

    def reset(self) -> None:
        """Forget every failure of this window (e.g. the right password was given)."""
        if self.key:
            cache.delete(self.key)
            self.key = None

    @staticmethod
    def _count(key: str, wait: float) -> int:
        for _attempt in range(3):
            cache.add(key, 0, timeout=int(wait) + 2)
            try:
                return int(cache.incr(key))
            except ValueError:  # expired between add and incr: a new window
                continue
        raise RuntimeError(f"the failure counter {key} could not be incremented")

    @staticmethod
    def _uncount(key: str) -> None:
        with contextlib.suppress(ValueError):  # gone with its window: nothing to take back
            cache.decr(key)


class LoginFailureLimit:
    """Failed logins, counted per (account, address) and per account, so that a guesser slows down without
    locking the driver out. A success does not count (and clears its address's failures).

    - `<base>-failures-pair` per (account, address): a guesser at one address is stopped here; the driver
      elsewhere is not affected.
    - `<base>-failures-account` per account, a much higher ceiling against guessing from many addresses;
      it does not apply to an address the account logged in from within CPO_API_LOGIN_KNOWN_ADDRESS_DAYS.
      Past it the account is slowed down, never locked: other addresses get one attempt (all of them
      together) per CPO_API_LOGIN_SLOWDOWN_S seconds, and 429 with Retry-After in between.
    - The per-address rate of all attempts is AddressRateThrottle's `<base>-address`.

    Each attempt spends from both budgets before the password is checked (FailureBudget) and is refunded
    when it succeeds or never reached the password check."""

    def __init__(self, request: Any, *, base: str = "login") -> None:
        email = request.data.get("email") if isinstance(request.data, dict) else None
        email = email.strip().lower() if isinstance(email, str) else ""
        # hashed: any text makes a safe cache key, and no address is written to the cache
        self.account = hashlib.sha256(email.encode()).hexdigest()[:32] if email else ""
        self.address = throttling.BaseThrottle().get_ident(request) or "-"
        self.known_key = f"{base}-known:{self.account}:{self.address}"
        self.slow_key = f"{base}-slow:{self.account}"
        self.pair = FailureBudget(
            f"{base}-failures-pair",
            f"{self.account}:{self.address}",
            detail=_("Too many failed log-ins for this account from this address."),
        )
        self.per_account = FailureBudget(
            f"{base}-failures-account", self.account, detail=_("Too many failed log-ins for this account.")
        )

    def begin(self) -> None:
        """Count this attempt as a failure in advance; raise Throttled when a limit is reached."""
        if not self.account:
            return  # no account named: the input is invalid and the login view says so
        self.pair.spend()
        if not cache.get(self.known_key):
            try:
                self.per_account.spend()
            except drf_exceptions.Throttled:
                # past the account's ceiling: a slow-down, not a lock (one attempt per interval goes on)
                slowdown = max(1, int(getattr(settings, "CPO_API_LOGIN_SLOWDOWN_S", 30)))
                if not cache.add(self.slow_key, 1, timeout=slowdown):
                    self.pair.refund()
                    raise drf_exceptions.Throttled(wait=slowdown, detail=self.per_account.detail) from None

    def abandon(self) -> None:
        """The password was not checked (invalid input, refused): take the attempt back."""
        self.pair.refund()
        self.per_account.refund()

    def succeeded(self) -> None:
        """The right password: not a failure; this address's failures for the account are forgiven and the
        address is known to the account from now on."""
        self.pair.reset()
        self.per_account.refund()
        days = int(getattr(settings, "CPO_API_LOGIN_KNOWN_ADDRESS_DAYS", 30))
        if self.account and days > 0:
            cache.set(self.known_key, 1, timeout=days * 86400)


class ErrorSerializer(serializers.Serializer):
    """The one error shape of the API."""

    code = serializers.CharField(help_text="Stable machine-readable code; apps switch on it.")
    detail = serializers.CharField(help_text="A sentence for people, in the request's language.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per input field ('__all__' for the whole input).",
    )


def error_responses(*statuses: int) -> dict[int, Any]:
    """drf-spectacular `responses` entries for error statuses (all in the one error shape)."""
    return {status: ErrorSerializer for status in statuses}


def validated(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:
    """Run an input serializer; a failure is the API's 400 validation_failed with its fields."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
