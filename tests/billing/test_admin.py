"""Disputes in the admin: read-only, for finance, within the organisation."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client

from apps.billing.models import Dispute
from tests.factories import OrganisationFactory, PaymentFactory, StaffUserFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/billing/dispute/"


def dispute(stripe_id, organisation):
    return Dispute.objects.create(
        stripe_id=stripe_id,
        amount=1000,
        currency="EUR",
        status="needs_response",
        organisation=organisation,
        opened_at=datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC),
    )


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_finance_sees_its_own_organisations_disputes_read_only(db):
    home, other = OrganisationFactory(slug="home"), OrganisationFactory(slug="other")
    mine = dispute("dp_home", home)
    dispute("dp_other", other)
    dispute("dp_nobody", None)
    finance = signed_in(StaffUserFactory(organisation=home, role="Finance"))
    page = finance.get(CHANGELIST)
    assert page.status_code == 200
    text = page.content.decode()
    assert "dp_home" in text and "dp_other" not in text and "dp_nobody" not in text
    assert finance.get(f"{CHANGELIST}{Dispute.objects.get(stripe_id='dp_other').pk}/change/").status_code in (
        302,
        404,
    )
    detail = finance.get(f"{CHANGELIST}{mine.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert finance.post(f"{CHANGELIST}{mine.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Dispute.objects.filter(pk=mine.pk).exists()


def test_other_roles_do_not_see_disputes(db):
    home = OrganisationFactory(slug="home")
    dispute("dp_home", home)
    technician = signed_in(StaffUserFactory(organisation=home, role="Technician"))
    assert technician.get(CHANGELIST).status_code == 403


def test_the_superuser_sees_every_dispute(superuser):
    dispute("dp_a", OrganisationFactory(slug="a"))
    dispute("dp_nobody", None)
    text = signed_in(superuser).get(CHANGELIST).content.decode()
    assert "dp_a" in text and "dp_nobody" in text


def test_finance_sees_its_own_organisations_payments_read_only(db):
    home, other = OrganisationFactory(slug="home"), OrganisationFactory(slug="other")
    mine = PaymentFactory(organisation=home, stripe_id="pi_home")
    PaymentFactory(organisation=other, stripe_id="pi_other")
    finance = signed_in(StaffUserFactory(organisation=home, role="Finance"))
    text = finance.get("/admin/billing/payment/").content.decode()
    assert "pi_home" in text and "pi_other" not in text
    detail = finance.get(f"/admin/billing/payment/{mine.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
