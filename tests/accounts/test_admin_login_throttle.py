"""Brute-force protection of the admin sign-in and password reset pages (apps.accounts.login_throttle):
failures are counted per (account, address), per address, and per account with a slow-down that never
locks the real user out; throttled attempts are refused before the password is checked, with a message on
the page, and audited. The driver API's login is not affected."""

from __future__ import annotations

import threading

import pytest
from django import db
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.utils import translation
from rest_framework.test import APIClient

from apps.accounts import login_throttle
from apps.accounts.choices import AuditOutcome
from apps.accounts.models import AuditRecord
from tests.factories import DriverFactory, StaffUserFactory

PASSWORD = "correct-horse-battery"
LOGIN = "/admin/login/"
RESET = "/admin/password_reset/"
HOME = "10.0.0.1"  # the staff member's own address
ATTACKER = "203.0.113.7"


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def limits(settings):
    settings.CPO_ADMIN_LOGIN_WINDOW_S = 900
    settings.CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT_ADDRESS = 3
    settings.CPO_ADMIN_LOGIN_MAX_FAILURES_ADDRESS = 6
    settings.CPO_ADMIN_LOGIN_MAX_FAILURES_ACCOUNT = 8
    settings.CPO_ADMIN_LOGIN_SLOWDOWN_S = 600
    settings.CPO_ADMIN_PASSWORD_RESET_MAX_ACCOUNT = 2
    settings.CPO_ADMIN_PASSWORD_RESET_MAX_ADDRESS = 4
    return settings


@pytest.fixture
def staff(org_a):
    return StaffUserFactory(email="ops@alpha.example", organisation=org_a, role="Operator admin")


def sign_in(email: str, password: str, address: str) -> tuple[bool, str]:
    """(signed in?, page text) of one attempt on the admin sign-in page from `address`."""
    client = Client()
    response = client.post(
        LOGIN, {"username": email, "password": password, "next": "/admin/"}, REMOTE_ADDR=address
    )
    signed_in = response.status_code == 302 and "_auth_user_id" in client.session
    return signed_in, response.content.decode()


def throttled_text() -> str:
    return "Too many failed sign-in attempts. Please wait up to 15 minutes and try again."


def records(action: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(action=action).order_by("pk"))


@pytest.mark.django_db
def test_failures_from_one_address_throttle_that_address_for_that_account_and_are_audited(limits, staff):
    for _ in range(3):
        assert sign_in(staff.email, "wrong-password", ATTACKER)[0] is False
    signed_in, page = sign_in(staff.email, PASSWORD, ATTACKER)  # even the right password is refused now
    assert signed_in is False and throttled_text() in page
    failed = records("admin.login_failed")
    assert len(failed) == 3
    assert all(r.outcome == AuditOutcome.FAILED and r.source == "admin" for r in failed)
    assert failed[0].detail == {"username": staff.email, "address": ATTACKER}
    assert failed[0].target_id == str(staff.pk) and failed[0].organisation_id == staff.organisation_id
    [throttled] = records("admin.login_throttled")
    assert throttled.outcome == AuditOutcome.DENIED
    assert throttled.detail["throttle"] == "account_address" and throttled.detail["address"] == ATTACKER
    # a flood of refused attempts adds log lines, not audit records
    for _ in range(5):
        assert throttled_text() in sign_in(staff.email, PASSWORD, ATTACKER)[1]
    assert len(records("admin.login_throttled")) == 1
    assert len(records("admin.login_failed")) == 3


@pytest.mark.django_db
def test_the_real_user_signs_in_from_their_own_address_while_an_attacker_is_throttled(limits, staff):
    for _ in range(3):
        sign_in(staff.email, "wrong-password", ATTACKER)
    assert throttled_text() in sign_in(staff.email, PASSWORD, ATTACKER)[1]
    assert sign_in(staff.email, PASSWORD, HOME)[0] is True


@pytest.mark.django_db
def test_an_address_trying_many_accounts_is_throttled_for_every_account(limits, org_a, staff):
    others = [StaffUserFactory(email=f"s{i}@alpha.example", organisation=org_a) for i in range(3)]
    for user in others:
        for _ in range(2):  # under the per-(account, address) limit for each
            sign_in(user.email, "wrong-password", ATTACKER)
    signed_in, page = sign_in(staff.email, PASSWORD, ATTACKER)
    assert signed_in is False and throttled_text() in page
    assert records("admin.login_throttled")[0].detail["throttle"] == "address"
    # unknown accounts count too, and are audited without a target
    assert sign_in("nobody@example.com", "x", HOME)[0] is False
    unknown = records("admin.login_failed")[-1]
    assert unknown.target_id == "" and unknown.organisation_id is None
    assert unknown.detail["username"] == "nobody@example.com"


@pytest.mark.django_db
def test_an_attack_from_many_addresses_slows_down_new_addresses_but_never_locks_out_the_real_user(
    limits, staff
):
    assert sign_in(staff.email, PASSWORD, HOME)[0] is True  # HOME is now a known address of the account
    for n in range(8):  # past the per-account ceiling, two attempts from each of four addresses
        sign_in(staff.email, "wrong-password", f"198.51.100.{n // 2}")
    # the real user from their own address: not slowed, and a mistyped password is just a failure
    assert sign_in(staff.email, "typo-password", HOME)[0] is False
    assert sign_in(staff.email, PASSWORD, HOME)[0] is True
    # a new address gets one attempt per slow-down interval, and is told to wait
    assert sign_in(staff.email, "another-guess", "198.51.100.50")[0] is False
    signed_in, page = sign_in(staff.email, PASSWORD, "198.51.100.51")
    assert signed_in is False
    assert "This account has had many failed sign-in attempts. Please wait 600 seconds and try again." in page
    assert records("admin.login_throttled")[0].detail["throttle"] == "account"
    # the slow-down is not a lock: the next interval lets an attempt through
    cache.delete(f"{login_throttle.PREFIX}:slow:{login_throttle._account_key(staff.email)}")  # interval over
    assert sign_in(staff.email, PASSWORD, "198.51.100.51")[0] is True


@pytest.mark.django_db(transaction=True)
def test_parallel_attempts_cannot_slip_past_the_count(limits, org_a):
    # each attempt is counted (atomically, in Redis) before its password is checked
    staff = StaffUserFactory(email="ops@alpha.example", organisation=org_a)  # no role: groups may be flushed
    parallel = 12
    barrier = threading.Barrier(parallel)
    pages: list[str] = []

    def guess() -> None:
        try:
            barrier.wait(timeout=30)
            pages.append(sign_in(staff.email, "wrong-password", ATTACKER)[1])
        finally:
            db.connections.close_all()

    threads = [threading.Thread(target=guess) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    refused = [page for page in pages if throttled_text() in page]
    assert (len(pages), len(refused)) == (parallel, parallel - 3)  # exactly the limit were checked
    assert len(records("admin.login_failed")) == 3


@pytest.mark.django_db
def test_successes_are_not_counted(limits, staff):
    for _ in range(10):
        assert sign_in(staff.email, PASSWORD, HOME)[0] is True
    assert not records("admin.login_failed") and not records("admin.login_throttled")


@pytest.mark.django_db
def test_a_success_forgets_the_failures_of_that_address_for_that_account(limits, staff):
    for _ in range(2):
        sign_in(staff.email, "wrong-password", HOME)
    assert sign_in(staff.email, PASSWORD, HOME)[0] is True
    for _ in range(2):
        sign_in(staff.email, "wrong-password", HOME)
    assert sign_in(staff.email, PASSWORD, HOME)[0] is True


@pytest.mark.django_db
def test_the_throttle_message_is_translated(limits, staff):
    for _ in range(3):
        sign_in(staff.email, "wrong-password", ATTACKER)
    with translation.override("de"):
        expected = translation.gettext(
            "Too many failed sign-in attempts. Please wait up to {minutes} minutes and try again."
        ).format(minutes=15)
    response = Client().post(
        LOGIN,
        {"username": staff.email, "password": PASSWORD},
        REMOTE_ADDR=ATTACKER,
        HTTP_ACCEPT_LANGUAGE="de",
    )
    assert expected in response.content.decode()


@pytest.mark.django_db
def test_the_driver_api_login_is_not_affected(limits):
    driver = DriverFactory(email="driver@example.com")
    for _ in range(6):
        sign_in(driver.email, "wrong-password", ATTACKER)
    assert throttled_text() in sign_in(driver.email, PASSWORD, ATTACKER)[1]
    response = APIClient().post(
        "/api/v1/auth/token",
        {"email": driver.email, "password": PASSWORD},
        format="json",
        REMOTE_ADDR=ATTACKER,
    )
    assert response.status_code == 200, response.content


# --- password reset ----------------------------------------------------------------------------------------
def reset(email: str, address: str) -> str:
    response = Client().post(RESET, {"email": email}, REMOTE_ADDR=address)
    if response.status_code == 302:
        return "sent"
    return response.content.decode()


def reset_throttled_text() -> str:
    return "Too many password reset requests. Please wait up to 60 minutes and try again."


@pytest.mark.django_db
def test_password_reset_requests_are_counted_per_account_and_address(limits, staff):
    assert reset(staff.email, ATTACKER) == "sent"
    assert reset(staff.email, ATTACKER) == "sent"
    assert len(mail.outbox) == 2
    page = reset(staff.email, ATTACKER)
    assert reset_throttled_text() in page
    assert len(mail.outbox) == 2  # no third mail
    [record] = records("admin.password_reset_throttled")
    assert record.outcome == AuditOutcome.DENIED and record.detail["throttle"] == "reset_account"
    assert record.target_id == str(staff.pk)
    # the same page for an address with no account: nothing reveals which exist
    assert reset("nobody@example.com", "10.9.9.11") == "sent"
    assert reset("nobody@example.com", "10.9.9.11") == "sent"
    assert reset_throttled_text() in reset("nobody@example.com", "10.9.9.11")


@pytest.mark.django_db
def test_requests_from_elsewhere_cannot_block_the_account_owners_own_password_reset(limits, staff):
    for _ in range(3):  # an attacker uses up the account's requests from their address, and more
        reset(staff.email, ATTACKER)
    assert reset_throttled_text() in reset(staff.email, ATTACKER)
    assert reset(staff.email, HOME) == "sent"  # the staff member, from their own address, still gets it
    assert len(mail.outbox) == 3
    assert mail.outbox[-1].to == [staff.email]


@pytest.mark.django_db
def test_password_reset_requests_are_counted_per_address(limits, org_a):
    users = [StaffUserFactory(email=f"r{i}@alpha.example", organisation=org_a) for i in range(5)]
    for user in users[:4]:
        assert reset(user.email, ATTACKER) == "sent"
    assert reset_throttled_text() in reset(users[4].email, ATTACKER)
    assert len(mail.outbox) == 4
    assert records("admin.password_reset_throttled")[0].detail["throttle"] == "reset_address"
    assert reset(users[4].email, HOME) == "sent"
