"""Who may open an OCPP connection: security profiles 0-2, unknown chargers, failed-attempt limits.

A correct key always gets in: the key is checked first, and the failed-attempt limits apply only to a
handshake being refused (the keys are long random secrets, so letting a correct one through does not
help guessing; chargers of a depot or a carrier share one address). An unknown identity and a wrong key
get the same answer (401, same body, same hashing work; 429 for both once over a limit), so the
handshake does not list the fleet. Failed attempts are limited per (identity, address) and per address
(CPO_OCPP_AUTH_FAILURES_PER_IDENTITY_ADDRESS, CPO_OCPP_AUTH_FAILURES_PER_ADDRESS within
CPO_OCPP_AUTH_FAILURE_WINDOW_S), never per identity alone.

Runs off the event loop, on the gateway's database pool (it reads the database). The key check is a
salted HMAC, microseconds per attempt, so a reconnect storm of thousands of chargers costs nothing
notable. A refusal is remembered in the process for CPO_OCPP_AUTH_REFUSAL_CACHE_S seconds (`refusals`),
for the same identity, address and Authorization header only: a charger retrying with the same wrong
key in a loop costs no database work (its failures are still counted in Redis, `refused_again`), while
any other key (the correct one included) is decided afresh.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.db import IntegrityError

from apps.accounts.models import Organisation
from apps.accounts.services import audit_record_create
from apps.ocpp_gateway import conf
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.redis_clients import async_redis, sync_redis
from apps.stations import keys
from apps.stations.choices import RegistrationStatus, SecurityProfile
from apps.stations.models import ChargePoint

logger = logging.getLogger(__name__)
FAIL_KEY = "cpo:ocpp:authfail:{kind}:{value}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    status: int = 200
    reason: str = ""
    charge_point_id: int | None = None
    organisation_id: int | None = None
    registration_status: str = ""
    log_reason: str = ""  # what the server log says (the answer's `reason` may say less)
    authenticated: bool = False  # the charger presented its key (not profile 0 / a Pending one without key)
    refusal: str = ""  # why `_refused` refused it (the failure was counted); see `refused_again`


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _failure_keys(identity: str, address: str) -> tuple[str, str]:
    return (
        FAIL_KEY.format(kind="id-ip", value=f"{identity}|{address}"),
        FAIL_KEY.format(kind="ip", value=address),
    )


def _too_many_failures(identity: str, address: str) -> bool:
    """Failures are counted per (identity, address) and per address, never per identity alone: someone
    failing from elsewhere can never lock the real charger out (see `authenticate`)."""
    per_identity_address, per_address, _window = conf.auth_failure_limit()
    values = sync_redis().mget(*_failure_keys(identity, address))
    return int(values[0] or 0) >= per_identity_address or int(values[1] or 0) >= per_address


def _count_failure(identity: str, address: str) -> None:
    _p1, _p2, window = conf.auth_failure_limit()
    pipe = sync_redis().pipeline()
    for key in _failure_keys(identity, address):
        pipe.incr(key)
        pipe.expire(key, window, nx=True)  # a fixed window from the first failure, not extended by more
    pipe.execute()


# Checked against when the identity is unknown, so that an unknown identity costs the same hashing work
# as a wrong key and the two cannot be told apart by timing either.
_UNKNOWN_HASH = keys.hash_key(keys.generate_key())


def _auto_register(identity: str, status: str) -> ChargePoint | None:
    slug = conf.auto_register_organisation()
    organisation = (
        Organisation.objects.filter(slug=slug).first()
        if slug
        else Organisation.objects.filter(parent__isnull=True).order_by("pk").first()
    )
    if organisation is None:
        logger.error(
            "cannot auto-register %s: no organisation (set CPO_OCPP_AUTO_REGISTER_ORGANISATION)", identity
        )
        return None
    try:
        return ChargePoint.objects.create(
            identity=identity, organisation=organisation, security_profile=0, registration_status=status
        )
    except IntegrityError:
        return ChargePoint.objects.filter(identity=identity).first()


def _refused(identity: str, address: str, reason: str) -> Decision:
    """Unknown identity, missing or wrong credentials, a profile this server refuses: one answer for all
    (status and body; 429 for all once this address is over a limit), so that the answer never tells
    whether an identity exists. The failure is counted either way; the reason is logged."""
    over_limit = _too_many_failures(identity, address)
    _count_failure(identity, address)
    if over_limit:
        return _throttled(reason, refusal=reason)
    return Decision(False, 401, REFUSED_BODY, log_reason=reason, refusal=reason)


def _throttled(reason: str, *, refusal: str = "") -> Decision:
    return Decision(
        False, 429, THROTTLED_BODY, log_reason=f"failure limit reached ({reason})", refusal=refusal
    )


async def refused_again(*, identity: str, address: str, cached: Decision) -> Decision:
    """The answer to a handshake refused moments ago for the same identity, address and credentials
    (`refusals`): counted and limited exactly as `_refused` does, with one round trip of the event loop's
    Redis client and no database work. A refusal that was not counted (TLS required) is given again."""
    if not cached.refusal:
        return cached
    per_identity_address, per_address, window = conf.auth_failure_limit()
    names = _failure_keys(identity, address)
    pipe = async_redis().pipeline(transaction=False)
    pipe.mget(*names)
    for key in names:
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
    values = (await pipe.execute())[0]
    if int(values[0] or 0) >= per_identity_address or int(values[1] or 0) >= per_address:
        return _throttled(cached.refusal, refusal=cached.refusal)
    return Decision(False, 401, REFUSED_BODY, log_reason=cached.refusal, refusal=cached.refusal)


class RefusalCache:
    """Handshakes recently refused, by (identity, address, TLS or not, digest of the Authorization
    header): an LRU with a time to live. Used from the event loop only: no lock."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._until: OrderedDict[str, tuple[float, Decision]] = OrderedDict()
        self.hits = 0

    @staticmethod
    def key(identity: str, address: str, authorization: str | None, secure: bool) -> str:
        digest = hashlib.sha256((authorization or "").encode("utf-8", "surrogateescape")).hexdigest()
        return f"{identity}|{address}|{int(secure)}|{digest}"

    def get(self, key: str) -> Decision | None:
        found = self._until.get(key)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            del self._until[key]
            return None
        self.hits += 1
        return found[1]

    def add(self, key: str, decision: Decision) -> None:
        """Remember a refusal counted as a failure, or the refusal of a right key without TLS (403)."""
        ttl = conf.auth_refusal_cache_s()
        if ttl <= 0 or decision.allowed or not (decision.refusal or decision.status == 403):
            return
        self._until[key] = (time.monotonic() + ttl, decision)
        self._until.move_to_end(key)
        while len(self._until) > self.max_keys:
            self._until.popitem(last=False)

    def clear(self) -> None:
        self._until.clear()


