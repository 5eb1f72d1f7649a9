"""Charging sessions as chargers report them: idempotency on natural keys, authorisation answers, review."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.charging import metering
from apps.charging.choices import AuthorizationStatus, ReviewReason, SessionStatus
from apps.charging.models import ChargingSession, MeterSample, OrphanStop
from apps.charging.services import idtoken_authorize, meter_values_record, session_start, session_stop
from apps.stations.services import connector_status_record
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    EvseFactory,
    IdTokenFactory,
    OrganisationFactory,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def cp():
    charge_point = ChargePointFactory(identity="CP-S")
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1))
    return charge_point


def start(cp, **overrides):
    kwargs = dict(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag="04a1b2c3",
        meter_start_wh=1000,
        started_at_charger=T0,
        received_at=T0 + timedelta(seconds=1),
        protocol="ocpp1.6",
    )
    kwargs.update(overrides)
    return session_start(**kwargs)


def test_start_is_idempotent_on_the_natural_key(cp):
    IdTokenFactory(uid="04A1B2C3", group_id="FLEET-1")
    first = start(cp)
    again = start(cp, received_at=T0 + timedelta(minutes=5))  # replayed after a reconnect
    assert first.created and not again.created
    assert again.session.pk == first.session.pk
    assert again.session.ocpp16_transaction_id == first.session.ocpp16_transaction_id
    assert again.auth.status == AuthorizationStatus.ACCEPTED  # not ConcurrentTx with itself
    assert first.auth.group_id == "FLEET-1"
    assert ChargingSession.objects.count() == 1


def test_transaction_ids_come_from_a_sequence(cp):
    a = start(cp, id_tag="AAAA0001")
    b = start(cp, id_tag="AAAA0002", started_at_charger=T0 + timedelta(seconds=5))
    assert b.session.ocpp16_transaction_id > a.session.ocpp16_transaction_id > 0


def test_unknown_token_is_recorded_for_review_and_answered_invalid(cp):
    result = start(cp, id_tag="DEADBEEF")
    assert result.auth.status == AuthorizationStatus.INVALID
    assert result.session.review_reason == ReviewReason.UNKNOWN_TOKEN
    assert result.session.status == SessionStatus.ACTIVE


def test_concurrent_tx_when_the_token_already_charges_elsewhere(cp):
    IdTokenFactory(uid="04A1B2C3")
    start(cp)
    other = ChargePointFactory(identity="CP-OTHER", organisation=cp.organisation)
    assert idtoken_authorize(uid="04a1b2c3", charge_point=other).status == AuthorizationStatus.CONCURRENT_TX
    second = start(other)
    assert second.auth.status == AuthorizationStatus.CONCURRENT_TX


def test_token_statuses(cp):
    IdTokenFactory(uid="0000000A", status="Blocked")
    IdTokenFactory(uid="0000000B", expires_at=T0 - timedelta(days=1))
    elsewhere = IdTokenFactory(uid="0000000C")
    elsewhere.valid_at.add(OrganisationFactory(slug="elsewhere"))
    assert idtoken_authorize(uid="0000000a", charge_point=cp).status == "Blocked"
    assert idtoken_authorize(uid="0000000B", charge_point=cp, at=T0).status == "Expired"
    assert idtoken_authorize(uid="0000000C", charge_point=cp).status == "Invalid"
    assert idtoken_authorize(uid="FFFFFFFF", charge_point=cp).status == "Invalid"


def test_future_timestamps_are_clamped_and_flagged(cp):
    result = start(cp, started_at_charger=T0 + timedelta(days=2), received_at=T0)
    assert result.session.started_at == T0
    assert result.session.started_at_charger == T0 + timedelta(days=2)
    assert result.session.timestamps_clamped


def test_stop_is_idempotent_and_records_energy(cp):
    session = start(cp).session
    samples = [metering.normalise(sampled_at=T0 + timedelta(minutes=30), value="12.5", unit="kWh")]
    kwargs = dict(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=13500,
        stopped_at_charger=T0 + timedelta(hours=1),
        received_at=T0 + timedelta(hours=1),
        reason="EVDisconnected",
        samples=samples,
    )
    first = session_stop(**kwargs)
    second = session_stop(**{**kwargs, "received_at": T0 + timedelta(hours=2)})
    assert first.session.pk == second.session.pk
    session.refresh_from_db()
    assert session.status == SessionStatus.COMPLETED and session.energy_wh == 12500
    assert session.stop_received_at == T0 + timedelta(hours=1)  # the replay changed nothing
    assert MeterSample.objects.filter(session=session).count() == 1
    assert MeterSample.objects.get(session=session).value == Decimal("12500")


def test_stop_for_unknown_transaction_is_kept_for_review(cp):
    result = session_stop(
        charge_point_id=cp.pk,
        transaction_ref="999999",
        meter_stop_wh=5,
        stopped_at_charger=T0,
        received_at=T0,
        raw={"transactionId": 999999},
    )
    assert result.orphan and result.session is None
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref="999999",
        meter_stop_wh=5,
        stopped_at_charger=T0,
        received_at=T0,
        raw={"transactionId": 999999},
    )
    assert OrphanStop.objects.filter(charge_point=cp, transaction_ref="999999").count() == 1


def test_meter_values_deduplicated(cp):
    session = start(cp).session
    samples = [
        metering.normalise(
            sampled_at=T0 + timedelta(minutes=1), value="1.5", unit="kW", measurand="Power.Active.Import"
        ),
        metering.normalise(
            sampled_at=T0 + timedelta(minutes=1), value="16", measurand="Current.Import", phase="L1"
        ),
        metering.normalise(
            sampled_at=T0 + timedelta(minutes=1), value="16.1", measurand="Current.Import", phase="L2"
        ),
    ]
    for _ in range(2):
        meter_values_record(
            charge_point_id=cp.pk,
            evse_id=1,
            transaction_ref=session.transaction_ref,
            samples=samples,
            received_at=T0,
        )
    rows = MeterSample.objects.filter(session=session).order_by("measurand", "phase")
    assert [(r.measurand, r.phase, r.unit, r.value) for r in rows] == [
        ("Current.Import", "L1", "A", Decimal("16")),
        ("Current.Import", "L2", "A", Decimal("16.1")),
        ("Power.Active.Import", "", "W", Decimal("1500")),
    ]


def test_status_ordering_within_a_boot(cp):
    connector_status_record(
        charge_point_id=cp.pk,
        evse_id=1,
        connector_id=1,
        status="Charging",
        charger_at=T0 + timedelta(minutes=10),
        received_at=T0 + timedelta(minutes=10),
    )
    stale = connector_status_record(
        charge_point_id=cp.pk,
        evse_id=1,
        connector_id=1,
        status="Preparing",
        charger_at=T0 + timedelta(minutes=5),
        received_at=T0 + timedelta(minutes=11),
    )
    assert stale is False
    connector = cp.evses.get(evse_id=1).connectors.get(connector_id=1)
    assert connector.status == "Charging"
    # After a reboot the charger's clock may have jumped back: its reports supersede the old ones.
    cp.last_boot_at = T0 + timedelta(minutes=12)
    cp.save()
    assert connector_status_record(
        charge_point_id=cp.pk,
        evse_id=1,
        connector_id=1,
        status="Available",
        charger_at=T0 + timedelta(minutes=1),
        received_at=T0 + timedelta(minutes=13),
    )
    connector.refresh_from_db()
    assert connector.status == "Available"


def test_status_for_unknown_connector_registers_it_and_connector_0_is_the_charger(cp):
    connector_status_record(
        charge_point_id=cp.pk, evse_id=2, connector_id=1, status="Available", received_at=T0
    )
    assert cp.evses.get(evse_id=2).connectors.get(connector_id=1).status == "Available"
    connector_status_record(
        charge_point_id=cp.pk,
        evse_id=0,
        connector_id=1,
        status="Faulted",
        received_at=T0,
        error_code="GroundFailure",
    )
    cp.refresh_from_db()
    assert cp.status == "Faulted" and cp.status_error_code == "GroundFailure"
    assert not cp.evses.filter(evse_id=0).exists()


def test_signed_meter_data_kept_verbatim(cp):
    sample = metering.normalise(sampled_at=T0, value="OCMF|{...}|{...}", signed=True)
    assert sample.value is None and sample.signed_data == "OCMF|{...}|{...}"
    with pytest.raises(ValueError):
        metering.normalise(sampled_at=T0, value="NaN")
