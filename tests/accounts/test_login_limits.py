"""Login brute-force protection slows a guesser down without locking the driver out: failures are
counted per (account, address) and per account (a much higher ceiling that spares addresses the account
logged in from), all attempts per address; a successful login never counts as a failure."""

from __future__ import annotations

import threading

import pytest
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from cpo.api import LoginFailureLimit, _ScopedRateThrottle
from tests.factories import DriverFactory

PASSWORD = "correct-horse-battery"
ATTACKER, DRIVER = "203.0.113.7", "198.51.100.20"


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def rates(monkeypatch):
    def set_rates(**rates: str) -> None:
        monkeypatch.setattr(
            _ScopedRateThrottle,
            "THROTTLE_RATES",
            {**_ScopedRateThrottle.THROTTLE_RATES, **{k.replace("_", "-"): v for k, v in rates.items()}},
        )

    return set_rates


def attempt(address: str, password: str, email: str = "d@example.com"):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/v1/auth/token", {"email": email, "password": password}, format="json"
    )


def assert_throttled(response) -> int:
    assert response.status_code == 429, response.content
    body = response.json()
    assert set(body) == {"code", "detail", "fields"} and body["code"] == "throttled", body
    retry_after = int(response["Retry-After"])
    assert retry_after > 0
    return retry_after


@pytest.mark.django_db
def test_a_guesser_elsewhere_cannot_keep_the_driver_out():
    # the shipped rates: ten failures per (account, address) in 15 minutes
    DriverFactory(email="d@example.com")
    for _ in range(10):
        assert attempt(ATTACKER, "guess").status_code == 401
    assert_throttled(attempt(ATTACKER, "guess"))
    assert_throttled(attempt(ATTACKER, PASSWORD))  # limited: the password is not even checked
    assert attempt(DRIVER, PASSWORD).status_code == 200  # the driver, from another address, gets in
    assert_throttled(attempt(ATTACKER, "guess"))  # and that did not lift the guesser's limit


@pytest.mark.django_db
def test_successful_logins_do_not_count_as_failures():
    DriverFactory(email="d@example.com")
    for _ in range(15):  # more than the failure budget, all from one address
        assert attempt(DRIVER, PASSWORD).status_code == 200


@pytest.mark.django_db
def test_the_right_password_forgives_its_addresses_failures():
    DriverFactory(email="d@example.com")
    for _ in range(9):
        assert attempt(DRIVER, "typo").status_code == 401
    assert attempt(DRIVER, PASSWORD).status_code == 200
    for _ in range(9):
        assert attempt(DRIVER, "typo").status_code == 401


@pytest.mark.django_db
def test_invalid_input_is_no_failure(rates):
    rates(login_failures_pair="2/15m")
    DriverFactory(email="d@example.com")
    for _ in range(12):  # no password: never reaches the password check
        response = APIClient(REMOTE_ADDR=DRIVER).post(
            "/api/v1/auth/token", {"email": "d@example.com"}, format="json"
        )
        assert response.status_code == 400
    assert attempt(DRIVER, "typo").status_code == 401


def slow_down_key(email: str) -> str:
    request = Request(
        APIRequestFactory().post("/api/v1/auth/token", {"email": email}, format="json"),
        parsers=[JSONParser()],
    )
    return LoginFailureLimit(request).slow_key


@pytest.mark.django_db
def test_many_addresses_meet_the_account_ceiling_which_spares_known_addresses(rates, settings):
    settings.CPO_API_LOGIN_SLOWDOWN_S = 600
    rates(login_failures_pair="2/15m", login_failures_account="5/h", login_address="1000/min")
    DriverFactory(email="d@example.com")
    assert attempt(DRIVER, PASSWORD).status_code == 200  # the driver's usual address, from before
    for n in range(3):  # a spread-out guesser: 2 failures from each of 3 addresses
        for _ in range(2):
            assert attempt(f"192.0.2.{n}", "guess").status_code == 401
    # past the ceiling (5): one attempt per slow-down interval, and the 6th failure above took it
    assert assert_throttled(attempt("192.0.2.99", PASSWORD)) == 600  # a new address waits for the interval
    assert attempt(DRIVER, PASSWORD).status_code == 200  # the known address does not


@pytest.mark.django_db
def test_past_the_account_ceiling_a_new_address_is_slowed_down_not_locked_out(rates, settings):
    settings.CPO_API_LOGIN_SLOWDOWN_S = 600
    rates(login_failures_pair="2/15m", login_failures_account="4/h", login_address="1000/min")
    DriverFactory(email="d@example.com")
    for n in range(2):  # the ceiling: 4 failures from 2 addresses
        for _ in range(2):
            assert attempt(f"192.0.2.{n}", "guess").status_code == 401
    assert attempt("192.0.2.10", "guess").status_code == 401  # one attempt per interval goes on
    assert_throttled(attempt("192.0.2.11", "guess"))
    assert_throttled(attempt("192.0.2.12", PASSWORD))  # the interval is not over: not even checked
    cache.delete(slow_down_key("d@example.com"))  # the interval is over, as time passing would do
    assert attempt("192.0.2.12", PASSWORD).status_code == 200  # the driver on a new address gets in
    cache.delete(slow_down_key("d@example.com"))
    assert attempt("192.0.2.13", "guess").status_code == 401
    assert_throttled(attempt("192.0.2.14", "guess"))


@pytest.mark.django_db
def test_the_address_rate_still_applies_to_all_attempts(rates):
    rates(login_address="3/min")
    DriverFactory(email="d@example.com")
    for _ in range(3):
        assert attempt(ATTACKER, PASSWORD).status_code == 200
    assert_throttled(attempt(ATTACKER, PASSWORD))
    assert attempt(DRIVER, PASSWORD).status_code == 200


def test_parallel_guesses_cannot_slip_past_the_count(rates):
    # the count is taken (atomically, in Redis) before the password is checked
    rates(login_failures_pair="5/15m", login_failures_account="1000/h")
    factory = APIRequestFactory()
    allowed, refused = [], []
    barrier = threading.Barrier(20)

    def guess() -> None:
        request = Request(
            factory.post(
                "/api/v1/auth/token",
                {"email": "d@example.com", "password": "x"},
                format="json",
                REMOTE_ADDR=ATTACKER,
            ),
            parsers=[JSONParser()],
        )
        limit = LoginFailureLimit(request)
        barrier.wait(timeout=30)
        try:
            limit.begin()
            allowed.append(1)
        except exceptions.Throttled:
            refused.append(1)

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert (len(allowed), len(refused)) == (5, 15)
