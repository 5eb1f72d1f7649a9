"""Linking a card needs proof of possession: a driver's request waits at the charger they picked and
the card presented there within the window is linked (or refused neutrally); the answer to the request
never depends on whether a typed uid exists, and a uid nobody presents is never linked."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apps.accounts.choices import IdTokenStatus, IdTokenType
from apps.accounts.models import AuditRecord, IdToken
from apps.charging.card_links import (
    card_link_cancel,
    card_link_confirm,
    card_link_get,
    card_link_refusals_since,
    card_link_request,
)
from apps.charging.choices import AuthorizationStatus, CardLinkStatus, ReviewReason
from apps.charging.driver_services import driver_app_token
from apps.charging.models import CardLinkRequest
from apps.charging.services import idtoken_authorize, session_start
from cpo import clock
from cpo.exceptions import Conflict, NotFound, PermissionDenied, ValidationFailed
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    DriverFactory,
    EvseFactory,
    IdTokenFactory,
    OrganisationFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def cp():
    charge_point = ChargePointFactory(identity="CP-LINK")
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1))
    return charge_point


@pytest.fixture
def driver():
    return DriverFactory(email="linker@example.com")


def _answer_shape(link: CardLinkRequest) -> tuple:
    return (link.status, link.token_id, link.decided_at, link.charge_point_id, link.type, link.label)


def test_a_typed_uid_gets_the_same_answer_known_or_not(cp, driver):
    others = IdTokenFactory(uid="04AA0001", owner=DriverFactory())
    operators = IdTokenFactory(uid="04AA0002", organisation=OrganisationFactory())
    blocked = IdTokenFactory(uid="04AA0003", status=IdTokenStatus.BLOCKED)
    answers = []
    for uid in ("04AA0001", "04AA0002", "04AA0003", "04aa0004", ""):
        link = card_link_request(driver=driver, charge_point_id=cp.pk, uid=uid, label="Blue")
        answers.append(_answer_shape(link))
    assert set(answers) == {(CardLinkStatus.PENDING, None, None, cp.pk, IdTokenType.ISO14443, "Blue")}
    # nothing was linked nor created by asking; each new request cancelled the driver's older one
    assert not IdToken.objects.filter(owner=driver).exists()
    assert not IdToken.objects.filter(uid="04AA0004").exists()
    for token in (others, operators, blocked):
        token.refresh_from_db()
    assert others.owner != driver and operators.owner is None and blocked.status == IdTokenStatus.BLOCKED
    assert list(CardLinkRequest.objects.order_by("pk").values_list("status", flat=True)) == [
        CardLinkStatus.CANCELLED
    ] * 4 + [CardLinkStatus.PENDING]


def test_the_card_presented_at_that_charger_is_linked_and_accepted(cp, driver, monkeypatch):
    asked = clock.now()
    monkeypatch.setattr(clock, "now", lambda: asked)
    link = card_link_request(driver=driver, charge_point_id=cp.pk, label="Blue card")
    assert link.expires_at == asked + timedelta(seconds=180)  # CPO_CARD_LINK_WINDOW_S
    auth = idtoken_authorize(uid="04a1b2c3", charge_point=cp, at=asked + timedelta(seconds=179))
    token = IdToken.objects.get(uid="04A1B2C3")
    assert (token.owner, token.status, token.label, token.type) == (
        driver,
        IdTokenStatus.ACCEPTED,
        "Blue card",
        IdTokenType.ISO14443,
    )
    assert (auth.status, auth.token_id, auth.known) == (AuthorizationStatus.ACCEPTED, token.pk, True)
    link.refresh_from_db()
    assert (link.status, link.token, link.uid) == (CardLinkStatus.LINKED, token, "04A1B2C3")
    record = AuditRecord.objects.get(action="idtoken.create", target_id=str(token.pk))
    assert (record.actor, record.source) == (driver, "ocpp")
    # the next tap of the card is a plain authorisation: nothing waits any more
    assert card_link_confirm(charge_point_id=cp.pk, uid="04A1B2C3", token_type=None, at=asked) is None


def test_a_tap_at_another_charger_does_nothing(cp, driver):
    other = ChargePointFactory(identity="CP-ELSEWHERE")
    link = card_link_request(driver=driver, charge_point_id=cp.pk)
    assert idtoken_authorize(uid="04A1B2C3", charge_point=other).status == AuthorizationStatus.INVALID
    assert not IdToken.objects.filter(uid="04A1B2C3").exists()
    link.refresh_from_db()
    assert link.status == CardLinkStatus.PENDING


def test_a_tap_after_the_window_links_nothing(cp, driver):
    link = card_link_request(driver=driver, charge_point_id=cp.pk)
    late = link.expires_at + timedelta(seconds=1)
    auth = idtoken_authorize(uid="04A1B2C3", charge_point=cp, at=late)
    assert auth.status == AuthorizationStatus.INVALID
    assert not IdToken.objects.filter(uid="04A1B2C3").exists()
    link.refresh_from_db()
    assert link.current_status(late) == CardLinkStatus.EXPIRED
    assert link.current_status(link.expires_at - timedelta(seconds=1)) == CardLinkStatus.PENDING


@pytest.mark.parametrize("holder", ["another driver", "an operator", "blocked"])
def test_a_card_that_cannot_be_linked_is_refused_neutrally_and_answered_as_before(cp, driver, holder):
    owner = DriverFactory() if holder == "another driver" else None
    organisation = OrganisationFactory() if holder == "an operator" else None
    status = IdTokenStatus.BLOCKED if holder == "blocked" else IdTokenStatus.ACCEPTED
    card = IdTokenFactory(uid="04BB0001", owner=owner, organisation=organisation, status=status)
    before = idtoken_authorize(uid="04BB0001", charge_point=cp, to_start=False)
    link = card_link_request(driver=driver, charge_point_id=cp.pk)
    auth = idtoken_authorize(uid="04BB0001", charge_point=cp)
    assert auth == before
    link.refresh_from_db()
    assert (link.status, link.token) == (CardLinkStatus.REFUSED, None)
    card.refresh_from_db()
    assert (card.owner, card.organisation, card.status) == (owner, organisation, status)
    record = AuditRecord.objects.get(action="cardlink.refuse")
    assert (record.outcome, record.detail) == ("denied", {"code": "token_not_linkable"})
    assert card_link_refusals_since(driver=driver, since=link.created_at) == [link.decided_at]


def test_a_card_its_driver_released_may_be_linked_by_the_next_holder(cp, driver):
    released = IdTokenFactory(uid="04CC0001", status=IdTokenStatus.BLOCKED, released_at=clock.now())
    link = card_link_request(driver=driver, charge_point_id=cp.pk)
    assert idtoken_authorize(uid="04CC0001", charge_point=cp).status == AuthorizationStatus.ACCEPTED
    released.refresh_from_db()
    assert (released.owner, released.status, released.released_at) == (driver, IdTokenStatus.ACCEPTED, None)
    link.refresh_from_db()
    assert (link.status, link.token) == (CardLinkStatus.LINKED, released)


def test_a_typed_uid_waits_for_that_card(cp, driver):
    link = card_link_request(driver=driver, charge_point_id=cp.pk, uid="04:dd:00:01")
    assert link.uid == "04DD0001"
    idtoken_authorize(uid="04DD0002", charge_point=cp)  # someone else's tap meanwhile
    assert not IdToken.objects.filter(uid="04DD0002").exists()
    idtoken_authorize(uid="04DD0001", charge_point=cp)
    link.refresh_from_db()
    assert (link.status, link.token.uid, link.token.owner) == (CardLinkStatus.LINKED, "04DD0001", driver)


def test_only_a_token_of_the_asked_type_answers(cp, driver):
    link = card_link_request(driver=driver, charge_point_id=cp.pk, type=IdTokenType.EMAID)
    # a 2.0.1 charger names the type: an RFID card is not the contract id the driver asked to link
    idtoken_authorize(uid="DEABC1234567", charge_point=cp, token_type=IdTokenType.ISO14443)
    # the driver's own app token starting a remote charge there is no card either
    app = driver_app_token(driver=driver)
    idtoken_authorize(uid=app.uid, charge_point=cp)
    link.refresh_from_db()
    assert link.status == CardLinkStatus.PENDING
    assert not IdToken.objects.filter(uid="DEABC1234567").exists()
    idtoken_authorize(uid="DE-ABC-123456-7", charge_point=cp, token_type=IdTokenType.EMAID)
    link.refresh_from_db()
    assert (link.status, link.token.uid, link.token.type) == (
        CardLinkStatus.LINKED,
        "DE-ABC-123456-7",
        IdTokenType.EMAID,
    )


def test_a_token_presented_to_stop_links_nothing(cp, driver):
    link = card_link_request(driver=driver, charge_point_id=cp.pk)
    idtoken_authorize(uid="04A1B2C3", charge_point=cp, to_start=False)
    link.refresh_from_db()
    assert link.status == CardLinkStatus.PENDING and not IdToken.objects.filter(uid="04A1B2C3").exists()


def test_a_start_transaction_with_the_card_links_it_and_charges_as_the_driver(cp, driver):
    link = card_link_request(driver=driver, charge_point_id=cp.pk)
    now = clock.now()
    result = session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag="04EE0001",
        meter_start_wh=0,
        started_at_charger=now,
        received_at=now,
        protocol="ocpp1.6",
    )
    token = IdToken.objects.get(uid="04EE0001", owner=driver)
    assert (result.auth.status, result.session.id_token, result.session.review_reason) == (
        AuthorizationStatus.ACCEPTED,
        token,
        ReviewReason.NONE,
    )
    link.refresh_from_db()
    assert link.status == CardLinkStatus.LINKED


def test_one_driver_at_a_time_per_charger(cp, driver):
    first = card_link_request(driver=driver, charge_point_id=cp.pk)
    second_driver = DriverFactory()
    with pytest.raises(Conflict) as busy:
        card_link_request(driver=second_driver, charge_point_id=cp.pk)
    assert busy.value.code == "charger_busy_linking"
    # once the first request's window has passed, the charger is free again
    CardLinkRequest.objects.filter(pk=first.pk).update(expires_at=clock.now() - timedelta(seconds=1))
    second = card_link_request(driver=second_driver, charge_point_id=cp.pk)
    first.refresh_from_db()
    assert (first.status, second.status) == (CardLinkStatus.EXPIRED, CardLinkStatus.PENDING)
    idtoken_authorize(uid="04FF0001", charge_point=cp)
    assert IdToken.objects.get(uid="04FF0001").owner == second_driver


def test_a_new_request_of_the_driver_cancels_the_older_one(cp, driver):
    other = ChargePointFactory(identity="CP-OTHER")
    first = card_link_request(driver=driver, charge_point_id=cp.pk)
    card_link_request(driver=driver, charge_point_id=other.pk)
    first.refresh_from_db()
    assert first.status == CardLinkStatus.CANCELLED
    idtoken_authorize(uid="04FF0002", charge_point=cp)
    assert not IdToken.objects.filter(uid="04FF0002").exists()


def test_cancel_and_poll_are_the_drivers_own(cp, driver):
    link = card_link_request(driver=driver, charge_point_id=cp.pk)
    stranger = DriverFactory()
    with pytest.raises(NotFound):
        card_link_get(driver=stranger, link_id=link.pk)
    with pytest.raises(NotFound):
        card_link_cancel(driver=stranger, link_id=link.pk)
    assert card_link_get(driver=driver, link_id=link.pk) == link
    assert card_link_cancel(driver=driver, link_id=link.pk).status == CardLinkStatus.CANCELLED
    assert card_link_cancel(driver=driver, link_id=link.pk).status == CardLinkStatus.CANCELLED
    idtoken_authorize(uid="04FF0003", charge_point=cp)
    assert not IdToken.objects.filter(uid="04FF0003").exists()
    linked = card_link_request(driver=driver, charge_point_id=cp.pk)
    idtoken_authorize(uid="04FF0004", charge_point=cp)
    with pytest.raises(Conflict) as ended:
        card_link_cancel(driver=driver, link_id=linked.pk)
    assert ended.value.code == "card_link_not_pending"
    linked.refresh_from_db()
    assert linked.status == CardLinkStatus.LINKED


@pytest.mark.parametrize(
    "kwargs,code",
    [
        ({"uid": "zz-not-hex"}, "token_uid_invalid"),
        ({"type": IdTokenType.CENTRAL}, "token_type_not_allowed"),
        ({"charge_point_id": 999999}, "charger_not_found"),
    ],
)
def test_bad_requests_keep_nothing(cp, driver, kwargs, code):
    args = {"driver": driver, "charge_point_id": cp.pk, **kwargs}
    with pytest.raises((ValidationFailed, NotFound)) as refused:
        card_link_request(**args)
    assert refused.value.code == code
    assert not CardLinkRequest.objects.exists()


def test_a_closed_account_cannot_ask(cp, driver):
    driver.is_active = False
    driver.save(update_fields=["is_active"])
    with pytest.raises(PermissionDenied):
        card_link_request(driver=driver, charge_point_id=cp.pk)


def test_a_request_of_an_account_closed_meanwhile_links_nothing(cp, driver):
    link = card_link_request(driver=driver, charge_point_id=cp.pk)
    driver.is_active = False
    driver.save(update_fields=["is_active"])
    assert idtoken_authorize(uid="04A1B2C3", charge_point=cp).status == AuthorizationStatus.INVALID
    link.refresh_from_db()
    assert link.status == CardLinkStatus.CANCELLED
    assert not IdToken.objects.filter(uid="04A1B2C3").exists()
