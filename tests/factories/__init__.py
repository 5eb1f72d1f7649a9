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


def role_group(name: str) -> Group:
    """The role's group. A transactional test's flush empties the tables and restores permissions but not
    the groups the data migration made: then the group is made again with the role's permissions."""
    group = Group.objects.filter(name=name).first()
    if group is not None:
        return group
    from django.contrib.auth.models import Permission

    from apps.accounts.roles import ROLE_PERMISSIONS

    group = Group.objects.create(name=name)
    wanted = next(perms for role, perms in ROLE_PERMISSIONS.items() if str(role) == name)
    for app_label, codename in wanted:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


class StaffUserFactory(UserFactory):
    """A staff member; pass role="Technician" etc. to put them in that role's group."""

    is_staff = True
    organisation = factory.SubFactory(OrganisationFactory)

    @factory.post_generation
    def role(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.groups.add(role_group(extracted))


class DriverFactory(UserFactory):
    driver_profile = factory.RelatedFactory(
        "tests.factories.DriverProfileFactory", factory_related_name="user"
    )


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
    DriverProfile: lambda organisation: DriverProfileFactory(
        customer_account=CustomerAccountFactory(organisation=organisation)
    ),
    IdToken: _for_org(IdTokenFactory),
    AuditRecord: _for_org(AuditRecordFactory),
    Location: _for_org(LocationFactory),
    ChargePoint: _for_org(ChargePointFactory),
    Evse: lambda organisation: EvseFactory(charge_point=ChargePointFactory(organisation=organisation)),
    Connector: lambda organisation: ConnectorFactory(
        evse=EvseFactory(charge_point=ChargePointFactory(organisation=organisation))
    ),
}


# --- OCPP gateway and charging ---------------------------------------------------------------------

from datetime import timedelta  # noqa: E402
from uuid import uuid4  # noqa: E402

from apps.charging.models import ChargingSession, MeterSample, OrphanStop  # noqa: E402
from apps.ocpp_gateway.choices import CommandStatus, Direction  # noqa: E402
from apps.ocpp_gateway.models import (  # noqa: E402
    DiagnosticsUpload,
    FirmwareFile,
    LocalAuthList,
    OcppCommand,
    OcppFailedMessage,
    OcppMessage,
)
from cpo import clock  # noqa: E402


class OcppCommandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OcppCommand

    charge_point = factory.SubFactory(ChargePointFactory)
    action = "Reset"
    payload = factory.LazyFunction(lambda: {"type": "Soft"})
    unique_id = factory.LazyFunction(lambda: str(uuid4()))
    status = CommandStatus.ANSWERED
    response = factory.LazyFunction(lambda: {"status": "Accepted"})
    created_at = factory.LazyFunction(clock.now)
    deadline = factory.LazyAttribute(lambda o: o.created_at + timedelta(seconds=30))
    completed_at = factory.LazyAttribute(lambda o: o.created_at)


class OcppMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OcppMessage

    charge_point = factory.SubFactory(ChargePointFactory)
    identity = factory.LazyAttribute(lambda o: o.charge_point.identity)
    direction = Direction.IN
    message_type = 2
    action = "Heartbeat"
    unique_id = factory.Sequence(lambda n: f"msg-{n}")
    frame = factory.LazyAttribute(lambda o: f'[2,"{o.unique_id}","{o.action}",{{}}]')
    at = factory.LazyFunction(clock.now)


class OcppFailedMessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OcppFailedMessage

    charge_point = factory.SubFactory(ChargePointFactory)
    protocol = "ocpp1.6"
    action = "Heartbeat"
    unique_id = factory.Sequence(lambda n: f"failed-{n}")
    payload = factory.LazyFunction(dict)
    error = "RuntimeError: database went away"
    received_at = factory.LazyFunction(clock.now)


class FirmwareFileFactory(factory.django.DjangoModelFactory):
    """A firmware record whose file name points nowhere (no file is written); tests that download
    create a real file."""

    class Meta:
        model = FirmwareFile

    organisation = factory.SubFactory(OrganisationFactory)
    vendor = "ACME"
    model = "AC22"
    version = factory.Sequence(lambda n: f"1.0.{n}")
    file = factory.LazyAttribute(lambda o: f"firmware/{uuid4()}/acme-{o.version}.bin")
    filename = factory.LazyAttribute(lambda o: f"acme-{o.version}.bin")
    size = 8
    sha256 = "0" * 64


class DiagnosticsUploadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DiagnosticsUpload

    charge_point = factory.SubFactory(ChargePointFactory)
    token_hash = factory.Sequence(lambda n: f"{n:064x}")
    created_at = factory.LazyFunction(clock.now)
    expires_at = factory.LazyAttribute(lambda o: o.created_at + timedelta(days=1))


class LocalAuthListFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LocalAuthList

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Local list {n}")


class ChargingSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargingSession

    charge_point = factory.SubFactory(ChargePointFactory)
    organisation = factory.LazyAttribute(lambda o: o.charge_point.organisation)
    evse_id = 1
    protocol = "ocpp1.6"
    transaction_ref = factory.Sequence(lambda n: f"tx-{n}")
    id_tag = "04A1B2C3"
    auth_status = "Accepted"
    meter_start_wh = 1000
    started_at = factory.LazyFunction(clock.now)
    started_at_charger = factory.LazyAttribute(lambda o: o.started_at)
    start_received_at = factory.LazyAttribute(lambda o: o.started_at)


class MeterSampleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MeterSample

    charge_point = factory.SubFactory(ChargePointFactory)
    evse_id = 1
    sampled_at = factory.LazyFunction(clock.now)
    received_at = factory.LazyAttribute(lambda o: o.sampled_at)
    measurand = "Energy.Active.Import.Register"
    unit = "Wh"
    value = 1234


class OrphanStopFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrphanStop

    charge_point = factory.SubFactory(ChargePointFactory)
    transaction_ref = factory.Sequence(lambda n: str(7000 + n))
    payload = factory.LazyFunction(lambda: {"transactionId": 7000, "meterStop": 2000})
    received_at = factory.LazyFunction(clock.now)


def _for_charger(factory_cls, **extra):
    return lambda organisation: factory_cls(
        charge_point=ChargePointFactory(organisation=organisation), **extra
    )


TENANT_FACTORIES.update(
    {
        OcppCommand: _for_charger(OcppCommandFactory),
        OcppMessage: _for_charger(OcppMessageFactory),
        OcppFailedMessage: _for_charger(OcppFailedMessageFactory),
        DiagnosticsUpload: _for_charger(DiagnosticsUploadFactory),
        FirmwareFile: _for_org(FirmwareFileFactory),
        LocalAuthList: _for_org(LocalAuthListFactory),
        ChargingSession: _for_charger(ChargingSessionFactory),
        MeterSample: _for_charger(MeterSampleFactory),
        OrphanStop: _for_charger(OrphanStopFactory),
    }
)


from apps.charging.models import TransactionEvent  # noqa: E402
from apps.stations.models import ChargerEvent, DeviceVariable  # noqa: E402


class TransactionEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TransactionEvent

    session = factory.SubFactory(ChargingSessionFactory, protocol="ocpp2.0.1")
    charge_point = factory.LazyAttribute(lambda o: o.session.charge_point)
    transaction_ref = factory.LazyAttribute(lambda o: o.session.transaction_ref)
    seq_no = factory.Sequence(lambda n: n)
    event_type = "Updated"
    trigger_reason = "MeterValuePeriodic"
    timestamp = factory.LazyFunction(clock.now)
    received_at = factory.LazyAttribute(lambda o: o.timestamp)
    payload = factory.LazyFunction(dict)


class DeviceVariableFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceVariable

    charge_point = factory.SubFactory(ChargePointFactory)
    component = "OCPPCommCtrlr"
    variable = factory.Sequence(lambda n: f"Variable{n}")
    value = "300"
    reported_at = factory.LazyFunction(clock.now)


class ChargerEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargerEvent

    charge_point = factory.SubFactory(ChargePointFactory)
    kind = "security"
    trigger = "StartupOfTheDevice"
    occurred_at = factory.LazyFunction(clock.now)
    received_at = factory.LazyAttribute(lambda o: o.occurred_at)