refusals = RefusalCache()

REFUSED_BODY = "missing or wrong credentials"
THROTTLED_BODY = "too many failed attempts; try later"


def authenticate(*, identity: str, authorization: str | None, address: str, secure: bool) -> Decision:
    """Decide a handshake: 401 for an unknown identity and for missing/wrong credentials alike, 403 for
    the right credentials over a connection that does not meet the charger's security profile (TLS). The
    limits are looked at only when refusing: a handshake that would be refused gets 429 instead of 401
    after too many failures from this address (per identity and address, and per address alone), while
    a correct key always gets in, from any address. An unknown identity is auto-registered (policy
    "pending"/"accept") only from an address under its limits."""
    credentials = parse_basic(authorization)
    cp = ChargePoint.objects.filter(identity=identity).first()
    if cp is None:
        policy = conf.unknown_chargers()
        if policy not in ("pending", "accept"):
            # The same work as for a known identity.
            keys.verify_key(credentials[1] if credentials else "", _UNKNOWN_HASH)
            return _refused(identity, address, "unknown charge point")
        if _too_many_failures(identity, address):
            return _throttled("unknown charge point, not auto-registered")
        cp = _auto_register(
            identity, RegistrationStatus.PENDING if policy == "pending" else RegistrationStatus.ACCEPTED
        )
        if cp is None:
            return _refused(identity, address, "unknown charge point (could not auto-register)")
        logger.info("auto-registered unknown charge point %s as %s", identity, cp.registration_status)
    authenticated = cp.security_profile != SecurityProfile.NONE
    if not authenticated:
        if not (conf.allow_profile_0() or cp.registration_status == RegistrationStatus.PENDING):
            return _refused(identity, address, "security profile 0 is not allowed on this server")
    else:
        valid = keys.verify_key(credentials[1] if credentials else "", cp.auth_key_hash)
        if credentials is None or credentials[0] != identity or not valid:
            return _refused(identity, address, "missing or wrong credentials")
        if cp.security_profile >= SecurityProfile.TLS_BASIC and not secure:
            return Decision(False, 403, "this charge point must connect over TLS (security profile 2)")
        if secure and cp.security_profile < SecurityProfile.TLS_BASIC and _upgrade_requested(cp):
            _hold_to_tls(cp)
    return Decision(
        True, 200, "", cp.pk, cp.organisation_id, cp.registration_status, authenticated=authenticated
    )


def _upgrade_requested(cp: ChargePoint) -> bool:
    """Whether the charger accepted a network profile of security profile 2 or higher (OCPP 2.0.1 A05)."""
    return OcppCommand.objects.filter(
        charge_point=cp,
        action="SetNetworkProfile",
        status=CommandStatus.ANSWERED,
        response__status="Accepted",
        payload__connectionData__securityProfile__gte=SecurityProfile.TLS_BASIC,
    ).exists()


def _hold_to_tls(cp: ChargePoint) -> None:
    """The upgraded charger is back over TLS with its credentials: from now on it must use TLS, and a
    connection with the lower profile is refused (A05: no downgrade)."""
    cp.security_profile = SecurityProfile.TLS_BASIC
    cp.save(update_fields=["security_profile", "updated_at"])
    audit_record_create(
        actor=None,
        action="chargepoint.security_profile_raised",
        target=cp,
        source="ocpp",
        detail={"security_profile": int(SecurityProfile.TLS_BASIC)},
    )
    logger.info("%s: security profile raised to 2 after its network profile upgrade", cp.identity)
