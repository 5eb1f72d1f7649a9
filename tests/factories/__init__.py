"""factory-boy factories for every model. TENANT_FACTORIES maps each tenant-owned model to a factory
that accepts `organisation=` (used by the generated tenancy tests)."""

from __future__ import annotations

import factory
from django.contrib.auth.models import Group
from django.contrib.gis.geos import Point

from apps.accounts.choices import AuditOutcome, IdTokenStatus, IdTokenType
from apps.accounts.models import AuditRecord, CustomerAccount, DriverProfile, IdToken, Organisation, User
from apps.stations import keys
from apps.stations.models import ChargePoint, Connector, Evse, Location


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Operator {n}")
    slug = factory.Sequence(lambda n: f"operator-{n}")
    country = "DE"
    invoice_prefix = factory.Sequence(lambda n: f"OP{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffUserFactory(UserFactory):
    """A staff member; pass role="Technician" etc. to put them in that role's group."""

    is_staff = True
    organisation = factory.SubFactory(OrganisationFactory)

    @factory.post_generation
    def role(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.groups.add(Group.objects.get(name=extracted))


class DriverFactory(UserFactory):
    driver_profile = factory.RelatedFactory("tests.factories.DriverProfileFactory", factory_related_name="user")


class DriverProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DriverProfile

    user = factory.SubFactory(UserFactory)


class CustomerAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomerAccount

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Fleet {n} GmbH")
    country = "DE"


class IdTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IdToken

    uid = factory.Sequence(lambda n: f"{0x04A1B2C3 + n:08X}")
    type = IdTokenType.ISO14443
    status = IdTokenStatus.ACCEPTED


class LocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Location

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    address = "Alexanderplatz 1"
    postal_code = "10178"
    city = "Berlin"
    country = "DE"
    point = factory.LazyFunction(lambda: Point(13.4132, 52.5219, srid=4326))
    time_zone = "Europe/Berlin"


class ChargePointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargePoint

    organisation = factory.SubFactory(OrganisationFactory)
    location = factory.LazyAttribute(lambda o: LocationFactory(organisation=o.organisation))
    identity = factory.Sequence(lambda n: f"CP-{n:04d}")
    vendor = "ACME"
    model = "AC22"
    security_profile = 1
    auth_key_hash = factory.LazyFunction(lambda: keys.hash_key("0123456789abcdef0123"))


class EvseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Evse

    charge_point = factory.SubFactory(ChargePointFactory)
    evse_id = factory.Sequence(lambda n: n + 1)


class ConnectorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connector

    evse = factory.SubFactory(EvseFactory)
    connector_id = 1


class AuditRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditRecord

    action = "test.action"
    outcome = AuditOutcome.SUCCEEDED
    organisation = factory.SubFactory(OrganisationFactory)


def _for_org(factory_cls, **extra):
    return lambda organisation: factory_cls(organisation=organisation, **extra)


TENANT_FACTORIES = {
    Organisation: lambda organisation: OrganisationFactory(parent=organisation),
    User: lambda organisation: StaffUserFactory(organisation=organisation),
    CustomerAccount: _for_org(CustomerAccountFactory),
    IdToken: _for_org(IdTokenFactory),
    AuditRecord: _for_org(AuditRecordFactory),
    Location: _for_org(LocationFactory),
    ChargePoint: _for_org(ChargePointFactory),
    Evse: lambda organisation: EvseFactory(charge_point=ChargePointFactory(organisation=organisation)),
    Connector: lambda organisation: ConnectorFactory(
        evse=EvseFactory(charge_point=ChargePointFactory(organisation=organisation))
    ),
}