TENANT_FACTORIES.update(
    {
        TransactionEvent: lambda organisation: TransactionEventFactory(
            session=ChargingSessionFactory(charge_point=ChargePointFactory(organisation=organisation))
        ),
        DeviceVariable: _for_charger(DeviceVariableFactory),
        ChargerEvent: _for_charger(ChargerEventFactory),
    }
)


# --- driver API ------------------------------------------------------------------------------------

from apps.charging.models import DriverSession  # noqa: E402


class DriverSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DriverSession

    driver = factory.SubFactory(DriverFactory)
    charge_point = factory.SubFactory(ChargePointFactory)
    organisation = factory.LazyAttribute(lambda o: o.charge_point.organisation)
    evse_id = 1
    status = "ACTIVE"


TENANT_FACTORIES[DriverSession] = _for_charger(DriverSessionFactory)

# --- tariffs -----------------------------------------------------------------------------------------

from decimal import Decimal  # noqa: E402

from apps.tariffs.models import ChargeDetailRecord, Tariff, TariffAssignment, TariffElement, VatRate  # noqa: E402


class TariffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tariff

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Tariff {n}")
    currency = "EUR"


class TariffElementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TariffElement

    tariff = factory.SubFactory(TariffFactory)
    energy_price = Decimal("0.30")


class TariffAssignmentFactory(factory.django.DjangoModelFactory):
    """The operator's default tariff unless a place is given."""

    class Meta:
        model = TariffAssignment

    tariff = factory.SubFactory(TariffFactory)
    organisation = factory.LazyAttribute(lambda o: o.tariff.organisation)


class VatRateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VatRate
        django_get_or_create = ("country", "valid_from")

    country = "XA"
    rate = Decimal("19.00")
    valid_from = factory.LazyFunction(lambda: clock.now().date().replace(year=2000))


class ChargeDetailRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargeDetailRecord

    session = factory.SubFactory(ChargingSessionFactory, status="COMPLETED", meter_stop_wh=11000)
    organisation = factory.LazyAttribute(lambda o: o.session.organisation)
    charge_point = factory.LazyAttribute(lambda o: o.session.charge_point)
    evse_id = 1
    currency = "EUR"
    started_at = factory.LazyAttribute(lambda o: o.session.started_at)
    stopped_at = factory.LazyAttribute(lambda o: o.session.started_at + timedelta(hours=1))
    ended_at = factory.LazyAttribute(lambda o: o.stopped_at)
    energy_wh = 10000
    charging_seconds = 3600
    parking_seconds = 0
    net = Decimal("3.00")
    tax = Decimal("0.57")
    gross = Decimal("3.57")
    breakdown = factory.LazyFunction(
        lambda: {
            "currency": "EUR",
            "net": "3.00",
            "vat": "0.57",
            "gross": "3.57",
            "lines": [],
            "vat_lines": [],
        }
    )
    tariff_spec = factory.LazyFunction(dict)


TENANT_FACTORIES.update(
    {
        Tariff: _for_org(TariffFactory),
        TariffElement: lambda organisation: TariffElementFactory(
            tariff=TariffFactory(organisation=organisation)
        ),
        TariffAssignment: lambda organisation: TariffAssignmentFactory(
            tariff=TariffFactory(organisation=organisation)
        ),
        ChargeDetailRecord: lambda organisation: ChargeDetailRecordFactory(
            session=ChargingSessionFactory(
                charge_point=ChargePointFactory(organisation=organisation),
                status="COMPLETED",
                meter_stop_wh=11000,
            )
        ),
    }
)


# --- billing ---------------------------------------------------------------------------------------------

from apps.billing.models import Dispute, Payment, PaymentCharge, Refund, StripeCustomer  # noqa: E402


class DisputeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dispute

    stripe_id = factory.Sequence(lambda n: f"dp_test{n}")
    charge_id = factory.Sequence(lambda n: f"ch_test{n}")
    amount = 2500
    currency = "EUR"
    reason = "fraudulent"
    status = "needs_response"
    opened_at = factory.LazyFunction(clock.now)


class StripeCustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StripeCustomer

    user = factory.SubFactory(DriverFactory)
    stripe_id = factory.Sequence(lambda n: f"cus_test{n}")


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    stripe_id = factory.Sequence(lambda n: f"pi_test{n}")
    customer = factory.SubFactory(StripeCustomerFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    payment_method_id = factory.Sequence(lambda n: f"pm_test{n}")
    currency = "EUR"
    amount_held = 5000


TENANT_FACTORIES[Dispute] = _for_org(DisputeFactory)
TENANT_FACTORIES[Payment] = _for_org(PaymentFactory)


class PaymentChargeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PaymentCharge

    payment = factory.SubFactory(PaymentFactory)
    purpose = PaymentCharge.Purpose.DEBT
    stripe_id = factory.Sequence(lambda n: f"pi_charge{n}")
    amount = 100
    currency = "EUR"


class RefundFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Refund

    payment = factory.SubFactory(PaymentFactory, status="captured", amount_captured=1000)
    amount = 100
    currency = "EUR"
    reason = "goodwill"
    stripe_id = factory.Sequence(lambda n: f"re_test{n}")
    status = Refund.Status.SUCCEEDED
    request_key = factory.Sequence(lambda n: f"refund-{n}")


TENANT_FACTORIES[PaymentCharge] = lambda organisation: PaymentChargeFactory(
    payment=PaymentFactory(organisation=organisation)
)
TENANT_FACTORIES[Refund] = lambda organisation: RefundFactory(
    payment=PaymentFactory(organisation=organisation, status="captured", amount_captured=1000)
)


from apps.reservations.models import Reservation, ReservationSettings  # noqa: E402


class ReservationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reservation

    charge_point = factory.SubFactory(ChargePointFactory)
    organisation = factory.LazyAttribute(lambda o: o.charge_point.organisation)
    evse_id = 1
    id_tag = factory.Sequence(lambda n: f"RSV{n:06d}")
    status = "RESERVED"
    expires_at = factory.LazyFunction(lambda: clock.now() + timedelta(minutes=15))


TENANT_FACTORIES[Reservation] = _for_charger(ReservationFactory)


class ReservationSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReservationSettings
        django_get_or_create = ("organisation",)

    organisation = factory.SubFactory(OrganisationFactory)
    default_minutes = 10
    max_minutes = 20


TENANT_FACTORIES[ReservationSettings] = lambda organisation: ReservationSettingsFactory(
    organisation=organisation
)


from datetime import date  # noqa: E402

from apps.billing.models import Invoice, InvoiceLine  # noqa: E402


class InvoiceFactory(factory.django.DjangoModelFactory):
    """An issued invoice with one line (numbers outside any counter: a factory row, not an issue)."""

    class Meta:
        model = Invoice

    organisation = factory.SubFactory(OrganisationFactory)
    customer_account = factory.LazyAttribute(lambda o: CustomerAccountFactory(organisation=o.organisation))
    number = factory.Sequence(lambda n: f"FACT-INV-2026-{n:06d}")
    currency = "EUR"
    net = Decimal("10.00")
    tax = Decimal("1.90")
    gross = Decimal("11.90")
    period_start = date(2026, 10, 1)
    period_end = date(2026, 11, 1)
    line = factory.RelatedFactory(
        "tests.factories.InvoiceLineFactory", factory_related_name="invoice", position=1
    )


class InvoiceLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InvoiceLine

    position = 1
    description = "Charging session"
    net = Decimal("10.00")
    tax = Decimal("1.90")
    gross = Decimal("11.90")
    vat_lines = factory.LazyFunction(lambda: [{"vat": "19", "net": "10.00", "tax": "1.90", "gross": "11.90"}])


TENANT_FACTORIES[Invoice] = _for_org(InvoiceFactory)
# --- smart charging ----------------------------------------------------------------------------------
from apps.smartcharging.models import ChargerConfigurationKey, ChargingLimit, GridEvent, Site  # noqa: E402


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    organisation = factory.SubFactory(OrganisationFactory)
    location = factory.LazyAttribute(lambda o: LocationFactory(organisation=o.organisation))
    max_current_a = Decimal("64")
    phases = 3


class ChargingLimitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargingLimit

    charge_point = factory.SubFactory(ChargePointFactory)
    site = factory.LazyAttribute(
        lambda o: SiteFactory(organisation=o.charge_point.organisation, location=o.charge_point.location)
    )
    evse_id = 1
    purpose = "TxProfile"
    profile_id = 7_300_010
    stack_level = 8
    limit_a = Decimal("16")
    limit = Decimal("16")
    unit = "A"
    status = "accepted"
    sent_at = factory.LazyFunction(clock.now)
    valid_to = factory.LazyAttribute(lambda o: o.sent_at + timedelta(hours=1))


class ChargerConfigurationKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargerConfigurationKey

    charge_point = factory.SubFactory(ChargePointFactory)
    key = "ChargingScheduleAllowedChargingRateUnit"
    value = "Current,Power"
    readonly = True
    reported_at = factory.LazyFunction(clock.now)


class GridEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GridEvent

    organisation = factory.SubFactory(OrganisationFactory)
    reduce_percent = Decimal("20")
    starts_at = factory.LazyFunction(clock.now)
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + timedelta(minutes=30))


