"""The OCPI credentials module, both directions (credentials.asciidoc):

- A party registers with us: an operator issues a token A (admin or `manage.py ocpi_token_a`), gives it
  and our versions URL to the party; the party POSTs its credentials (its token B for us) with token A;
  we read its versions and endpoints with token B and answer with our credentials holding a new token C
  for it; token A no longer works. PUT replaces the tokens, DELETE ends the connection.
- We register with a party: the operator enters its versions URL and the token A it gave us; we read its
  endpoints with token A, POST our credentials (a new token B for it) and keep the token C it answers.

Outgoing HTTP happens outside any database transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.accounts.models import Organisation
from apps.roaming.choices import PartyStatus
from apps.roaming.client import OcpiRequestFailed, ocpi_request
from apps.roaming.models import Party
from apps.roaming.objects import our_identity
from apps.roaming.protocol import (
    INVALID_PARAMETERS,
    NO_MATCHING_ENDPOINTS,
    UNABLE_TO_USE_CLIENT_API,
    UNSUPPORTED_VERSION,
    VERSION,
    OcpiError,
    new_token,
    token_digest,
)
from cpo import clock

logger = logging.getLogger(__name__)

ROLES = frozenset({"CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP"})
MODULES = [
    ("credentials", "SENDER"),
    ("credentials", "RECEIVER"),
    ("locations", "SENDER"),
    ("tariffs", "SENDER"),
    ("sessions", "SENDER"),
    ("cdrs", "SENDER"),
    ("tokens", "RECEIVER"),
    ("commands", "RECEIVER"),
]


def ocpi_base_url(request_base: str = "") -> str:
    """Where parties reach our /ocpi/ (CPO_OCPI_BASE_URL, else the base of the request being answered)."""
    base = (settings.CPO_OCPI_BASE_URL or request_base or "").rstrip("/")
    if not base:
        raise OcpiError(
            "CPO_OCPI_BASE_URL is not set: parties need the public URL of this server",
            status_code=NO_MATCHING_ENDPOINTS,
            http_status=500,
        )
    return base


def versions_list(*, base_url: str) -> list[dict[str, str]]:
    return [{"version": VERSION, "url": f"{base_url}/ocpi/{VERSION}"}]


def version_details(*, base_url: str) -> dict[str, Any]:
    return {
        "version": VERSION,
        "endpoints": [
            {"identifier": identifier, "role": role, "url": f"{base_url}/ocpi/{VERSION}/{identifier}"}
            for identifier, role in MODULES
        ],
    }


def our_credentials(*, token: str, base_url: str) -> dict[str, Any]:
    cc, pid = our_identity()
    return {
        "token": token,
        "url": f"{base_url}/ocpi/versions",
        "roles": [
            {
                "role": "CPO",
                "party_id": pid,
                "country_code": cc,
                "business_details": {"name": settings.CPO_OCPI_BUSINESS_NAME},
            }
        ],
    }


@dataclass(frozen=True, slots=True)
class TheirCredentials:
    token: str
    url: str
    roles: list[dict[str, Any]]

    @property
    def identity(self) -> tuple[str, str]:
        """The (country code, party id) we address them by: their eMSP or hub role, else the first."""
        preferred = [r for r in self.roles if r["role"] in ("EMSP", "HUB")] or self.roles
        return preferred[0]["country_code"].upper(), preferred[0]["party_id"].upper()


def credentials_parse(data: Any) -> TheirCredentials:
    """Check a Credentials object; OcpiError 2001 naming the first problem."""
    if not isinstance(data, dict):
        raise OcpiError("credentials: a JSON object is required")
    token, url, roles = data.get("token"), data.get("url"), data.get("roles")
    if not isinstance(token, str) or not 1 <= len(token) <= 64 or not token.isascii() or " " in token:
        raise OcpiError("credentials.token: 1 to 64 ASCII characters without spaces are required")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise OcpiError("credentials.url: the URL of your versions endpoint is required")
    if not isinstance(roles, list) or not roles:
        raise OcpiError("credentials.roles: at least one CredentialsRole is required")
    for i, role in enumerate(roles):
        if not isinstance(role, dict):
            raise OcpiError(f"credentials.roles[{i}]: an object is required")
        if role.get("role") not in ROLES:
            raise OcpiError(f"credentials.roles[{i}].role: one of {', '.join(sorted(ROLES))}")
        cc, pid = role.get("country_code"), role.get("party_id")
        if not isinstance(cc, str) or len(cc) != 2 or not cc.isalpha():
            raise OcpiError(f"credentials.roles[{i}].country_code: 2 letters are required")
        if not isinstance(pid, str) or len(pid) != 3 or not pid.isalnum():
            raise OcpiError(f"credentials.roles[{i}].party_id: 3 letters or digits are required")
        details = role.get("business_details")
        if not isinstance(details, dict) or not isinstance(details.get("name"), str):
            raise OcpiError(f"credentials.roles[{i}].business_details.name is required")
    return TheirCredentials(token=token, url=url, roles=roles)


def endpoints_fetch(*, versions_url: str, token: str) -> tuple[str, list[dict[str, Any]]]:
    """Read a party's versions and the endpoints of 2.2.1. OcpiError 3001 when it cannot be read, 3002
    without 2.2.1, 3003 without a credentials endpoint."""
    try:
        versions = ocpi_request("GET", versions_url, token=token).data
        if not isinstance(versions, list):
            raise OcpiError("versions: a list is expected", status_code=UNABLE_TO_USE_CLIENT_API)
        match = [v for v in versions if isinstance(v, dict) and v.get("version") == VERSION and v.get("url")]
        if not match:
            offered = ", ".join(str(v.get("version")) for v in versions if isinstance(v, dict))
            raise OcpiError(
                f"no common OCPI version: we speak {VERSION}, you offer {offered or 'none'}",
                status_code=UNSUPPORTED_VERSION,
            )
        details = ocpi_request("GET", match[0]["url"], token=token).data
    except OcpiRequestFailed as exc:
        raise OcpiError(f"cannot read your versions: {exc}", status_code=UNABLE_TO_USE_CLIENT_API) from exc
    endpoints = details.get("endpoints") if isinstance(details, dict) else None
    if not isinstance(endpoints, list) or not all(
        isinstance(e, dict) and {"identifier", "role", "url"} <= e.keys() for e in endpoints
    ):
        raise OcpiError("version details: endpoints are missing", status_code=UNABLE_TO_USE_CLIENT_API)
    if not any(e["identifier"] == "credentials" for e in endpoints):
        raise OcpiError("version details: no credentials endpoint", status_code=NO_MATCHING_ENDPOINTS)
    return VERSION, endpoints


def token_a_issue(*, organisation: Organisation, name: str) -> tuple[Party, str]:
    """A new pending party with a fresh token A (returned once: only its digest is kept)."""
    token = new_token()
    party = Party.objects.create(
        organisation=organisation, name=name, status=PartyStatus.PENDING, token_a_hash=token_digest(token)
    )
    return party, token


def party_for_token(candidates: list[str]) -> tuple[Party | None, bool]:
    """The party a credentials token belongs to, and whether it is a token A (which opens only versions
    and credentials). Unregistered parties have no working token."""
    for token in candidates:
        digest = token_digest(token)
        party = (
            Party.objects.filter(incoming_token_hash=digest)
            .exclude(status=PartyStatus.UNREGISTERED)
            .select_related("organisation")
            .first()
        )
        if party is not None:
            return party, False
        party = (
            Party.objects.filter(token_a_hash=digest, status=PartyStatus.PENDING)
            .select_related("organisation")
            .first()
        )
        if party is not None:
            return party, True
    return None, False


def _apply(party: Party, theirs: TheirCredentials, version: str, endpoints: list[dict[str, Any]]) -> None:
    party.country_code, party.party_id = theirs.identity
    party.roles = theirs.roles
    party.versions_url = theirs.url
    party.version = version
    party.endpoints = endpoints


def _save(party: Party) -> None:
    try:
        with transaction.atomic():
            party.save()
    except IntegrityError as exc:
        raise OcpiError(
            f"{party.country_code}*{party.party_id} is already registered here",
            status_code=INVALID_PARAMETERS,
        ) from exc


def credentials_accept(*, party: Party, data: Any, base_url: str, update: bool = False) -> dict[str, Any]:
    """A party POSTs (registers, with its token A) or PUTs (updates, registered) its credentials: read its
    endpoints with its new token, issue a new token for it, forget token A. Returns our credentials."""
    theirs = credentials_parse(data)
    version, endpoints = endpoints_fetch(versions_url=theirs.url, token=theirs.token)
    ours = new_token()
    party = Party.objects.get(pk=party.pk)
    _apply(party, theirs, version, endpoints)
    party.outgoing_token = theirs.token
    party.incoming_token_hash = token_digest(ours)
    party.token_a_hash = ""
    party.status = PartyStatus.REGISTERED
    if not update or party.registered_at is None:
        party.registered_at = clock.now()
    _save(party)
    logger.info("roaming: %s %s its credentials", party, "updated" if update else "registered")
    return our_credentials(token=ours, base_url=base_url)


def credentials_forget(*, party: Party) -> None:
    """The connection ended (either side's DELETE): no token of it works any more."""
    Party.objects.filter(pk=party.pk).update(
        status=PartyStatus.UNREGISTERED,
        incoming_token_hash="",
        outgoing_token="",
        token_a_hash="",
        updated_at=clock.now(),
    )


def credentials_register(*, party: Party, versions_url: str, token_a: str, base_url: str) -> Party:
    """We register with a party that gave us its versions URL and token A."""
    version, endpoints = endpoints_fetch(versions_url=versions_url, token=token_a)
    url = next(e["url"] for e in endpoints if e["identifier"] == "credentials")
    token_b = new_token()
    # It may call our versions with token B while it handles the POST: the digest must be stored first.
    Party.objects.filter(pk=party.pk).update(
        incoming_token_hash=token_digest(token_b), versions_url=versions_url, updated_at=clock.now()
    )
    try:
        reply = ocpi_request(
            "POST", url, token=token_a, body=our_credentials(token=token_b, base_url=base_url)
        )
    except OcpiRequestFailed as exc:
        Party.objects.filter(pk=party.pk).update(incoming_token_hash="")
        raise OcpiError(
            f"the party refused our credentials: {exc}", status_code=UNABLE_TO_USE_CLIENT_API
        ) from exc
    theirs = credentials_parse(reply.data)
    party = Party.objects.get(pk=party.pk)
    _apply(party, theirs, version, endpoints)
    party.outgoing_token = theirs.token
    party.status = PartyStatus.REGISTERED
    party.registered_at = clock.now()
    _save(party)
    return party


def credentials_update(*, party: Party, base_url: str) -> Party:
    """We replace our token with a registered party (PUT credentials); theirs comes back new too."""
    url = party.endpoint("credentials", "RECEIVER") or party.endpoint("credentials", "SENDER")
    if party.status != PartyStatus.REGISTERED or not url:
        raise OcpiError("the party is not registered", status_code=INVALID_PARAMETERS)
    token_b = new_token()
    previous = party.incoming_token_hash
    Party.objects.filter(pk=party.pk).update(incoming_token_hash=token_digest(token_b))
    try:
        reply = ocpi_request(
            "PUT", url, token=party.outgoing_token, body=our_credentials(token=token_b, base_url=base_url)
        )
    except OcpiRequestFailed as exc:
        Party.objects.filter(pk=party.pk).update(incoming_token_hash=previous)
        raise OcpiError(f"the party refused the update: {exc}", status_code=UNABLE_TO_USE_CLIENT_API) from exc
    theirs = credentials_parse(reply.data)
    version, endpoints = endpoints_fetch(versions_url=theirs.url, token=theirs.token)
    party = Party.objects.get(pk=party.pk)
    _apply(party, theirs, version, endpoints)
    party.outgoing_token = theirs.token
    _save(party)
    return party


def credentials_unregister(*, party: Party) -> None:
    """We end the connection (DELETE credentials at the party), then forget its tokens. A party that does
    not answer is still forgotten here (its calls stop working); the error is re-raised for the operator."""
    url = party.endpoint("credentials", "RECEIVER") or party.endpoint("credentials", "SENDER")
    try:
        if url and party.outgoing_token:
            ocpi_request("DELETE", url, token=party.outgoing_token)
    finally:
        credentials_forget(party=party)
