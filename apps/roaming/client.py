"""Outgoing OCPI requests: the credentials token Base64-encoded in `Authorization: Token`, a fresh
X-Request-ID, an X-Correlation-ID, and the routing headers for function modules; the answer's envelope
checked. Runs only in Celery tasks, admin actions and management commands, or with a short timeout
(real-time authorisation): never while a charger waits on the event loop."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings

from apps.roaming import protocol

logger = logging.getLogger(__name__)


class OcpiRequestFailed(Exception):
    """The party did not answer usefully: unreachable, a timeout, an HTTP error, not an OCPI envelope, or
    an OCPI status other than 1000. `reachable`: it answered at all."""

    def __init__(
        self,
        message: str,
        *,
        reachable: bool,
        http_status: int | None = None,
        ocpi_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reachable = reachable
        self.http_status = http_status
        self.ocpi_status = ocpi_status


@dataclass(frozen=True, slots=True)
class OcpiReply:
    http_status: int
    status_code: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)


def ocpi_request(
    method: str,
    url: str,
    *,
    token: str,
    body: Any = None,
    params: dict[str, Any] | None = None,
    route: tuple[tuple[str, str], tuple[str, str]] | None = None,
    correlation_id: str | None = None,
    timeout_s: float | None = None,
) -> OcpiReply:
    """Send one OCPI request and return the envelope's content; raise OcpiRequestFailed otherwise.
    `route`: (ours, theirs) as (country code, party id) for the OCPI-from/to headers."""
    headers = {
        "Authorization": protocol.authorization_header(token),
        "X-Request-ID": protocol.new_request_id(),
        "X-Correlation-ID": correlation_id or protocol.new_request_id(),
        "Accept": "application/json",
    }
    if route is not None:
        headers |= protocol.route_headers(ours=route[0], theirs=route[1])
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    timeout = timeout_s if timeout_s is not None else settings.CPO_OCPI_HTTP_TIMEOUT_S
    try:
        response = requests.request(
            method, url, headers=headers, data=data, params=params, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise OcpiRequestFailed(f"{method} {url}: {exc.__class__.__name__}: {exc}", reachable=False) from exc
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or "status_code" not in payload:
        raise OcpiRequestFailed(
            f"{method} {url}: HTTP {response.status_code}, not an OCPI response",
            reachable=True,
            http_status=response.status_code,
        )
    status_code = payload.get("status_code")
    if response.status_code >= 300 or status_code != protocol.SUCCESS:
        raise OcpiRequestFailed(
            f"{method} {url}: HTTP {response.status_code}, OCPI {status_code}: "
            f"{payload.get('status_message') or ''}".strip(),
            reachable=True,
            http_status=response.status_code,
            ocpi_status=status_code if isinstance(status_code, int) else None,
        )
    return OcpiReply(
        http_status=response.status_code,
        status_code=status_code,
        data=payload.get("data"),
        headers=dict(response.headers),
    )
