"""A real Stripe-like server for the billing tests: localstripe on a free loopback port, one per test
session (per xdist worker), with its state file in its own temporary folder; its data is wiped before
each test. Tests assert on our own records (localstripe leaves some fields out)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import stripe

from tests.processes import ROOT, free_port

SECRET_KEY = "sk_test_cpo_billing"
PUBLISHABLE_KEY = "pk_test_cpo_billing"
WEBHOOK_SECRET = "whsec_cpo_billing_test"
START_TIMEOUT_S = 30.0


class LocalStripe:
    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url, self.process, self.log = url, process, log

    def request(self, method: str, path: str, data: dict[str, str] | None = None) -> tuple[int, Any]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    def reset(self) -> None:
        status, _body = self.request("DELETE", "/_config/data")
        assert status == 200

    def register_webhook(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        status, _body = self.request("POST", "/_config/webhooks/cpo", {"url": url, "secret": secret})
        assert status == 200

    def client(self) -> stripe.StripeClient:
        """A client acting as the app or as Stripe's dashboard (not the product's)."""
        return stripe.StripeClient(SECRET_KEY, base_addresses={"api": self.url}, max_network_retries=0)

    def customers(self) -> list[dict[str, Any]]:
        status, body = self.request("GET", "/v1/customers?limit=100")
        assert status == 200
        return body["data"]


def _answers(url: str) -> bool:
    req = urllib.request.Request(
        f"{url}/v1/customers?limit=1", headers={"Authorization": f"Bearer {SECRET_KEY}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("localstripe")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "localstripe.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.localstripe_server",
                "--port",
                str(port),
                "--state-file",
                str(folder / "localstripe.pickle"),
            ],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(folder)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(url):
            if process.poll() is not None:
                pytest.fail(f"localstripe exited ({process.returncode}): {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"localstripe did not answer within {START_TIMEOUT_S} s: {log.read_text()[-2000:]}"
                )
            time.sleep(0.05)
        yield LocalStripe(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def stripe_server(localstripe, settings):
    """localstripe, emptied, with the product's Stripe settings pointing at it."""
    localstripe.reset()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = localstripe.url
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_S = 5.0
    return localstripe


def signed(payload: dict[str, Any], secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, str]:
    """A body and its Stripe-Signature header, made as Stripe (and localstripe) make them."""
    body = json.dumps(payload).encode()
    timestamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), b"%d.%s" % (timestamp, body), hashlib.sha256).hexdigest()
    return body, f"t={timestamp},v1={mac}"


def event(event_id: str, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }
