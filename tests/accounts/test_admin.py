"""Accounts admin: staff cannot escalate or reach outside their organisations, every admin change is
audited, the audit trail is read-only, and id tokens are shown, stored and imported normalised."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from import_export.formats.base_formats import CSV

from apps.accounts.models import AuditRecord, IdToken, Organisation, User
from apps.accounts.resources import IdTokenResource
from tests.factories import (
    AuditRecordFactory,
    ChargePointFactory,
    CustomerAccountFactory,
    DriverFactory,
    EvseFactory,
    IdTokenFactory,
    OrganisationFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db


def user_change_data(user: User, **overrides) -> dict[str, str]:
    data = {
        "email": user.email,
        "full_name": user.full_name,
        "organisation": str(user.organisation_id or ""),
        "is_active": "on",
        "is_staff": "on" if user.is_staff else "",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value != ""}


def form_errors(response) -> dict[str, list[str]]:
    return {
        name: [str(m) for m in errors] for name, errors in response.context["adminform"].form.errors.items()
    }


# --- audit hook ----------------------------------------------------------------------------------


def test_admin_change_writes_an_admin_audit_record(admin_client, admin_user, org_a):
    customer = {
        "organisation": org_a.pk,
        "name": "Fleet GmbH",
        "country": "DE",
        "payment_terms_days": 30,
        "is_active": "on",
    }

    response = admin_client.post(reverse("admin:accounts_customeraccount_add"), customer)

    assert response.status_code == 302
    record = AuditRecord.objects.get(source="admin")
    assert (record.action, record.actor, record.organisation_id, record.outcome) == (
        "customeraccount.create",
        admin_user,
        org_a.pk,
        "succeeded",
    )
    assert record.target_repr == "Fleet GmbH"


def test_admin_audit_files_child_rows_under_their_operator(admin_client, org_a):
    evse = EvseFactory(charge_point=ChargePointFactory(organisation=org_a))

    response = admin_client.post(reverse("admin:stations_evse_delete", args=[evse.pk]), {"post": "yes"})

    assert response.status_code == 302
    record = AuditRecord.objects.get(source="admin")
    assert (record.action, record.organisation_id, record.target_id) == (
        "evse.delete",
        org_a.pk,
        str(evse.pk),
    )


def test_changing_a_password_in_the_admin_is_audited(admin_client):
    driver = DriverFactory()

    response = admin_client.post(
        reverse("admin:auth_user_password_change", args=[driver.pk]),
        {
            "password1": "a-new-long-passphrase",
            "password2": "a-new-long-passphrase",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    record = AuditRecord.objects.get(source="admin")
    assert record.action == "user.update"
    assert "a-new-long-passphrase" not in str(record.detail)


# --- audit trail ---------------------------------------------------------------------------------


def test_audit_records_are_read_only_even_for_the_superuser(admin_client):
    record = AuditRecordFactory()

    assert admin_client.get(reverse("admin:accounts_auditrecord_add")).status_code == 403
    assert admin_client.get(reverse("admin:accounts_auditrecord_delete", args=[record.pk])).status_code == 403
    page = admin_client.get(reverse("admin:accounts_auditrecord_change", args=[record.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    changelist = admin_client.get(reverse("admin:accounts_auditrecord_changelist"))
    assert "delete_selected" not in changelist.content.decode()


def test_audit_changelist_filters_by_outcome_and_source(admin_client):
    denied = AuditRecordFactory(outcome="denied", source="admin")
    AuditRecordFactory(outcome="succeeded", source="admin")
    AuditRecordFactory(outcome="denied", source="ocpp")

    response = admin_client.get(
        reverse("admin:accounts_auditrecord_changelist"),
        {"outcome__exact": "denied", "source__exact": "admin"},
    )

    assert list(response.context["cl"].result_list) == [denied]


# --- users ---------------------------------------------------------------------------------------


def test_staff_cannot_grant_superuser_or_single_permissions(client, staff_a, org_a):
    colleague = StaffUserFactory(organisation=org_a)
    permission = Permission.objects.get(codename="add_organisation")
    client.force_login(staff_a)

    response = client.post(
        reverse("admin:accounts_user_change", args=[colleague.pk]),
        user_change_data(colleague, is_superuser="on", user_permissions=[str(permission.pk)]),
    )

    assert response.status_code == 302
    colleague.refresh_from_db()
    assert not colleague.is_superuser
    assert not colleague.user_permissions.exists()


def test_staff_may_assign_only_their_organisations(client, staff_a, org_a, org_b):
    colleague = StaffUserFactory(organisation=org_a)
    client.force_login(staff_a)

    response = client.post(
        reverse("admin:accounts_user_change", args=[colleague.pk]),
        user_change_data(colleague, organisation=org_b.pk),
    )

    assert "Select a valid choice" in form_errors(response)["organisation"][0]
    colleague.refresh_from_db()
    assert colleague.organisation == org_a


def test_staff_may_assign_only_roles_within_their_own_permissions(client, staff_a, org_a):
    colleague = StaffUserFactory(organisation=org_a)
    powerful = Group.objects.create(name="Platform")
    powerful.permissions.add(Permission.objects.get(codename="add_organisation"))
    technician = Group.objects.get(name="Technician")
    client.force_login(staff_a)

    refused = client.post(
        reverse("admin:accounts_user_change", args=[colleague.pk]),
        user_change_data(colleague, groups=[powerful.pk]),
    )
    granted = client.post(
        reverse("admin:accounts_user_change", args=[colleague.pk]),
        user_change_data(colleague, groups=[technician.pk]),
    )

    assert "Select a valid choice" in form_errors(refused)["groups"][0]
    assert granted.status_code == 302
    assert list(colleague.groups.all()) == [technician]


def test_roles_the_editor_cannot_assign_are_kept_on_save(client, staff_a, org_a):
    powerful = Group.objects.create(name="Platform")
    powerful.permissions.add(Permission.objects.get(codename="add_organisation"))
    colleague = StaffUserFactory(organisation=org_a)
    colleague.groups.add(powerful)
    client.force_login(staff_a)

    response = client.post(
        reverse("admin:accounts_user_change", args=[colleague.pk]),
        user_change_data(colleague, full_name="Renamed", groups=[]),
    )

    assert response.status_code == 302
    colleague.refresh_from_db()
    assert colleague.full_name == "Renamed"
    assert list(colleague.groups.all()) == [powerful]


def test_staff_cannot_change_a_superuser(client, staff_a, superuser):
    client.force_login(staff_a)

    page = client.get(reverse("admin:accounts_user_change", args=[superuser.pk]))
    post = client.post(
        reverse("admin:accounts_user_change", args=[superuser.pk]), user_change_data(superuser)
    )
    password = client.get(reverse("admin:auth_user_password_change", args=[superuser.pk]))

    # The superuser is not staff's to see: 404 as for any row out of scope (tests/test_admin_tenancy.py).
    assert page.status_code == 404
    assert post.status_code == 404
    assert password.status_code == 404


def test_staff_create_users_only_for_an_organisation_of_theirs(client, staff_a, org_a):
    client.force_login(staff_a)
    data = {
        "email": "New.Tech@Example.com",
        "full_name": "New Tech",
        "is_staff": "on",
        "usable_password": "true",
        "password1": "long-enough-passphrase",
        "password2": "long-enough-passphrase",
    }

    refused = client.post(reverse("admin:accounts_user_add"), data)
    created = client.post(reverse("admin:accounts_user_add"), {**data, "organisation": org_a.pk})

    assert form_errors(refused)["organisation"] == ["Staff members need an organisation."]
    assert created.status_code == 302
    user = User.objects.get(email="new.tech@example.com")
    assert (user.organisation, user.is_staff, user.is_superuser) == (org_a, True, False)


def test_user_changelist_shows_the_operator_columns(admin_client, org_a):
    StaffUserFactory(organisation=org_a, email="tech@alpha.example")

    response = admin_client.get(reverse("admin:accounts_user_changelist"), {"q": "tech@alpha"})

    content = response.content.decode()
    assert [u.email for u in response.context["cl"].result_list] == ["tech@alpha.example"]
    for column in (
        "column-email",
        "column-full_name",
        "column-organisation",
        "column-is_staff",
        "column-email_verified",
        "column-is_active",
    ):
        assert column in content


# --- organisations -------------------------------------------------------------------------------


def test_staff_cannot_create_a_top_level_organisation(client, org_a):
    staff = StaffUserFactory(organisation=org_a)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_organisation", "view_organisation"])
    )
    client.force_login(staff)
    data = {
        "name": "Sub",
        "slug": "sub",
        "country": "DE",
        "invoice_prefix": "SUB",
        "time_zone": "Europe/Berlin",
        "is_active": "on",
    }

    refused = client.post(reverse("admin:accounts_organisation_add"), data)
    created = client.post(reverse("admin:accounts_organisation_add"), {**data, "parent": org_a.pk})

    assert form_errors(refused)["parent"] == [
        "Only a superuser can create a top-level organisation; choose the parent organisation."
    ]
    assert created.status_code == 302
    assert Organisation.objects.get(slug="sub").parent == org_a


def test_staff_see_their_organisation_tree(client, staff_a, org_a, org_b):
    child = OrganisationFactory(parent=org_a, name="Alpha Süd")
    grandchild = OrganisationFactory(parent=child, name="Alpha Süd-West")
    client.force_login(staff_a)

    response = client.get(reverse("admin:accounts_organisation_changelist"))
    own_page = client.get(reverse("admin:accounts_organisation_change", args=[org_a.pk]))

    assert set(response.context["cl"].result_list) == {org_a, child, grandchild}
    assert "parent" not in own_page.context["adminform"].form.fields  # the top of their tree stays put
    assert reverse("admin:accounts_organisation_change", args=[child.pk]) in own_page.content.decode()


# --- id tokens -----------------------------------------------------------------------------------


def idtoken_data(**overrides) -> dict[str, str]:
    data = {
        "uid": "",
        "type": "ISO14443",
        "status": "Accepted",
        "expires_at_0": "",
        "expires_at_1": "",
        "label": "",
        "group_id": "",
    }
    data.update({key: str(value) for key, value in overrides.items()})
    return data


def test_idtoken_uid_is_stored_and_shown_normalised(client, staff_a, org_a):
    client.force_login(staff_a)

    response = client.post(
        reverse("admin:accounts_idtoken_add"), idtoken_data(uid="04:a1:b2:c3", organisation=org_a.pk)
    )

    assert response.status_code == 302
    token = IdToken.objects.get()
    assert token.uid == "04A1B2C3"
    listed = client.get(reverse("admin:accounts_idtoken_changelist"), {"q": "04:a1:b2"})
    assert [t.uid for t in listed.context["cl"].result_list] == ["04A1B2C3"]


def test_idtoken_bad_uid_and_missing_organisation_are_refused(client, staff_a):
    client.force_login(staff_a)

    response = client.post(reverse("admin:accounts_idtoken_add"), idtoken_data(uid="04-ZZ"))

    errors = form_errors(response)
    assert errors["uid"] == ["An RFID uid must be hexadecimal (0-9, A-F), got 04-ZZ."]
    assert errors["organisation"] == ["Choose the organisation that issues this token."]
    assert not IdToken.objects.exists()


def test_editing_a_token_keeps_organisations_the_editor_cannot_see(client, staff_a, org_a, org_b):
    token = IdTokenFactory(organisation=org_a)
    token.valid_at.add(org_a, org_b)
    client.force_login(staff_a)

    response = client.post(
        reverse("admin:accounts_idtoken_change", args=[token.pk]),
        idtoken_data(uid=token.uid, organisation=org_a.pk, label="Fleet card", valid_at=org_a.pk),
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.label == "Fleet card"
    assert set(token.valid_at.all()) == {org_a, org_b}


def test_editing_keeps_a_relation_the_editor_cannot_choose(client, staff_a, org_a, org_b):
    fleet_b = CustomerAccountFactory(organisation=org_b)
    token = IdTokenFactory(organisation=org_a, customer_account=fleet_b)  # linked by a superuser
    client.force_login(staff_a)

    page = client.get(reverse("admin:accounts_idtoken_change", args=[token.pk]))
    response = client.post(
        reverse("admin:accounts_idtoken_change", args=[token.pk]),
        idtoken_data(uid=token.uid, organisation=org_a.pk, label="Renamed", customer_account=fleet_b.pk),
    )

    assert list(page.context["adminform"].form.fields["customer_account"].queryset) == [fleet_b]
    assert response.status_code == 302
    token.refresh_from_db()
    assert (token.label, token.customer_account) == ("Renamed", fleet_b)


def _csv_index() -> str:
    formats = admin.site._registry[IdToken].get_import_formats()
    return str(next(i for i, fmt in enumerate(formats) if fmt is CSV))


def _upload(rows: list[dict]) -> SimpleUploadedFile:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return SimpleUploadedFile("tokens.csv", out.getvalue().encode(), content_type="text/csv")


def test_idtoken_import_normalises_and_reports_bad_rows(client, staff_a, org_a, org_b):
    # a driver linked to org_a (in one of its customer accounts): one staff of org_a may name as owner
    DriverFactory(
        email="driver@example.com",
        driver_profile__customer_account=CustomerAccountFactory(organisation=org_a),
    )
    client.force_login(staff_a)
    rows = [
        {
            "uid": "04:a1:b2:c3",
            "type": "",
            "status": "Accepted",
            "expires_at": "2027-12-31T23:59:59+01:00",
            "owner": "Driver@Example.com",
            "group_id": "FLEET-1",
            "organisation": "alpha",
        },
        {
            "uid": "xyz",
            "type": "ISO14443",
            "status": "Accepted",
            "expires_at": "",
            "owner": "",
            "group_id": "",
            "organisation": "alpha",
        },
        {
            "uid": "APP-1",
            "type": "Central",
            "status": "Lost",
            "expires_at": "2027-12-31",
            "owner": "nobody@example.com",
            "group_id": "",
            "organisation": "beta",
        },
    ]
    url = reverse("admin:accounts_idtoken_import")

    preview = client.post(url, {"resource": "0", "format": _csv_index(), "import_file": _upload(rows)})
    errors = {row.number: row.error_dict for row in preview.context["result"].invalid_rows}
    good = client.post(url, {"resource": "0", "format": _csv_index(), "import_file": _upload(rows[:1])})
    form = good.context["confirm_form"]
    client.post(
        reverse("admin:accounts_idtoken_process_import"),
        {name: form.initial.get(name, "") for name in form.fields},
    )

    assert set(errors) == {2, 3}
    assert errors[2] == {"uid": ["An RFID uid must be hexadecimal (0-9, A-F), got xyz."]}
    assert errors[3]["owner"] == ["No user with the e-mail address nobody@example.com."]
    assert errors[3]["expires_at"] == [
        "“2027-12-31” is not an ISO-8601 time with a time zone, e.g. 2027-12-31T23:59:59Z."
    ]
    assert errors[3]["organisation"] == ["You may not import rows for the organisation “beta”."]
    assert errors[3]["status"] == ["Value 'Lost' is not a valid choice."]
    token = IdToken.objects.get()
    assert (token.uid, token.group_id, token.organisation, token.owner.email) == (
        "04A1B2C3",
        "FLEET-1",
        org_a,
        "driver@example.com",
    )
    assert token.expires_at == datetime(2027, 12, 31, 22, 59, 59, tzinfo=UTC)


def test_idtoken_export_is_scoped_and_iso8601(client, staff_a, org_a, org_b):
    IdTokenFactory(uid="AAAA0001", organisation=org_a, expires_at=datetime(2027, 1, 1, tzinfo=UTC))
    IdTokenFactory(uid="BBBB0001", organisation=org_b)
    client.force_login(staff_a)
    data = {"resource": "0", "format": _csv_index()}
    data.update({f"idtokenresource_{name}": "on" for name in IdTokenResource().get_export_order()})

    response = client.post(reverse("admin:accounts_idtoken_export"), data)

    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows == [
        {
            "uid": "AAAA0001",
            "type": "ISO14443",
            "status": "Accepted",
            "expires_at": "2027-01-01T00:00:00Z",
            "owner": "",
            "group_id": "",
            "organisation": "alpha",
        }
    ]


def test_an_organisations_time_zone_is_set_in_the_admin_and_a_wrong_one_refused(db, client):
    root = User.objects.create_superuser(email="root.tz@example.com", password="root-passphrase-2026")
    client.force_login(root)
    org = OrganisationFactory(slug="tz-org", time_zone="Europe/Berlin")
    url = reverse("admin:accounts_organisation_change", args=[org.pk])
    data = {
        "name": org.name,
        "slug": org.slug,
        "country": "FR",
        "invoice_prefix": org.invoice_prefix,
        "is_active": "on",
    }
    refused = client.post(url, {**data, "time_zone": "CET+1"})
    assert refused.status_code == 200 and "is not a known time zone" in refused.content.decode()
    assert Organisation.objects.get(pk=org.pk).time_zone == "Europe/Berlin"
    saved = client.post(url, {**data, "time_zone": "Europe/Paris"})
    assert saved.status_code == 302
    assert Organisation.objects.get(pk=org.pk).time_zone == "Europe/Paris"
