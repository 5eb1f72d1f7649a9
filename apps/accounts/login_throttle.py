"""Brute-force protection of the admin's sign-in page (/admin/login/) and its password reset
(/admin/password_reset/). The driver API's login is not covered here: it has its own throttles.

Sign-in *failures* (never successes) are counted in the cache (Redis), in fixed windows of
CPO_ADMIN_LOGIN_WINDOW_S seconds, three ways:

- per (account, address), CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT_ADDRESS: that address may not try that
  account again until the window ends;
- per address, CPO_ADMIN_LOGIN_MAX_FAILURES_ADDRESS: that address may not try any account until the
  window ends (an IPv6 address counts as its /64 network);
- per account from all addresses, CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT, a higher ceiling that slows
  down rather than locks: past it, addresses the account has not signed in from successfully within
  CPO_ADMIN_LOGIN_KNOWN_ADDRESS_DAYS get one attempt per CPO_ADMIN_LOGIN_SLOWDOWN_S between them, and the
  account's known addresses are not slowed at all. An attacker spread over many addresses cannot lock the
  real user out, and is held to a trickle of guesses.

Each attempt is counted as a failure before the password is checked (an atomic increment, so parallel
attempts cannot slip past the limits) and taken back when it succeeds; a throttled attempt is refused
before the password is checked, and not counted.

Password reset *requests* are counted per (account, address) (the account: the e-mail address typed,
whether or not it has an account: no answer reveals that), so that requests from elsewhere cannot use up
the account owner's own, and per address, in windows of CPO_ADMIN_PASSWORD_RESET_WINDOW_S.

Audit records (apps.accounts AuditRecord, source "admin"): one per failed sign-in (admin.login_failed),
and one per throttled key and window for throttled attempts (admin.login_throttled,
admin.password_reset_throttled), so that a flood of refused attempts cannot flood the audit trail; every
refused attempt is logged.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.translation import gettext as _
from rest_framework.exceptions import Throttled as ApiThrottled
from rest_framework.throttling import BaseThrottle

from apps.accounts.choices import AuditOutcome
from apps.accounts.models import User
from apps.accounts.services import audit_record_create
from cpo.api import FailureBudget

logger = logging.getLogger(__name__)

PREFIX = "cpo:admin-auth"


@dataclass(frozen=True, slots=True)
class Throttled:
    """Why an attempt is refused: which count (`scope`), for how long at most, and what to tell the user."""

    scope: str  # "account_address", "address", "account" (the slow-down), "reset_account", "reset_address"
    wait_s: int
    message: str


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def client_address(request: HttpRequest) -> str:
    """The client's address as the API's throttles see it (REST_FRAMEWORK NUM_PROXIES decides how far
    X-Forwarded-For is trusted)."""
    return BaseThrottle().get_ident(request) or ""


def _address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return "raw-" + hashlib.sha256(address.encode()).hexdigest()[:32]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))  # one subscriber holds a whole /64
    return str(ip)


def _account_key(username: str) -> str:
    # hashed: any text makes a safe cache key, and no address typed into the form is written to the cache
    return hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]


def _count(key: str, window_s: int) -> int:
    """Add one to the counter `key` (created with a lifetime of `window_s`) and return its value."""
    cache.add(key, 0, timeout=window_s)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window_s)
        return 1


def _value(key: str) -> int:
    return int(cache.get(key) or 0)


def _wait_minutes(seconds: int) -> int:
    return max(1, math.ceil(seconds / 60))


def _account(username: str) -> User | None:
    return User.objects.filter(email__iexact=username.strip()).first() if username.strip() else None


def _audit(*, action: str, outcome: str, request: HttpRequest, username: str, detail: dict[str, Any]) -> None:
    target = _account(username)
    # a driver's address typed here is kept as the driver's pseudonym, like everywhere in the trail
    typed = target.audit_repr() if target is not None and target.is_driver else username[:254]
    audit_record_create(
        actor="anonymous",
        action=action,
        outcome=outcome,
        target=target,
        source="admin",
        detail={"username": typed, "address": client_address(request), **detail},
    )


def _refuse(*, request: HttpRequest, username: str, throttled: Throttled, key: str, action: str) -> Throttled:
    logger.warning(
        "%s: refused (%s) for %r from %s", action, throttled.scope, username[:254], client_address(request)
    )
    # one audit record per throttled key and window: a flood of refused attempts is not a flood of rows
    if cache.add(f"{PREFIX}:audited:{throttled.scope}:{key}", 1, timeout=max(1, throttled.wait_s)):
        _audit(
            action=action,
            outcome=AuditOutcome.DENIED,
            request=request,
            username=username,
            detail={"throttle": throttled.scope, "wait_s": throttled.wait_s},
        )
    return throttled


# --- sign-in -----------------------------------------------------------------------------------------------
class LoginAttempt:
    """One sign-in attempt for `username` from this request's address. `begin()` counts it as a failure in
    advance (atomic increments in the cache, cpo.api.FailureBudget: parallel attempts cannot all pass a
    check that only reads) and refuses it past a limit, taking the count back; `succeeded()` takes it back
    and forgets the address's failures for the account; `failed()` leaves it counted and audits it."""

    def __init__(self, *, request: HttpRequest, username: str) -> None:
        self.request, self.username = request, username
        window = _setting("CPO_ADMIN_LOGIN_WINDOW_S", 900)
        account, address = _account_key(username), _address_key(client_address(request))
        self.window = window
        self.account = account
        self.known_key = f"{PREFIX}:known:{account}:{address}"
        self.pair = FailureBudget(
            f"{PREFIX}:fail:pair",
            f"{account}:{address}",
            rate=(_setting("CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT_ADDRESS", 5), window),
        )
        self.address = FailureBudget(
            f"{PREFIX}:fail:addr",
            address,
            rate=(_setting("CPO_ADMIN_LOGIN_MAX_FAILURES_ADDRESS", 20), window),
        )
        self.per_account = FailureBudget(
            f"{PREFIX}:fail:acct",
            account,
            rate=(_setting("CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT", 50), window),
        )

    def begin(self) -> Throttled | None:
        """None when the attempt may go on to the password check (it is counted as a failure already);
        otherwise why not (not counted; the refusal is audited and logged)."""
        too_many = _("Too many failed sign-in attempts. Please wait up to {minutes} minutes and try again.")
        too_many = too_many.format(minutes=_wait_minutes(self.window))
        throttled: Throttled | None = None
        try:
            self.pair.spend()
        except ApiThrottled:
            throttled, key = Throttled("account_address", self.window, too_many), self.pair.ident
        if throttled is None:
            try:
                self.address.spend()
            except ApiThrottled:
                self.pair.refund()
                throttled, key = Throttled("address", self.window, too_many), self.address.ident
        if throttled is None and not cache.get(self.known_key):
            try:
                self.per_account.spend()
            except ApiThrottled:
                slowdown = _setting("CPO_ADMIN_LOGIN_SLOWDOWN_S", 30)
                # not a lock: one attempt per slow-down interval from addresses this account has not
                # signed in from
                if not cache.add(f"{PREFIX}:slow:{self.account}", 1, timeout=max(1, slowdown)):
                    self.pair.refund()
                    self.address.refund()
                    message = _(
                        "This account has had many failed sign-in attempts. "
                        "Please wait {seconds} seconds and try again."
                    ).format(seconds=slowdown)
                    throttled, key = Throttled("account", slowdown, message), self.account
        if throttled is None:
            return None
        return _refuse(
            request=self.request,
            username=self.username,
            throttled=throttled,
            key=key,
            action="admin.login_throttled",
        )

    def failed(self) -> None:
        """A failed sign-in (wrong password, unknown account, or an account that may not use the admin): it
        stays counted, and is audited."""
        _audit(
            action="admin.login_failed",
            outcome=AuditOutcome.FAILED,
            request=self.request,
            username=self.username,
            detail={},
        )

    def abandon(self) -> None:
        """The password check did not finish (an error): the attempt is taken back."""
        for budget in (self.pair, self.address, self.per_account):
            budget.refund()

    def succeeded(self) -> None:
        """A correct sign-in: not a failure. This address becomes known for the account (not slowed down
        when the account is under attack) and its failures for this account are forgotten; the address's
        own failures stay."""
        self.pair.reset()
        self.address.refund()
        self.per_account.refund()
        cache.set(self.known_key, 1, timeout=_setting("CPO_ADMIN_LOGIN_KNOWN_ADDRESS_DAYS", 30) * 86400)