TENANT_FACTORIES[Site] = _for_org(SiteFactory)
TENANT_FACTORIES[GridEvent] = _for_org(GridEventFactory)
TENANT_FACTORIES[ChargingLimit] = _for_charger(ChargingLimitFactory)
TENANT_FACTORIES[ChargerConfigurationKey] = _for_charger(ChargerConfigurationKeyFactory)


# --- smart charging: what chargers report, grid integrations ---------------------------------------------
from apps.smartcharging.models import (  # noqa: E402
    EvChargingNeeds,
    ExternalChargingLimit,
    GridIntegration,
    ReportedChargingProfile,
)


class GridIntegrationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GridIntegration

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Grid operator {n}")
    key_prefix = factory.Sequence(lambda n: f"gi{n:010x}")
    key_hash = "hmac-sha256$00$00"


class ExternalChargingLimitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExternalChargingLimit

    charge_point = factory.SubFactory(ChargePointFactory)
    evse_id = 0
    source = "EMS"
    limit_a = Decimal("10")
    limit = Decimal("10")
    unit = "A"
    reported_at = factory.LazyFunction(clock.now)


class ReportedChargingProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReportedChargingProfile

    charge_point = factory.SubFactory(ChargePointFactory)
    evse_id = 1
    profile_id = factory.Sequence(lambda n: n + 1)
    request_id = 1
    source = "CSO"
    purpose = "TxDefaultProfile"
    stack_level = 0
    profile = factory.LazyAttribute(lambda o: {"id": o.profile_id, "stackLevel": 0})
    reported_at = factory.LazyFunction(clock.now)


class EvChargingNeedsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EvChargingNeeds

    charge_point = factory.SubFactory(ChargePointFactory)
    evse_id = 1
    energy_transfer = "AC_three_phase"
    energy_amount_wh = 20000
    departure_at = factory.LazyFunction(lambda: clock.now() + timedelta(hours=4))
    reported_at = factory.LazyFunction(clock.now)


TENANT_FACTORIES[GridIntegration] = _for_org(GridIntegrationFactory)
TENANT_FACTORIES[ExternalChargingLimit] = _for_charger(ExternalChargingLimitFactory)
TENANT_FACTORIES[ReportedChargingProfile] = _for_charger(ReportedChargingProfileFactory)
TENANT_FACTORIES[EvChargingNeeds] = _for_charger(EvChargingNeedsFactory)


# --- operator API ------------------------------------------------------------------------------------
from apps.accounts.models import ApiToken  # noqa: E402


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """A token row whose key nobody knows (services.api_token_create makes usable ones)."""

    class Meta:
        model = ApiToken

    user = factory.SubFactory(StaffUserFactory)
    name = factory.Sequence(lambda n: f"Integration {n}")
    key_hash = factory.Sequence(lambda n: f"{n:064x}")
    prefix = "cpo_unknown_"


TENANT_FACTORIES[ApiToken] = lambda organisation: ApiTokenFactory(
    user=StaffUserFactory(organisation=organisation)
)


# --- console ---------------------------------------------------------------------------------------

