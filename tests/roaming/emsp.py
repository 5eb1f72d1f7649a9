"""A small eMSP written from the OCPI 2.2.1 specification, for the tests: its own HTTP server on loopback
(a thread), with versions, credentials (both directions), the receivers of locations, sessions and CDRs,
real-time authorisation of its tokens, and a response URL for command results. Every request we send it
is checked against the specification (tests/roaming/ocpi_spec.py: headers, the credentials token in
Base64, the payload's fields) and recorded; problems go to `errors`, which every test asserts empty."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tests.roaming import ocpi_spec

CPO = ("DE", "CPO")  # the product's identity in the tests (settings CPO_OCPI_COUNTRY_CODE / PARTY_ID)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Emsp:
    """The eMSP's state. `accepted` are the credentials tokens it lets in; `cpo_token` the one it uses to
    call the CPO; `authorizations` uid → AllowedType for real-time authorisation."""

    country_code: str = "NL"
    party_id: str = "EMS"
    name: str = "Test eMSP"
    accepted: set[str] = field(default_factory=set)
    cpo_token: str = ""
    cpo_versions_url: str = ""
    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    locations: dict[str, Any] = field(default_factory=dict)
    sessions: dict[str, Any] = field(default_factory=dict)
    tariffs: dict[str, Any] = field(default_factory=dict)
    cdrs: list[Any] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)
    authorizations: dict[str, str] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)  # path prefix → how many requests answer HTTP 503
    offered_versions: list[str] = field(default_factory=lambda: ["2.2.1"])
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/ocpi/emsp"

    @property
    def versions_url(self) -> str:
        return f"{self.base}/versions"

    def credentials(self, token: str) -> dict[str, Any]:
        return ocpi_spec.validate(
            {
                "token": token,
                "url": self.versions_url,
                "roles": [
                    {
                        "role": "EMSP",
                        "party_id": self.party_id,
                        "country_code": self.country_code,
                        "business_details": {"name": self.name},
                    }
                ],
            },
            "Credentials",
        )

    def token(self, uid: str, *, whitelist: str = "ALWAYS", valid: bool = True, type_: str = "RFID") -> dict:
        """A Token object of this eMSP (kept for real-time authorisation)."""
        token = ocpi_spec.validate(
            {
                "country_code": self.country_code,
                "party_id": self.party_id,
                "uid": uid,
                "type": type_,
                "contract_id": f"{self.country_code}-{self.party_id}-C{uid[-8:]}",
                "issuer": self.name,
                "valid": valid,
                "whitelist": whitelist,
                "last_updated": now_iso(),
            },
            "Token",
        )
        self.tokens[uid] = token
        return token

    # --- calling the CPO ---------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        token: str | None = None,
        route: bool = True,
        params: dict[str, str] | None = None,
        raw_authorization: str | None = None,
    ) -> requests.Response:
        """A request to the CPO as the specification has it; the answer's envelope is checked."""
        headers = {
            "Authorization": raw_authorization
            or "Token " + base64.b64encode((token or self.cpo_token).encode()).decode(),
            "X-Request-ID": str(uuid.uuid4()),
            "X-Correlation-ID": str(uuid.uuid4()),
        }
        if route:
            headers |= {
                "OCPI-from-country-code": self.country_code,
                "OCPI-from-party-id": self.party_id,
                "OCPI-to-country-code": CPO[0],
                "OCPI-to-party-id": CPO[1],
            }
        response = requests.request(method, url, headers=headers, json=body, params=params, timeout=30)
        problems = ocpi_spec.envelope_errors(response.json())
        if response.headers.get("X-Request-ID") != headers["X-Request-ID"]:
            problems.append("X-Request-ID not echoed")
        if response.headers.get("X-Correlation-ID") != headers["X-Correlation-ID"]:
            problems.append("X-Correlation-ID not echoed")
        assert not problems, problems
        return response

    def register_with(self, cpo_versions_url: str, token_a: str) -> dict[str, Any]:
        """The eMSP registers with the CPO (credentials.asciidoc, registration): GET versions and details
        with token A, POST its credentials (a new token B for the CPO), keep the CPO's token C."""
        versions = self.call("GET", cpo_versions_url, token=token_a, route=False).json()["data"]
        for version in versions:
            ocpi_spec.validate(version, "Version")
        url = next(v["url"] for v in versions if v["version"] == "2.2.1")
        details = ocpi_spec.validate(
            self.call("GET", url, token=token_a, route=False).json()["data"],
            "version_information_get_details_endpoint_data",
        )
        credentials_url = next(e["url"] for e in details["endpoints"] if e["identifier"] == "credentials")
        token_b = secrets.token_urlsafe(24)
        with self.lock:
            self.accepted.add(token_b)
        response = self.call(
            "POST", credentials_url, body=self.credentials(token_b), token=token_a, route=False
        )
        assert response.status_code == 200, response.text
        ours = ocpi_spec.validate(response.json()["data"], "Credentials")
        self.cpo_token = ours["token"]
        self.cpo_versions_url = ours["url"]
        self.endpoints = {(e["identifier"], e["role"]): e["url"] for e in details["endpoints"]}
        return ours

    endpoints: dict[tuple[str, str], str] = field(default_factory=dict)

    # --- serving -----------------------------------------------------------------------------------------
    def version_details(self) -> dict[str, Any]:
        base = f"{self.base}/2.2.1"
        return {
            "version": "2.2.1",
            "endpoints": [
                {"identifier": "credentials", "role": "SENDER", "url": f"{base}/credentials"},
                {"identifier": "credentials", "role": "RECEIVER", "url": f"{base}/credentials"},
                {"identifier": "locations", "role": "RECEIVER", "url": f"{base}/locations"},
                {"identifier": "tariffs", "role": "RECEIVER", "url": f"{base}/tariffs"},
                {"identifier": "sessions", "role": "RECEIVER", "url": f"{base}/sessions"},
                {"identifier": "cdrs", "role": "RECEIVER", "url": f"{base}/cdrs"},
                {"identifier": "tokens", "role": "SENDER", "url": f"{base}/tokens"},
                {"identifier": "commands", "role": "SENDER", "url": f"{base}/commands"},
            ],
        }

    def check(self, problems: list[str], where: str) -> None:
        if problems:
            with self.lock:
                self.errors.extend(f"{where}: {p}" for p in problems)

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: Any):
        """(HTTP status, OCPI status, data, extra headers)."""
        with self.lock:
            self.received.append(Received(method, path, query, headers, body))
            for prefix, count in list(self.fail.items()):
                if path.startswith(prefix) and count > 0:
                    self.fail[prefix] = count - 1
                    return 503, None, None, {}
        where = f"{method} {path}"
        authorization = headers.get("authorization", "")
        scheme, _, encoded = authorization.partition(" ")
        try:
            presented = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            presented = ""
        if scheme != "Token" or presented not in self.accepted:
            self.check([f"credentials token not accepted (Authorization: {authorization!r})"], where)
            return 401, 2000, None, {}
        for name in ("x-request-id", "x-correlation-id"):
            if not headers.get(name):
                self.check([f"{name} missing"], where)
        rel = path.removeprefix("/ocpi/emsp")
        configuration = rel.startswith(("/versions", "/2.2.1/credentials")) or rel == "/2.2.1"
        if not configuration and not rel.startswith("/results/"):
            route = (
                headers.get("ocpi-from-country-code"),
                headers.get("ocpi-from-party-id"),
                headers.get("ocpi-to-country-code"),
                headers.get("ocpi-to-party-id"),
            )
            if route != (*CPO, self.country_code, self.party_id):
                self.check([f"routing headers {route}"], where)
        if rel == "/versions":
            return 200, 1000, [{"version": v, "url": f"{self.base}/{v}"} for v in self.offered_versions], {}
        if rel == "/2.2.1":
            return 200, 1000, self.version_details(), {}
        if rel == "/2.2.1/credentials":
            if method == "DELETE":
                with self.lock:
                    self.accepted.clear()
                return 200, 1000, None, {}
            self.check(ocpi_spec.errors(body, "Credentials"), where)
            new = secrets.token_urlsafe(24)
            with self.lock:
                self.cpo_token = body["token"]
                self.cpo_versions_url = body["url"]
                self.accepted = {new}
            return 200, 1000, self.credentials(new), {}
        match = re.fullmatch(r"/2\.2\.1/locations/([^/]+)/([^/]+)/([^/]+)(?:/([^/]+))?(?:/([^/]+))?", rel)
        if match:
            cc, pid, location_id, evse_uid, connector_id = match.groups()
            if (cc, pid) != CPO:
                self.check([f"location of {cc}*{pid}"], where)
            name = "Connector" if connector_id else "EVSE" if evse_uid else "Location"
            check = ocpi_spec.errors if method == "PUT" else ocpi_spec.patch_errors
            self.check(check(body, name), where)
            with self.lock:
                key = "/".join(x for x in (location_id, evse_uid, connector_id) if x)
                self.locations.setdefault(key, {}).update(body)
            return 200, 1000, None, {}
        match = re.fullmatch(r"/2\.2\.1/tariffs/([^/]+)/([^/]+)/([^/]+)", rel)
        if match and method == "PUT":
            self.check(ocpi_spec.errors(body, "Tariff"), where)
            with self.lock:
                self.tariffs[match.group(3)] = body
            return 200, 1000, None, {}
        match = re.fullmatch(r"/2\.2\.1/sessions/([^/]+)/([^/]+)/([^/]+)", rel)
        if match:
            check = ocpi_spec.errors if method == "PUT" else ocpi_spec.patch_errors
            self.check(check(body, "Session"), where)
            with self.lock:
                self.sessions.setdefault(match.group(3), {}).update(body)
            return 200, 1000, None, {}
        if rel == "/2.2.1/cdrs" and method == "POST":
            self.check(ocpi_spec.errors(body, "CDR"), where)
            with self.lock:
                self.cdrs.append(body)
            return 200, 1000, None, {"Location": f"{self.base}/2.2.1/cdrs/{body.get('id')}"}
        match = re.fullmatch(r"/2\.2\.1/tokens/([^/]+)/authorize", rel)
        if match and method == "POST":
            uid = match.group(1)
            if body is not None:
                self.check(ocpi_spec.errors(body, "LocationReferences"), where)
            if uid not in self.tokens:
                return 404, 2004, None, {}
            info: dict[str, Any] = {
                "allowed": self.authorizations.get(uid, "ALLOWED"),
                "token": self.tokens[uid],
                "authorization_reference": f"AUTH-{uid[-6:]}",
            }
            if body is not None:
                info["location"] = body
            return 200, 1000, ocpi_spec.validate(info, "AuthorizationInfo"), {}
        match = re.fullmatch(r"/results/([^/]+)", rel)
        if match and method == "POST":
            self.check(ocpi_spec.errors(body, "CommandResult"), where)
            with self.lock:
                self.results[match.group(1)] = body
            return 200, 1000, None, {}
        self.check([f"unexpected request {method} {rel}"], where)
        return 404, 2000, None, {}


def _handler(emsp: Emsp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, code, data, extra = emsp.handle(
                self.command, parts.path, parse_qs(parts.query), headers, body
            )
            payload = b""
            if code is not None:
                envelope: dict[str, Any] = {"status_code": code, "timestamp": now_iso()}
                if data is not None:
                    envelope["data"] = data
                payload = json.dumps(envelope).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Request-ID", headers.get("x-request-id", ""))
            self.send_header("X-Correlation-ID", headers.get("x-correlation-id", ""))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


class EmspServer:
    """The eMSP's HTTP server on 127.0.0.1 (a daemon thread)."""

    def __init__(self) -> None:
        self.emsp = Emsp()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.emsp))
        self.emsp.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Emsp:
        self.thread.start()
        return self.emsp

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