# --- password reset ----------------------------------------------------------------------------------------
def password_reset_check(*, request: HttpRequest, email: str) -> Throttled | None:
    """Count a password reset request for `email` from this request's address; None when it may be sent,
    otherwise why not (the refusal is audited and logged, and not counted)."""
    window = _setting("CPO_ADMIN_PASSWORD_RESET_WINDOW_S", 3600)
    client = _address_key(client_address(request))
    # per (account, address): requests from elsewhere cannot use up the account owner's own requests
    account = f"{PREFIX}:reset:acct:{_account_key(email)}:{client}"
    address = f"{PREFIX}:reset:addr:{client}"
    message = _(
        "Too many password reset requests. Please wait up to {minutes} minutes and try again."
    ).format(minutes=_wait_minutes(window))
    throttled: Throttled | None = None
    key = ""
    if _value(account) >= _setting("CPO_ADMIN_PASSWORD_RESET_MAX_ACCOUNT", 3):
        throttled, key = Throttled("reset_account", window, message), account
    elif _value(address) >= _setting("CPO_ADMIN_PASSWORD_RESET_MAX_ADDRESS", 10):
        throttled, key = Throttled("reset_address", window, message), address
    if throttled is not None:
        return _refuse(
            request=request,
            username=email,
            throttled=throttled,
            key=key,
            action="admin.password_reset_throttled",
        )
    _count(account, window)
    _count(address, window)
    return None
