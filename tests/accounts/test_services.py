"""Accounts services: audit trail, organisations, e-mail verification, id tokens; and tenancy scoping."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core import mail

from apps.accounts.choices import AuditOutcome, IdTokenStatus, IdTokenType
from apps.accounts.models import AuditRecord, IdToken, Organisation, User
from apps.accounts.services import (
    audit_record_create,
    idtoken_upsert,
    organisation_create,
    user_send_email_verification,
    user_verify_email,
)
from apps.accounts.tenancy import forget_organisation_ids, organisation_ids_for
from apps.stations.models import ChargePoint, Connector, Location
from cpo.exceptions import NotFound, ValidationFailed
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    EvseFactory,
    IdTokenFactory,
    OrganisationFactory,
    StaffUserFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


# --- audit trail -----------------------------------------------------------------------------------


def test_audit_record_for_a_staff_action(org_a, staff_a):
    cp = ChargePointFactory(organisation=org_a, identity="CP-1")

    record = audit_record_create(
        actor=staff_a,
        action="chargepoint.reset",
        target=cp,
        outcome=AuditOutcome.FAILED,
        detail={"why": "offline"},
    )

    record.refresh_from_db()
    assert (record.actor, record.actor_repr, record.organisation_id) == (staff_a, staff_a.email, org_a.pk)
    assert (record.action, record.outcome, record.source, record.detail) == (
        "chargepoint.reset",
        AuditOutcome.FAILED,
        "service",
        {"why": "offline"},
    )
    assert (record.target_type.model, record.target_id, record.target_repr) == (
        "chargepoint",
        str(cp.pk),
        "CP-1",
    )


def test_audit_record_for_the_system_and_anonymous(db):
    assert audit_record_create(actor=None, action="demo.load").actor_repr == "system"
    anonymous = audit_record_create(actor=AnonymousUser(), action="login.failed")
    assert (anonymous.actor_id, anonymous.actor_repr) == (None, "AnonymousUser")


def test_audit_record_for_an_organisation_is_filed_under_it(org_a):
    assert (
        audit_record_create(actor=None, action="organisation.change", target=org_a).organisation_id
        == org_a.pk
    )


# --- organisations ---------------------------------------------------------------------------------


def test_organisation_create(staff_a):
    organisation = organisation_create(
        name="Gamma",
        slug="gamma",
        country="fr",
        invoice_prefix="gam",
        parent=staff_a.organisation,
        actor=staff_a,
    )

    organisation.refresh_from_db()
    assert (organisation.country, organisation.invoice_prefix, organisation.parent) == (
        "FR",
        "GAM",
        staff_a.organisation,
    )
    record = AuditRecord.objects.get()
    assert (record.action, record.organisation_id, record.actor) == (
        "organisation.create",
        organisation.pk,
        staff_a,
    )


def test_organisation_create_refuses_a_taken_invoice_prefix(org_a):
    with pytest.raises(ValidationFailed) as excinfo:
        organisation_create(name="Gamma", slug="gamma", country="DE", invoice_prefix=org_a.invoice_prefix)

    assert excinfo.value.fields == {
        "invoice_prefix": ["Organisation with this Invoice prefix already exists."]
    }
    assert not Organisation.objects.filter(slug="gamma").exists()
    assert not AuditRecord.objects.exists()


def test_organisation_create_refuses_a_bad_country(db):
    with pytest.raises(ValidationFailed) as excinfo:
        organisation_create(name="Gamma", slug="gamma", country="Deutschland", invoice_prefix="GAM")

    assert "country" in excinfo.value.fields
    assert not Organisation.objects.exists()


# --- e-mail verification ---------------------------------------------------------------------------


@pytest.fixture
def driver(db):
    return UserFactory(email="driver@example.com")


def _token_from(link: str) -> tuple[str, str]:
    uidb64, token = link.rstrip("/").split("/")[-2:]
    return uidb64, token


def test_send_verification_mails_the_link(driver):
    link = user_send_email_verification(user=driver, base_url="https://cpo.example.com/")

    assert link.startswith("https://cpo.example.com/accounts/verify-email/")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert (message.to, message.subject) == (["driver@example.com"], "Confirm your e-mail address")
    assert message.body == f"Open this link to confirm your e-mail address: {link}"


def test_verify_marks_the_address_verified(driver):
    uidb64, token = _token_from(user_send_email_verification(user=driver, base_url="https://cpo.example.com"))

    user = user_verify_email(uidb64=uidb64, token=token)

    driver.refresh_from_db()
    assert user == driver
    assert driver.email_verified is True
    assert list(AuditRecord.objects.values_list("action", "actor", "source")) == [
        ("user.verify_email", driver.pk, "web")
    ]


def test_verification_link_works_once(driver):
    uidb64, token = _token_from(user_send_email_verification(user=driver, base_url="https://cpo.example.com"))
    user_verify_email(uidb64=uidb64, token=token)
    verified_at = User.objects.get(pk=driver.pk).email_verified_at

    with pytest.raises(ValidationFailed) as excinfo:
        user_verify_email(uidb64=uidb64, token=token)

    assert (excinfo.value.code, excinfo.value.detail) == (
        "verification_link_invalid",
        "This verification link is invalid, expired or already used.",
    )
    assert User.objects.get(pk=driver.pk).email_verified_at == verified_at
    assert AuditRecord.objects.count() == 1


def test_tampered_token_refused(driver):
    uidb64, token = _token_from(user_send_email_verification(user=driver, base_url="https://cpo.example.com"))
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")

    with pytest.raises(ValidationFailed) as excinfo:
        user_verify_email(uidb64=uidb64, token=tampered)

    assert excinfo.value.code == "verification_link_invalid"
    assert User.objects.get(pk=driver.pk).email_verified_at is None
    assert not AuditRecord.objects.exists()


def test_token_of_another_user_refused(driver):
    other = UserFactory(email="other@example.com")
    uidb64, _ = _token_from(user_send_email_verification(user=other, base_url="https://cpo.example.com"))
    _, token = _token_from(user_send_email_verification(user=driver, base_url="https://cpo.example.com"))

    with pytest.raises(ValidationFailed):
        user_verify_email(uidb64=uidb64, token=token)

    assert not User.objects.filter(email_verified_at__isnull=False).exists()


def test_link_stops_working_when_the_address_changes(driver):
    uidb64, token = _token_from(user_send_email_verification(user=driver, base_url="https://cpo.example.com"))
    driver.email = "new-address@example.com"
    driver.save()

    with pytest.raises(ValidationFailed):
        user_verify_email(uidb64=uidb64, token=token)


@pytest.mark.parametrize("uidb64", ["", "!!!", "MTIzNDU2Nzg5"])  # the last is "123456789": no such user
def test_garbled_user_id_refused(driver, uidb64):
    with pytest.raises(ValidationFailed) as excinfo:
        user_verify_email(uidb64=uidb64, token="abc-def")

    assert (excinfo.value.code, excinfo.value.detail) == (
        "verification_link_invalid",
        "This verification link is invalid.",
    )


def test_verification_view(client, driver):
    link = user_send_email_verification(user=driver, base_url="http://testserver")

    response = client.get(link)
    again = client.get(link)

    assert response.status_code == 200
    assert "driver@example.com is now verified." in response.content.decode()
    assert again.status_code == 400
    assert "already used" in again.content.decode()


# --- id tokens -------------------------------------------------------------------------------------


def test_idtoken_upsert_creates_normalised(org_a):
    owner = UserFactory(email="driver@example.com")

    token, created = idtoken_upsert(
        uid=" 04:a2:b3:c4 ", status=IdTokenStatus.ACCEPTED, owner_email="DRIVER@example.com",
        expires_at=datetime(2027, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))), group_id="FLEET",
        organisation=org_a,
    )  # fmt: skip

    token.refresh_from_db()
    assert created is True
    assert (token.uid, token.type, token.status, token.owner, token.group_id, token.organisation) == (
        "04A2B3C4",
        IdTokenType.ISO14443,
        IdTokenStatus.ACCEPTED,
        owner,
        "FLEET",
        org_a,
    )
    assert token.expires_at == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    assert list(AuditRecord.objects.values_list("action", "organisation_id")) == [
        ("idtoken.create", org_a.pk)
    ]


def test_idtoken_upsert_is_idempotent(db):
    first, _ = idtoken_upsert(uid="04A2B3C4", status=IdTokenStatus.BLOCKED)

    again, created = idtoken_upsert(uid="04-a2-b3-c4", status=IdTokenStatus.BLOCKED)

    assert (again.pk, created) == (first.pk, False)
    assert IdToken.objects.count() == 1
    assert AuditRecord.objects.count() == 1


def test_idtoken_upsert_updates_only_what_is_given(db):
    IdTokenFactory(uid="04A2B3C4", status=IdTokenStatus.ACCEPTED, group_id="OLD", label="keep me")

    token, created = idtoken_upsert(uid="04a2b3c4", status=IdTokenStatus.BLOCKED)

    token.refresh_from_db()
    assert created is False
    assert (token.status, token.group_id, token.label) == (IdTokenStatus.BLOCKED, "OLD", "keep me")
    record = AuditRecord.objects.get()
    assert (record.action, record.detail) == ("idtoken.update", {"status": "Blocked"})


def test_idtoken_upsert_app_token(db):
    token, _ = idtoken_upsert(uid="app-user-42", type=IdTokenType.CENTRAL)
    assert (token.uid, token.type) == ("APP-USER-42", IdTokenType.CENTRAL)


def test_idtoken_upsert_unknown_owner(db):
    with pytest.raises(NotFound) as excinfo:
        idtoken_upsert(uid="04A2B3C4", owner_email="nobody@example.com")

    assert (excinfo.value.code, excinfo.value.detail, excinfo.value.fields) == (
        "owner_not_found",
        "No user with the e-mail address nobody@example.com.",
        {"owner": ["No such user."]},
    )
    assert not IdToken.objects.exists()
    assert not AuditRecord.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "detail", "field"),
    [
        ({"uid": "not-hex!"}, "An RFID uid must be hexadecimal (0-9, A-F), got not-hex!.", "uid"),
        ({"uid": "   "}, "The token uid is empty.", "uid"),
        ({"uid": "04A2B3C4", "status": "Lost"}, "Unknown token status Lost; use one of Accepted, Blocked, "
         "Expired, Invalid.", "status"),
        ({"uid": "04A2B3C4", "type": "Magic"}, "Unknown token type Magic.", "type"),
        ({"uid": "04A2B3C4", "expires_at": datetime(2027, 1, 1)}, "The expiry needs a time zone.",
         "expires_at"),
    ],
)  # fmt: skip
def test_idtoken_upsert_bad_input(db, kwargs, detail, field):
    with pytest.raises(ValidationFailed) as excinfo:
        idtoken_upsert(**kwargs)

    assert excinfo.value.detail == detail
    assert list(excinfo.value.fields) == [field]
    assert not IdToken.objects.exists()
    assert not AuditRecord.objects.exists()


# --- tenancy ---------------------------------------------------------------------------------------


@pytest.fixture
def tree(db):
    """parent → child → grandchild, and an unrelated operator, each with one charge point."""
    parent = OrganisationFactory(slug="parent")
    child = OrganisationFactory(slug="child", parent=parent)
    grandchild = OrganisationFactory(slug="grandchild", parent=child)
    other = OrganisationFactory(slug="other")
    for organisation in (parent, child, grandchild, other):
        ChargePointFactory(organisation=organisation, identity=f"CP-{organisation.slug}")
    return parent, child, grandchild, other


def _visible(user) -> set[str]:
    return set(ChargePoint.objects.for_actor(user).values_list("identity", flat=True))


def test_parent_sees_its_sub_operators(tree):
    parent, child, *_ = tree
    assert _visible(StaffUserFactory(organisation=parent)) == {"CP-parent", "CP-child", "CP-grandchild"}
    assert _visible(StaffUserFactory(organisation=child)) == {"CP-child", "CP-grandchild"}


def test_sub_operator_does_not_see_its_parent_or_others(tree):
    *_, grandchild, other = tree
    assert _visible(StaffUserFactory(organisation=grandchild)) == {"CP-grandchild"}
    assert _visible(StaffUserFactory(organisation=other)) == {"CP-other"}


def test_rows_owned_through_a_parent_are_scoped(tree):
    _, child, _, other = tree
    ConnectorFactory(evse=EvseFactory(charge_point=ChargePoint.objects.get(identity="CP-other")))
    ConnectorFactory(evse=EvseFactory(charge_point=ChargePoint.objects.get(identity="CP-child")))
    user = StaffUserFactory(organisation=child)

    assert list(Connector.objects.for_actor(user).values_list("evse__charge_point__identity", flat=True)) == [
        "CP-child"
    ]
    assert set(Organisation.objects.for_actor(user).values_list("slug", flat=True)) == {"child", "grandchild"}
    assert not Location.objects.for_actor(user).filter(organisation=other).exists()


def test_inactive_staff_sees_nothing(tree):
    parent, *_ = tree
    assert _visible(StaffUserFactory(organisation=parent, is_active=False)) == set()


def test_superuser_sees_everything(tree):
    superuser = User.objects.create_superuser(email="root@example.com", password="root-password-123")
    assert _visible(superuser) == {"CP-parent", "CP-child", "CP-grandchild", "CP-other"}


def test_anonymous_sees_nothing(tree):
    assert _visible(AnonymousUser()) == set()


def test_inactive_superuser_sees_nothing(tree):
    superuser = User.objects.create_superuser(email="root@example.com", password="root-password-123")
    superuser.is_active = False
    assert _visible(superuser) == set()


def test_shared_rows_are_visible_to_linked_staff_only(tree):
    parent, *_ = tree
    IdTokenFactory(uid="04000001", organisation=None)  # a driver's card valid everywhere: no one's to browse
    IdTokenFactory(uid="04000002", organisation=parent)
    IdTokenFactory(uid="04000003", organisation=OrganisationFactory(slug="elsewhere"))
    IdTokenFactory(uid="04000004", organisation=None).valid_at.add(parent)  # restricted to parent's network
    staff = StaffUserFactory(organisation=parent)
    driver = UserFactory()

    assert set(IdToken.objects.for_actor(staff).values_list("uid", flat=True)) == {"04000002", "04000004"}
    assert set(IdToken.objects.writable_by(staff).values_list("uid", flat=True)) == {"04000002"}
    assert set(IdToken.objects.for_actor(driver).values_list("uid", flat=True)) == set()


def test_organisation_ids_are_cached_per_user(tree, django_assert_num_queries):
    parent, child, grandchild, _ = tree
    user = StaffUserFactory(organisation=parent)

    with django_assert_num_queries(3):  # one query per level of the tree, plus the empty last level
        assert organisation_ids_for(user) == {parent.pk, child.pk, grandchild.pk}
    with django_assert_num_queries(0):
        organisation_ids_for(user)

    OrganisationFactory(slug="new-child", parent=parent)
    forget_organisation_ids(user)
    assert len(organisation_ids_for(user)) == 4
