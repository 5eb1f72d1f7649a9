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

A throttled attempt is refused before the password is checked. Password reset *requests* are counted
per account (the address typed, whether or not it has an account: no answer reveals that) and per
address, in windows of CPO_ADMIN_PASSWORD_RESET_WINDOW_S.

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
from rest_framework.throttling import BaseThrottle

from apps.accounts.choices import AuditOutcome
from apps.accounts.models import User
from apps.accounts.services import audit_record_create

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
    audit_record_create(
        actor="anonymous",
        action=action,
        outcome=outcome,
        target=target,
        source="admin",
        detail={"username": username[:254], "address": client_address(request), **detail},
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
def _login_keys(request: HttpRequest, username: str) -> tuple[str, str, str, str]:
    account, address = _account_key(username), _address_key(client_address(request))
    return (
        f"{PREFIX}:fail:pair:{account}:{address}",
        f"{PREFIX}:fail:addr:{address}",
        f"{PREFIX}:fail:acct:{account}",
        f"{PREFIX}:known:{account}:{address}",
    )


def login_check(*, request: HttpRequest, username: str) -> Throttled | None:
    """None when a sign-in attempt for `username` from this request's address may go on to the password
    check; otherwise why not (the refusal is audited and logged)."""
    window = _setting("CPO_ADMIN_LOGIN_WINDOW_S", 900)
    pair, addr, acct, known = _login_keys(request, username)
    too_many = _("Too many failed sign-in attempts. Please wait up to {minutes} minutes and try again.")
    throttled: Throttled | None = None
    key = ""
    if _value(pair) >= _setting("CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT_ADDRESS", 5):
        throttled, key = (
            Throttled("account_address", window, too_many.format(minutes=_wait_minutes(window))),
            pair,
        )
    elif _value(addr) >= _setting("CPO_ADMIN_LOGIN_MAX_FAILURES_ADDRESS", 20):
        throttled, key = Throttled("address", window, too_many.format(minutes=_wait_minutes(window))), addr
    elif _value(acct) >= _setting("CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT", 50) and not cache.get(known):
        slowdown = _setting("CPO_ADMIN_LOGIN_SLOWDOWN_S", 30)
        # not a lock: one attempt per slow-down interval from addresses this account has not signed in from
        if not cache.add(f"{PREFIX}:slow:{_account_key(username)}", 1, timeout=slowdown):
            message = _(
                "This account has had many failed sign-in attempts. "
                "Please wait {seconds} seconds and try again."
            ).format(seconds=slowdown)
            throttled, key = Throttled("account", slowdown, message), acct
    if throttled is None:
        return None
    return _refuse(
        request=request, username=username, throttled=throttled, key=key, action="admin.login_throttled"
    )


def login_failed(*, request: HttpRequest, username: str) -> None:
    """Count a failed sign-in (wrong password, unknown account, or an account that may not use the admin)
    and audit it."""
    window = _setting("CPO_ADMIN_LOGIN_WINDOW_S", 900)
    pair, addr, acct, _known = _login_keys(request, username)
    for key in (pair, addr, acct):
        _count(key, window)
    _audit(
        action="admin.login_failed",
        outcome=AuditOutcome.FAILED,
        request=request,
        username=username,
        detail={},
    )


def login_succeeded(*, request: HttpRequest, username: str) -> None:
    """A correct sign-in: this address becomes known for the account (not slowed down when the account is
    under attack) and its failures for this account are forgotten. The address's own count stays."""
    pair, _addr, _acct, known = _login_keys(request, username)
    cache.delete(pair)
    cache.set(known, 1, timeout=_setting("CPO_ADMIN_LOGIN_KNOWN_ADDRESS_DAYS", 30) * 86400)


# --- password reset ----------------------------------------------------------------------------------------
def password_reset_check(*, request: HttpRequest, email: str) -> Throttled | None:
    """Count a password reset request for `email` from this request's address; None when it may be sent,
    otherwise why not (the refusal is audited and logged, and not counted)."""
    window = _setting("CPO_ADMIN_PASSWORD_RESET_WINDOW_S", 3600)
    account = f"{PREFIX}:reset:acct:{_account_key(email)}"
    address = f"{PREFIX}:reset:addr:{_address_key(client_address(request))}"
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
