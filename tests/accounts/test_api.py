"""Driver accounts over the API: register, JWT login/refresh/logout, password reset, e-mail verification,
profile, deletion, cards. Every error path answers the one error shape with a stable code."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.accounts.choices import IdTokenStatus
from apps.accounts.models import AuditRecord, DriverProfile, IdToken, User
from apps.charging.models import CardLinkRequest
from apps.charging.services import idtoken_authorize
from cpo import clock
from tests.factories import ChargePointFactory, DriverFactory, IdTokenFactory, OrganisationFactory

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client():
    return APIClient()


def login(client: APIClient, email: str, password: str = PASSWORD) -> dict:
    response = client.post("/api/v1/auth/token", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return response.json()


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"code", "detail", "fields"} and body["code"] == code, body
    if field:
        assert field in body["fields"], body
    return body


@pytest.mark.django_db
class TestRegisterAndLogin:
    def test_register_then_verify_then_log_in(self, client, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/api/v1/auth/register",
                {
                    "email": "Ada@Example.com",
                    "password": "a-long-password-42",
                    "full_name": "Ada",
                    "preferred_language": "de",
                },
                format="json",
            )
        assert response.status_code == 202, response.content
        assert response.content == b""
        user = User.objects.get(email="ada@example.com")
        assert not user.is_staff and user.organisation_id is None and user.email_verified_at is None
        assert DriverProfile.objects.get(user=user).preferred_language == "de"
        # the verification mail (sent on commit) carries uid and code for the app
        assert len(mail.outbox) == 1
        uid, token = re.search(r"/accounts/verify-email/([^/]+)/([^/]+)/", mail.outbox[0].body).groups()
        verified = client.post("/api/v1/auth/email/verify", {"uid": uid, "token": token}, format="json")
        assert verified.status_code == 200 and verified.json()["email_verified"] is True
        assert_error(
            client.post("/api/v1/auth/email/verify", {"uid": uid, "token": token}, format="json"),
            400,
            "verification_link_invalid",
        )
        tokens = login(client, "ada@example.com", "a-long-password-42")
        assert set(tokens) == {"access", "refresh"}
        me = client.get("/api/v1/me").json()
        assert (me["full_name"], me["email"], me["email_verified"]) == ("Ada", "ada@example.com", True)

    @pytest.mark.parametrize(
        "payload,field,code",
        [
            ({"email": "not-an-email", "password": "a-long-password-42"}, "email", "validation_failed"),
            ({"email": "x@example.com"}, "password", "validation_failed"),
            ({"email": "x@example.com", "password": "short"}, "password", "password_too_weak"),
            (
                {"email": "x@example.com", "password": "a-long-password-42", "preferred_language": "xx"},
                "preferred_language",
                "validation_failed",
            ),
        ],
    )
    def test_bad_registrations(self, client, payload, field, code):
        assert_error(client.post("/api/v1/auth/register", payload, format="json"), 400, code, field)
        assert not User.objects.exists()

    @pytest.mark.parametrize("owner", ["driver", "staff"])
    def test_a_taken_address_answers_as_a_free_one_and_only_its_owner_learns(
        self, client, owner, django_capture_on_commit_callbacks
    ):
        from tests.factories import StaffUserFactory

        def register(email: str):
            with django_capture_on_commit_callbacks(execute=True):
                return client.post(
                    "/api/v1/auth/register",
                    {"email": email, "password": "a-long-password-42", "full_name": "Mallory"},
                    format="json",
                )

        factory = (
            DriverFactory
            if owner == "driver"
            else lambda **kw: StaffUserFactory(organisation=OrganisationFactory(), **kw)
        )
        taken = factory(email="taken@example.com", full_name="Tess")
        before = User.objects.values().get(pk=taken.pk)
        answer_taken = register("TAKEN@example.com")
        answer_free = register("free@example.com")
        # the same answer: status, body and headers that could tell them apart
        taken_answer = (answer_taken.status_code, answer_taken.content)
        assert taken_answer == (answer_free.status_code, answer_free.content)
        assert answer_taken.status_code == 202 and answer_taken.content == b""
        # nothing created or changed for the taken address; the free one is a new driver
        assert User.objects.filter(email__iexact="taken@example.com").count() == 1
        assert User.objects.values().get(pk=taken.pk) == before
        assert User.objects.filter(email="free@example.com").exists()
        # the owner is told, with a way back in (a password reset); nobody else learns anything
        notice, verification = mail.outbox
        assert notice.to == ["taken@example.com"] and "tried to" in notice.subject
        uid, code = re.search(r"uid (\S+), code (\S+)", notice.body).groups()
        assert (
            APIClient()
            .post(
                "/api/v1/auth/password/reset/confirm",
                {"uid": uid, "token": code, "new_password": "another-long-pass-7"},
                format="json",
            )
            .status_code
            == 204
        )
        assert verification.to == ["free@example.com"] and "/accounts/verify-email/" in verification.body
        # the attacker's password does not open the existing account
        assert_error(
            client.post(
                "/api/v1/auth/token",
                {"email": "taken@example.com", "password": "a-long-password-42"},
                format="json",
            ),
            401,
            "no_active_account",
        )

    def test_a_weak_password_is_refused_alike_for_taken_and_free_addresses(self, client):
        DriverFactory(email="taken@example.com")
        for email in ("taken@example.com", "free@example.com"):
            assert_error(
                client.post("/api/v1/auth/register", {"email": email, "password": "short"}, format="json"),
                400,
                "password_too_weak",
                "password",
            )
        assert User.objects.count() == 1 and mail.outbox == []

    def test_wrong_password_and_bad_json(self, client):
        DriverFactory(email="d@example.com")
        assert_error(
            client.post("/api/v1/auth/token", {"email": "d@example.com", "password": "nope"}, format="json"),
            401,
            "no_active_account",
        )
        response = client.post("/api/v1/auth/token", "{not json", content_type="application/json")
        assert_error(response, 400, "parse_error")

    def test_staff_do_not_get_driver_tokens(self, client):
        from tests.factories import StaffUserFactory

        StaffUserFactory(email="ops@example.com", organisation=OrganisationFactory(), role="Support")
        assert_error(
            client.post(
                "/api/v1/auth/token", {"email": "ops@example.com", "password": PASSWORD}, format="json"
            ),
            401,
            "no_active_account",
        )

    def test_refresh_rotates_and_the_old_refresh_token_is_revoked(self, client):
        DriverFactory(email="d@example.com")
        pair = login(client, "d@example.com")
        fresh = client.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json")
        assert fresh.status_code == 200 and set(fresh.json()) == {"access", "refresh"}
        assert_error(
            client.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json"),
            401,
            "token_not_valid",
        )

    def test_logout_revokes_the_refresh_token(self, client):
        DriverFactory(email="d@example.com")
        pair = login(client, "d@example.com")
        assert (
            client.post("/api/v1/auth/logout", {"refresh": pair["refresh"]}, format="json").status_code == 204
        )
        assert_error(
            client.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json"),
            401,
            "token_not_valid",
        )
        assert_error(
            client.post("/api/v1/auth/logout", {"refresh": "garbage"}, format="json"), 400, "token_not_valid"
        )

    def test_no_or_bad_token_is_401(self, client):
        assert_error(client.get("/api/v1/me"), 401, "not_authenticated")
        client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
        assert_error(client.get("/api/v1/me"), 401, "token_not_valid")

    def test_login_is_rate_limited_per_address(self, client):
        from cpo.api import _ScopedRateThrottle

        saved = _ScopedRateThrottle.THROTTLE_RATES
        _ScopedRateThrottle.THROTTLE_RATES = {**saved, "login-address": "2/min"}
        try:
            for n in range(2):
                client.post(
                    "/api/v1/auth/token", {"email": f"u{n}@example.com", "password": "x"}, format="json"
                )
            assert_error(
                client.post(
                    "/api/v1/auth/token", {"email": "u9@example.com", "password": "x"}, format="json"
                ),
                429,
                "throttled",
            )
            other = APIClient(REMOTE_ADDR="10.1.2.3")
            assert (
                other.post(
                    "/api/v1/auth/token", {"email": "u9@example.com", "password": "x"}, format="json"
                ).status_code
                == 401
            )
        finally:
            _ScopedRateThrottle.THROTTLE_RATES = saved


@pytest.mark.django_db
class TestPasswordReset:
    def test_reset_with_the_mailed_code(self, client):
        DriverFactory(email="d@example.com")
        assert (
            client.post("/api/v1/auth/password/reset", {"email": "d@example.com"}, format="json").status_code
            == 202
        )
        uid, code = re.search(r"uid (\S+), code (\S+)", mail.outbox[0].body).groups()
        done = client.post(
            "/api/v1/auth/password/reset/confirm",
            {"uid": uid, "token": code, "new_password": "another-long-pass-7"},
            format="json",
        )
        assert done.status_code == 204
        login(client, "d@example.com", "another-long-pass-7")
        # single use
        assert_error(
            client.post(
                "/api/v1/auth/password/reset/confirm",
                {"uid": uid, "token": code, "new_password": "yet-another-pass-8"},
                format="json",
            ),
            400,
            "reset_code_invalid",
        )

    def test_a_reset_revokes_the_refresh_tokens(self, client):
        DriverFactory(email="d@example.com")
        pair = login(client, "d@example.com")
        client.post("/api/v1/auth/password/reset", {"email": "d@example.com"}, format="json")
        uid, code = re.search(r"uid (\S+), code (\S+)", mail.outbox[0].body).groups()
        client.post(
            "/api/v1/auth/password/reset/confirm",
            {"uid": uid, "token": code, "new_password": "another-long-pass-7"},
            format="json",
        )
        assert_error(
            client.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json"),
            401,
            "token_not_valid",
        )

    def test_unknown_address_looks_the_same_and_sends_nothing(self, client):
        assert (
            client.post(
                "/api/v1/auth/password/reset", {"email": "nobody@example.com"}, format="json"
            ).status_code
            == 202
        )
        assert mail.outbox == []

    def test_weak_new_password_keeps_the_old_one(self, client):
        DriverFactory(email="d@example.com")
        client.post("/api/v1/auth/password/reset", {"email": "d@example.com"}, format="json")
        uid, code = re.search(r"uid (\S+), code (\S+)", mail.outbox[0].body).groups()
        assert_error(
            client.post(
                "/api/v1/auth/password/reset/confirm",
                {"uid": uid, "token": code, "new_password": "123"},
                format="json",
            ),
            400,
            "password_too_weak",
            "password",
        )
        login(client, "d@example.com")


@pytest.mark.django_db
class TestMe:
    def test_patch_profile(self, client):
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        response = client.patch(
            "/api/v1/me",
            {"full_name": "Dee", "phone": "+49 30 1234", "preferred_language": "fr"},
            format="json",
        )
        assert response.status_code == 200
        assert {k: response.json()[k] for k in ("full_name", "phone", "preferred_language")} == {
            "full_name": "Dee",
            "phone": "+49 30 1234",
            "preferred_language": "fr",
        }
        assert_error(
            client.patch("/api/v1/me", {"phone": "call me"}, format="json"), 400, "validation_failed", "phone"
        )

    def test_delete_anonymises_and_closes_the_account(self, client):
        driver = DriverFactory(email="d@example.com", full_name="Dee Driver")
        card = IdTokenFactory(owner=driver)
        pair = login(client, "d@example.com")
        assert client.delete("/api/v1/me").status_code == 204
        driver.refresh_from_db()
        assert driver.email == f"deleted-{driver.pk}@invalid.invalid" and driver.full_name == ""
        assert not driver.is_active and not driver.has_usable_password()
        card.refresh_from_db()
        assert card.owner is None and card.status == IdTokenStatus.BLOCKED
        assert AuditRecord.objects.filter(action="driver.delete", target_id=str(driver.pk)).exists()
        # the tokens die with it
        assert_error(client.get("/api/v1/me"), 401, "user_inactive")
        assert_error(
            client.post("/api/v1/auth/token/refresh", {"refresh": pair["refresh"]}, format="json"),
            401,
            "token_not_valid",
        )
        assert_error(
            APIClient().post(
                "/api/v1/auth/token", {"email": "d@example.com", "password": PASSWORD}, format="json"
            ),
            401,
            "no_active_account",
        )


def tap(charge_point, uid: str) -> str:
    """The card presented at the charger: what the gateway does with an Authorize."""
    return idtoken_authorize(uid=uid, charge_point=charge_point).status


@pytest.mark.django_db
class TestTokens:
    def test_link_list_and_unlink_a_card(self, client):
        cp = ChargePointFactory(identity="CP-TAP")
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        asked = client.post(
            "/api/v1/tokens",
            {"charge_point": cp.pk, "uid": "04:a1:b2:c3", "label": "Blue card"},
            format="json",
        )
        assert asked.status_code == 202, asked.content
        link = asked.json()
        assert asked["Location"] == f"/api/v1/tokens/links/{link['id']}"
        assert (link["status"], link["uid"], link["label"], link["token"], link["code"]) == (
            "pending",
            "04A1B2C3",
            "Blue card",
            None,
            None,
        )
        assert link["charge_point"] == {"id": cp.pk, "identity": "CP-TAP"}
        assert link["message"] == "Hold the card to the reader of charger CP-TAP within 3 minutes."
        # asking links nothing: the card is linked once presented at that charger
        assert client.get("/api/v1/tokens").json() == []
        assert not IdToken.objects.filter(uid="04A1B2C3").exists()
        assert tap(cp, "04A1B2C3") == "Accepted"
        polled = client.get(link_url := f"/api/v1/tokens/links/{link['id']}").json()
        assert (polled["status"], polled["token"]["uid"], polled["token"]["status"]) == (
            "linked",
            "04A1B2C3",
            "Accepted",
        )
        assert polled["message"] == "The card is linked to your account."
        assert [t["uid"] for t in client.get("/api/v1/tokens").json()] == ["04A1B2C3"]
        assert client.delete(link_url).status_code == 409  # ended: nothing to cancel
        assert client.delete(f"/api/v1/tokens/{polled['token']['id']}").status_code == 204
        assert client.get("/api/v1/tokens").json() == []
        token = IdToken.objects.get(uid="04A1B2C3")
        assert token.owner is None and token.status == IdTokenStatus.BLOCKED
        # linking it again works (and unblocks it)
        again = client.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").json()
        assert tap(cp, "04A1B2C3") == "Accepted"
        assert client.get(f"/api/v1/tokens/links/{again['id']}").json()["token"]["status"] == "Accepted"

    def test_the_answer_is_the_same_whether_the_uid_exists_or_not(self, client):
        cp = ChargePointFactory()
        IdTokenFactory(uid="04A1B2C3", owner=DriverFactory())
        IdTokenFactory(uid="04A1B2C4", organisation=OrganisationFactory())
        IdTokenFactory(uid="04A1B2C5", status=IdTokenStatus.BLOCKED)
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        answers = []
        for uid in ("04A1B2C3", "04A1B2C4", "04A1B2C5", "04A1B2C6"):
            response = client.post("/api/v1/tokens", {"charge_point": cp.pk, "uid": uid}, format="json")
            body = response.json()
            assert body.pop("uid") == uid
            answers.append(
                (response.status_code, {k: v for k, v in body.items() if k not in ("id", "expires_at")})
            )
        assert all(answer == answers[0] for answer in answers) and answers[0][0] == 202
        assert IdToken.objects.get(uid="04A1B2C3").owner.email != "d@example.com"
        assert not IdToken.objects.filter(uid="04A1B2C6").exists()

    def test_a_card_that_cannot_be_linked_is_refused_neutrally_once_presented(self, client):
        cp = ChargePointFactory(identity="CP-TAP")
        IdTokenFactory(uid="04A1B2C3", owner=DriverFactory())
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        link = client.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").json()
        assert tap(cp, "04A1B2C3") == "Accepted"  # its holder's card, answered as ever
        polled = client.get(f"/api/v1/tokens/links/{link['id']}").json()
        assert (polled["status"], polled["code"], polled["token"]) == ("refused", "token_not_linkable", None)
        assert "another" not in polled["message"] and polled["message"].startswith(
            "This card cannot be linked"
        )
        assert IdToken.objects.get(uid="04A1B2C3").owner.email != "d@example.com"

    def test_a_charger_links_for_one_driver_at_a_time(self, client):
        cp = ChargePointFactory(identity="CP-TAP")
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        mine = client.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").json()
        other = APIClient()
        DriverFactory(email="e@example.com")
        login(other, "e@example.com")
        busy = other.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json")
        assert_error(busy, 409, "charger_busy_linking", "charge_point")
        # only its driver sees or cancels a request
        assert_error(other.get(f"/api/v1/tokens/links/{mine['id']}"), 404, "not_found")
        assert_error(other.delete(f"/api/v1/tokens/links/{mine['id']}"), 404, "not_found")
        assert client.delete(f"/api/v1/tokens/links/{mine['id']}").status_code == 204
        assert client.get(f"/api/v1/tokens/links/{mine['id']}").json()["status"] == "cancelled"
        assert other.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").status_code == 202

    def test_a_request_nobody_answers_expires(self, client):
        cp = ChargePointFactory(identity="CP-TAP")
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        link = client.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").json()
        CardLinkRequest.objects.filter(pk=link["id"]).update(expires_at=clock.now() - timedelta(seconds=1))
        assert tap(cp, "04A1B2C3") == "Invalid"
        polled = client.get(f"/api/v1/tokens/links/{link['id']}").json()
        assert (polled["status"], polled["token"]) == ("expired", None)
        assert not IdToken.objects.filter(uid="04A1B2C3").exists()
        assert_error(client.delete(f"/api/v1/tokens/links/{link['id']}"), 409, "card_link_not_pending")

    def test_refused_links_are_limited_per_driver(self, client, monkeypatch):
        from cpo.api import _ScopedRateThrottle

        monkeypatch.setattr(
            _ScopedRateThrottle,
            "THROTTLE_RATES",
            {**_ScopedRateThrottle.THROTTLE_RATES, "token-user": "1000/min", "token-refusals-user": "3/d"},
        )
        cp = ChargePointFactory()
        for n in range(5):
            IdTokenFactory(uid=f"04A1B2D{n}", owner=DriverFactory())
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        for n in range(3):
            link = client.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").json()
            tap(cp, f"04A1B2D{n}")
            assert client.get(f"/api/v1/tokens/links/{link['id']}").json()["status"] == "refused"
        limited = client.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json")
        assert_error(limited, 429, "throttled")
        assert 0 < int(limited["Retry-After"]) <= 86400
        assert CardLinkRequest.objects.count() == 3
        # another driver's budget is their own; linking one's own cards and invalid input spend nothing
        other = APIClient()
        DriverFactory(email="e@example.com")
        login(other, "e@example.com")
        for n in range(5):
            assert other.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").status_code == 202
            tap(cp, f"04C0FFE{n}")
            assert_error(
                other.post("/api/v1/tokens", {"charge_point": cp.pk, "uid": "zz"}, format="json"),
                400,
                "token_uid_invalid",
            )
        assert IdToken.objects.filter(owner__email="e@example.com").count() == 5
        assert other.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").status_code == 202
        tap(cp, "04A1B2D4")
        assert other.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").status_code == 202

    def test_link_requests_are_limited_per_driver(self, client, monkeypatch):
        from cpo.api import _ScopedRateThrottle

        monkeypatch.setattr(
            _ScopedRateThrottle,
            "THROTTLE_RATES",
            {**_ScopedRateThrottle.THROTTLE_RATES, "token-user": "1000/min", "token-links-user": "2/d"},
        )
        cp = ChargePointFactory()
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        assert_error(
            client.post("/api/v1/tokens", {"charge_point": 999999}, format="json"), 404, "charger_not_found"
        )
        for _n in range(2):
            assert client.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json").status_code == 202
        limited = client.post("/api/v1/tokens", {"charge_point": cp.pk}, format="json")
        assert_error(limited, 429, "throttled")
        assert CardLinkRequest.objects.count() == 2

    @pytest.mark.parametrize(
        "payload,code,field",
        [
            ({"uid": "zz-not-hex"}, "token_uid_invalid", "uid"),
            ({"uid": "04A1B2C3", "type": "Central"}, "validation_failed", "type"),
            ({"charge_point": None}, "validation_failed", "charge_point"),
        ],
    )
    def test_bad_cards(self, client, payload, code, field):
        cp = ChargePointFactory()
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        body = {"charge_point": cp.pk, **payload}
        if body["charge_point"] is None:
            del body["charge_point"]
        assert_error(client.post("/api/v1/tokens", body, format="json"), 400, code, field)
        assert not CardLinkRequest.objects.exists()

    def test_another_drivers_token_is_404(self, client):
        other = IdTokenFactory(owner=DriverFactory())
        DriverFactory(email="d@example.com")
        login(client, "d@example.com")
        assert_error(client.get(f"/api/v1/tokens/{other.pk}"), 404, "not_found")
        assert_error(client.delete(f"/api/v1/tokens/{other.pk}"), 404, "not_found")
        other.refresh_from_db()
        assert other.owner is not None and other.status == IdTokenStatus.ACCEPTED