from apps.console.models import Alert, AlertChannels, AlertDelivery, StatusInterval  # noqa: E402


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alert

    organisation = factory.SubFactory(OrganisationFactory)
    charge_point = factory.LazyAttribute(lambda o: ChargePointFactory(organisation=o.organisation))
    kind = "faulted"
    subject = "evse 1/1"
    message = "connector faulted"
    opened_at = factory.LazyFunction(clock.now)


class AlertDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlertDelivery

    alert = factory.SubFactory(AlertFactory)
    channel = "webhook"


class AlertChannelsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AlertChannels

    organisation = factory.SubFactory(OrganisationFactory)
    emails = "ops@example.com"
    webhook_url = ""
    webhook_secret = ""


class StatusIntervalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StatusInterval

    charge_point = factory.SubFactory(ChargePointFactory)
    evse_id = 1
    connector_id = 1
    status = "Available"
    started_at = factory.LazyFunction(lambda: clock.now() - timedelta(hours=1))


TENANT_FACTORIES[Alert] = _for_org(AlertFactory)
TENANT_FACTORIES[AlertDelivery] = lambda organisation: AlertDeliveryFactory(
    alert=AlertFactory(organisation=organisation)
)
TENANT_FACTORIES[AlertChannels] = _for_org(AlertChannelsFactory)
TENANT_FACTORIES[StatusInterval] = _for_charger(StatusIntervalFactory)


# --- roaming ----------------------------------------------------------------------------------------

from apps.roaming.models import Party, Push, RemoteCommand, RoamingSession, RoamingToken  # noqa: E402


class PartyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Party

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"eMSP {n}")
    country_code = "NL"
    party_id = factory.Sequence(lambda n: f"E{n % 100:02d}")
    status = "REGISTERED"
    roles = factory.LazyAttribute(
        lambda o: [
            {
                "role": "EMSP",
                "country_code": o.country_code,
                "party_id": o.party_id,
                "business_details": {"name": o.name},
            }
        ]
    )


class RoamingTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoamingToken

    sender = factory.SubFactory(PartyFactory)
    country_code = factory.LazyAttribute(lambda o: o.sender.country_code)
    party_id = factory.LazyAttribute(lambda o: o.sender.party_id)
    uid = factory.Sequence(lambda n: f"04RT{n:08d}")
    type = "RFID"
    contract_id = factory.LazyAttribute(lambda o: f"NL-EMS-C{o.uid}")
    issuer = "Test eMSP"
    valid = True
    whitelist = "ALWAYS"
    last_updated = factory.LazyFunction(clock.now)


class RoamingSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoamingSession

    session = factory.SubFactory(ChargingSessionFactory)
    party = factory.SubFactory(PartyFactory)
    ocpi_id = factory.LazyAttribute(lambda o: str(o.session.pk))
    auth_method = "WHITELIST"
    status = "ACTIVE"


class PushFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Push

    party = factory.SubFactory(PartyFactory)
    module = "sessions"
    method = "PUT"
    url = "http://emsp.example/ocpi/2.2.1/sessions/DE/CPO/1"
    object_key = factory.Sequence(lambda n: f"session:{n}")
    body = factory.LazyFunction(dict)


class RemoteCommandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RemoteCommand

    party = factory.SubFactory(PartyFactory)
    command = "START_SESSION"
    request = factory.LazyFunction(dict)
    response_url = "http://emsp.example/results/1"


TENANT_FACTORIES[Party] = _for_org(PartyFactory)
TENANT_FACTORIES[RoamingToken] = lambda organisation: RoamingTokenFactory(
    sender=PartyFactory(organisation=organisation)
)
TENANT_FACTORIES[RoamingSession] = lambda organisation: RoamingSessionFactory(
    party=PartyFactory(organisation=organisation),
    session=ChargingSessionFactory(charge_point=ChargePointFactory(organisation=organisation)),
)
TENANT_FACTORIES[Push] = lambda organisation: PushFactory(party=PartyFactory(organisation=organisation))
TENANT_FACTORIES[RemoteCommand] = lambda organisation: RemoteCommandFactory(
    party=PartyFactory(organisation=organisation)
)
