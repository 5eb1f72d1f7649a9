"""Shared fixtures. Tests run against PostgreSQL/PostGIS and Redis on loopback (make test ensures both)."""

from __future__ import annotations

import pytest

from tests.factories import OrganisationFactory, StaffUserFactory


@pytest.fixture
def org_a(db):
    return OrganisationFactory(name="Alpha Charging", slug="alpha")


@pytest.fixture
def org_b(db):
    return OrganisationFactory(name="Beta Power", slug="beta")


@pytest.fixture
def superuser(db):
    from apps.accounts.models import User

    return User.objects.create_superuser(email="root@example.com", password="root-password-123")


@pytest.fixture
def staff_a(org_a):
    """An operator admin of org_a."""
    return StaffUserFactory(organisation=org_a, role="Operator admin")


@pytest.fixture
def staff_b(org_b):
    return StaffUserFactory(organisation=org_b, role="Operator admin")
