"""Who may open an OCPP connection: security profiles 0-2, unknown chargers, failed-attempt limits.

Runs off the event loop (it reads the database). The key check is a salted HMAC, microseconds per
attempt, so a reconnect storm of thousands of chargers costs nothing notable.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from django.db import IntegrityError

from apps.accounts.models import Organisation
from apps.accounts.services import audit_record_create
from apps.ocpp_gateway import conf
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.redis_clients import sync_redis
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


def _deny(status: int, reason: str) -> Decision:
    return Decision(False, status, reason)


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _too_many_failures(identity: str, address: str) -> bool:
    per_identity, per_address, _window = conf.auth_failure_limit()
    r = sync_redis()
    values = r.mget(FAIL_KEY.format(kind="id", value=identity), FAIL_KEY.format(kind="ip", value=address))
    return int(values[0] or 0) >= per_identity or int(values[1] or 0) >= per_address


def _count_failure(identity: str, address: str) -> None:
    _p1, _p2, window = conf.auth_failure_limit()
    pipe = sync_redis().pipeline()
    for key in (FAIL_KEY.format(kind="id", value=identity), FAIL_KEY.format(kind="ip", value=address)):
        pipe.incr(key)
        pipe.expire(key, window)
    pipe.execute()


def _auto_register(identity: str, status: str) -> ChargePoint | None:
    slug = conf.auto_register_organisation()
    organisation = (Organisation.objects.filter(slug=slug).first() if slug
                    else Organisation.objects.filter(parent__isnull=True).order_by("pk").first())
    if organisation is None:
        logger.error("cannot auto-register %s: no organisation (set CPO_OCPP_AUTO_REGISTER_ORGANISATION)", identity)
        return None
    try:
        return ChargePoint.objects.create(identity=identity, organisation=organisation, security_profile=0,
                                          registration_status=status)
    except IntegrityError:
        return ChargePoint.objects.filter(identity=identity).first()


def authenticate(*, identity: str, authorization: str | None, address: str, secure: bool) -> Decision:
    """Decide a handshake. 401 for missing/wrong credentials, 403 for a profile the connection does not
    meet, 404 for an unknown identity under the `reject` policy, 429 after too many failures."""
    if _too_many_failures(identity, address):
        return _deny(429, "too many failed attempts; try later")
    cp = ChargePoint.objects.filter(identity=identity).first()
    if cp is None:
        policy = conf.unknown_chargers()
        if policy not in ("pending", "accept"):
            return _deny(404, "unknown charge point")
        cp = _auto_register(identity, RegistrationStatus.PENDING if policy == "pending" else RegistrationStatus.ACCEPTED)
        if cp is None:
            return _deny(404, "unknown charge point")
        logger.info("auto-registered unknown charge point %s as %s", identity, cp.registration_status)
    if cp.security_profile == SecurityProfile.NONE:
        if not (conf.allow_profile_0() or cp.registration_status == RegistrationStatus.PENDING):
            return _deny(401, "security profile 0 is not allowed on this server")
    else:
        if cp.security_profile >= SecurityProfile.TLS_BASIC and not secure:
            return _deny(403, "this charge point must connect over TLS (security profile 2)")
        credentials = parse_basic(authorization)
        if credentials is None or credentials[0] != identity or not keys.verify_key(credentials[1], cp.auth_key_hash):
            _count_failure(identity, address)
            return _deny(401, "missing or wrong credentials")
        if secure and cp.security_profile < SecurityProfile.TLS_BASIC and _upgrade_requested(cp):
            _hold_to_tls(cp)
    return Decision(True, 200, "", cp.pk, cp.organisation_id, cp.registration_status)


def _upgrade_requested(cp: ChargePoint) -> bool:
    """Whether the charger accepted a network profile of security profile 2 or higher (OCPP 2.0.1 A05)."""
    return OcppCommand.objects.filter(
        charge_point=cp, action="SetNetworkProfile", status=CommandStatus.ANSWERED,
        response__status="Accepted", payload__connectionData__securityProfile__gte=SecurityProfile.TLS_BASIC,
    ).exists()


def _hold_to_tls(cp: ChargePoint) -> None:
    """The upgraded charger is back over TLS with its credentials: from now on it must use TLS, and a
    connection with the lower profile is refused (A05: no downgrade)."""
    cp.security_profile = SecurityProfile.TLS_BASIC
    cp.save(update_fields=["security_profile", "updated_at"])
    audit_record_create(actor=None, action="chargepoint.security_profile_raised", target=cp, source="ocpp",
                        detail={"security_profile": int(SecurityProfile.TLS_BASIC)})
    logger.info("%s: security profile raised to 2 after its network profile upgrade", cp.identity)
