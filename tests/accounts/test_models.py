"""Accounts constraints at the database level, organisation cycles, and the append-only audit trail."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, ProgrammingError, connection, transaction

from apps.accounts.choices import IdTokenStatus, IdTokenType
from apps.accounts.models import AuditRecord, CustomerAccount, IdToken, Organisation, User
from tests.factories import (
    AuditRecordFactory,
    CustomerAccountFactory,
    IdTokenFactory,
    OrganisationFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_email_unique_case_insensitive():
    User.objects.create(email="Anna@Example.com")
    with pytest.raises(IntegrityError, match="user_email_unique_ci"), transaction.atomic():
        User.objects.create(email="anna@example.com")
    assert list(User.objects.values_list("email", flat=True)) == ["Anna@Example.com"]


def test_create_user_stores_email_in_lower_case():
    user = User.objects.create_user(email="Anna@Example.COM", password="correct-horse-battery")
    assert user.email == "anna@example.com"
    assert User.objects.get_by_natural_key("ANNA@example.com") == user


def test_idtoken_uid_unique():
    IdTokenFactory(uid="04A2B3C4")
    with pytest.raises(IntegrityError, match="idtoken_uid_unique"), transaction.atomic():
        IdTokenFactory(uid="04A2B3C4", type=IdTokenType.CENTRAL)
    assert IdToken.objects.count() == 1


def test_idtoken_uid_upper_case():
    with pytest.raises(IntegrityError, match="idtoken_uid_upper_case"), transaction.atomic():
        IdTokenFactory(uid="04a2b3c4")
    assert not IdToken.objects.exists()


def test_idtoken_clean_normalises_uid():
    token = IdToken(uid=" 04:a2:b3:c4 ", type=IdTokenType.ISO14443)
    token.full_clean()
    assert token.uid == "04A2B3C4"


def test_idtoken_clean_names_the_uid_field():
    token = IdToken(uid="not hex", type=IdTokenType.ISO14443)
    with pytest.raises(ValidationError) as excinfo:
        token.full_clean()
    assert excinfo.value.message_dict["uid"] == ["An RFID uid must be hexadecimal (0-9, A-F), got not hex."]


def test_idtoken_effective_status():
    at = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    token = IdToken(uid="04A2B3C4", status=IdTokenStatus.ACCEPTED, expires_at=at)
    assert token.effective_status(at - timedelta(seconds=1)) == IdTokenStatus.ACCEPTED
    assert token.effective_status(at) == IdTokenStatus.EXPIRED
    token.status = IdTokenStatus.BLOCKED
    assert token.effective_status(at + timedelta(days=1)) == IdTokenStatus.BLOCKED


def test_organisation_not_own_parent():
    organisation = OrganisationFactory()
    organisation.parent_id = organisation.pk
    with pytest.raises(IntegrityError, match="organisation_not_own_parent"), transaction.atomic():
        organisation.save()
    assert Organisation.objects.get(pk=organisation.pk).parent_id is None


def test_organisation_clean_refuses_own_parent():
    organisation = OrganisationFactory()
    organisation.parent = organisation
    with pytest.raises(ValidationError) as excinfo:
        organisation.full_clean()
    assert excinfo.value.message_dict["parent"] == ["This parent would make a cycle of organisations."]


def test_organisation_clean_refuses_a_cycle():
    top = OrganisationFactory(slug="top")
    middle = OrganisationFactory(slug="middle", parent=top)
    bottom = OrganisationFactory(slug="bottom", parent=middle)
    top.parent = bottom
    with pytest.raises(ValidationError) as excinfo:
        top.full_clean()
    assert excinfo.value.message_dict["parent"] == ["This parent would make a cycle of organisations."]
    assert Organisation.objects.get(pk=top.pk).parent is None


def test_organisation_clean_accepts_a_tree():
    top = OrganisationFactory(slug="top")
    child = OrganisationFactory.build(slug="child", invoice_prefix="CHILD", parent=top)
    child.full_clean()


def test_customer_account_name_unique_per_organisation():
    account = CustomerAccountFactory(name="Fleet GmbH")
    with pytest.raises(IntegrityError, match="customeraccount_unique_name_per_org"), transaction.atomic():
        CustomerAccountFactory(name="Fleet GmbH", organisation=account.organisation)
    assert CustomerAccount.objects.count() == 1


def test_customer_account_payment_terms_range():
    with pytest.raises(IntegrityError, match="customeraccount_terms_range"), transaction.atomic():
        CustomerAccountFactory(payment_terms_days=181)
    assert not CustomerAccount.objects.exists()


# --- the audit trail is append-only ----------------------------------------------------------------


@pytest.fixture
def record():
    return AuditRecordFactory(action="chargepoint.create", actor_repr="ops@example.com")


def _unchanged(record: AuditRecord) -> None:
    assert AuditRecord.objects.filter(pk=record.pk, action="chargepoint.create").exists()


def test_model_save_refuses_changes(record):
    record.action = "tampered"
    with pytest.raises(ValidationError, match=r"Audit records cannot be changed\."):
        record.save()
    _unchanged(record)


def test_model_delete_refuses(record):
    with pytest.raises(ValidationError, match=r"Audit records cannot be deleted\."):
        record.delete()
    _unchanged(record)


def test_queryset_update_refused_by_the_database(record):
    with (
        pytest.raises(ProgrammingError, match=r"audit records are append-only \(UPDATE refused\)"),
        transaction.atomic(),
    ):
        AuditRecord.objects.filter(pk=record.pk).update(action="tampered")
    _unchanged(record)


def test_queryset_delete_refused_by_the_database(record):
    with (
        pytest.raises(ProgrammingError, match=r"audit records are append-only \(DELETE refused\)"),
        transaction.atomic(),
    ):
        AuditRecord.objects.filter(pk=record.pk).delete()
    _unchanged(record)


@pytest.mark.parametrize(
    ("sql", "operation"),
    [
        ("UPDATE accounts_auditrecord SET action = 'tampered' WHERE id = %s", "UPDATE"),
        ("DELETE FROM accounts_auditrecord WHERE id = %s", "DELETE"),
    ],
)
def test_raw_sql_refused_by_the_database(record, sql, operation):
    with (
        pytest.raises(ProgrammingError, match=rf"append-only \({operation} refused\)"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [record.pk])
    _unchanged(record)


def test_deleting_the_actor_leaves_the_record():
    user = UserFactory()
    user_pk, email = user.pk, user.email
    kept = AuditRecordFactory(actor=user, actor_repr=email)
    user.delete()
    kept = AuditRecord.objects.get(pk=kept.pk)
    assert (kept.actor_id, kept.actor_repr) == (user_pk, email)


def test_maintenance_setting_lifts_the_guard_for_one_transaction(record):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL cpo.audit_maintenance = 'on'")
        AuditRecord.objects.filter(pk=record.pk).update(actor_repr="anonymised")
        cursor.execute("DELETE FROM accounts_auditrecord WHERE id = %s", [record.pk])
    assert not AuditRecord.objects.filter(pk=record.pk).exists()


def test_organisation_time_zone_defaults_to_berlin_and_accepts_iana_names():
    org = OrganisationFactory()
    assert org.time_zone == "Europe/Berlin"
    org.time_zone = "America/New_York"
    org.full_clean()
    org.save()
    org.refresh_from_db()
    assert org.time_zone == "America/New_York"


@pytest.mark.parametrize("bad", ["CET+1", "Berlin", "UTC+02:00", ""])
def test_organisation_time_zone_rejects_what_is_not_an_iana_name(bad):
    org = OrganisationFactory(time_zone="Europe/Paris")
    org.time_zone = bad
    with pytest.raises(ValidationError) as excinfo:
        org.full_clean()
    assert "time_zone" in excinfo.value.message_dict
    org.refresh_from_db()
    assert org.time_zone == "Europe/Paris"
