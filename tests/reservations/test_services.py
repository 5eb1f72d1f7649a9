"""Reservations (apps.reservations.services), driven as the API and the gateway drive them: create (the
charger's answer to ReserveNow decides), no double booking, the holder's start consumes it, others are
refused (at the API and at the charger), expiry by the beat and by the charger, cancel."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from apps.charging import driver_services
from apps.charging.choices import AuthorizationStatus
from apps.charging.services import idtoken_authorize, session_start
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.ocpp_gateway.services import command_record_outcome
from apps.reservations import services
from apps.reservations.choices import ReservationStatus
from apps.reservations.models import Reservation
from apps.stations.choices import ConnectorStatus, OcppProtocol
from apps.stations.models import Connector
from apps.stations.services import connector_status_record
from cpo import clock
from cpo.exceptions import Conflict, ValidationFailed
from tests.factories import (
    ChargePointFactory,
    ChargerConfigurationKeyFactory,
    ConnectorFactory,
    DeviceVariableFactory,
    DriverFactory,
    EvseFactory,
    ReservationSettingsFactory,
)

R = ReservationStatus


def _online(identity: str) -> None:
    sync_redis().hset(
        presence.PREFIX + identity,
        mapping={
            "channel": "specific.test!nobody",
            "epoch": 1,
            "server": "test",
            "connected_at": time.time(),
            "last_frame_at": time.time(),
        },
    )
    sync_redis().expire(presence.PREFIX + identity, 60)


@pytest.fixture(autouse=True)
def clean_presence():
    r = sync_redis()
    for key in r.scan_iter(match="cpo:ocpp:*", count=1000):
        r.delete(key)
    yield


def _charger(protocol: str = OcppProtocol.OCPP16, online: bool = True):
    cp = ChargePointFactory(ocpp_protocol=protocol)
    for n in (1, 2):
        ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=n), status=ConnectorStatus.AVAILABLE)
    if online:
        _online(cp.identity)
    return cp


def _reserve(driver, cp, evse_id: int = 1, key: str = "r-1", **kwargs):
    return services.reservation_create(
        driver=driver, charge_point_id=cp.pk, evse_id=evse_id, idempotency_key=key, **kwargs
    )


def _answer(reservation, status: str = "Accepted"):
    command_record_outcome(
        command_id=reservation.reserve_command_id, status=CommandStatus.ANSWERED, response={"status": status}
    )
    reservation.refresh_from_db()
    return reservation


@pytest.mark.django_db
class TestCreate:
    def test_sends_reserve_now_with_our_id_and_the_drivers_token_and_accepted_reserves(self):
        driver, cp = DriverFactory(), _charger()
        now = clock.now()
        reservation, created = _reserve(driver, cp, now=now)
        assert created and reservation.status == R.PENDING
        command = OcppCommand.objects.get(pk=reservation.reserve_command_id)
        token = driver_services.driver_app_token(driver=driver)
        assert command.action == "ReserveNow"
        assert command.payload["reservationId"] == reservation.pk
        assert command.payload["connectorId"] == 1 and command.payload["idTag"] == token.uid
        assert reservation.expires_at == now + timedelta(minutes=15)
        assert _answer(reservation).status == R.RESERVED

    def test_201_payload_names_the_evse_and_the_token(self):
        driver, cp = DriverFactory(), _charger(OcppProtocol.OCPP201)
        reservation, _ = _reserve(driver, cp, evse_id=2, minutes=30)
        payload = OcppCommand.objects.get(pk=reservation.reserve_command_id).payload
        assert payload["id"] == reservation.pk and payload["evseId"] == 2
        assert payload["idToken"] == {"idToken": reservation.id_tag, "type": "Central"}

    @pytest.mark.parametrize(
        "answer,code",
        [
            ("Occupied", "connector_occupied"),
            ("Faulted", "connector_faulted"),
            ("Unavailable", "connector_unavailable"),
            ("Rejected", "reservation_rejected"),
        ],
    )
    def test_the_chargers_refusal_fails_it_with_its_code(self, answer, code):
        reservation, _ = _reserve(DriverFactory(), _charger())
        reservation = _answer(reservation, answer)
        assert reservation.status == R.FAILED and reservation.failure_code == code

    def test_offline_charger_fails_at_once(self):
        reservation, _ = _reserve(DriverFactory(), _charger(online=False))
        assert reservation.status == R.FAILED and reservation.failure_code == "charger_offline"

    def test_same_key_returns_the_same_reservation(self):
        driver, cp = DriverFactory(), _charger()
        first, _ = _reserve(driver, cp)
        again, created = _reserve(driver, cp)
        assert not created and again.pk == first.pk
        assert OcppCommand.objects.filter(action="ReserveNow").count() == 1

    def test_no_double_booking_of_one_connector(self):
        cp = _charger()
        _reserve(DriverFactory(), cp)
        with pytest.raises(Conflict) as exc:
            _reserve(DriverFactory(), cp, key="other")
        assert exc.value.code == "connector_reserved"
        assert Reservation.objects.count() == 1

    def test_one_active_reservation_per_driver(self):
        driver, cp = DriverFactory(), _charger()
        _reserve(driver, cp)
        with pytest.raises(Conflict) as exc:
            _reserve(driver, cp, evse_id=2, key="second")
        assert exc.value.code == "reservation_exists"

    def test_more_than_the_maximum_is_refused(self):
        with pytest.raises(ValidationFailed):
            _reserve(DriverFactory(), _charger(), minutes=31)
        assert not Reservation.objects.exists()

    def test_charging_connector_is_refused_without_asking(self):
        cp = _charger()
        cp.evses.get(evse_id=1).connectors.update(status=ConnectorStatus.CHARGING)
        with pytest.raises(Conflict) as exc:
            _reserve(DriverFactory(), cp)
        assert exc.value.code == "connector_occupied" and not OcppCommand.objects.exists()


@pytest.mark.django_db
class TestHolderAndOthers:
    def _reserved(self, protocol: str = OcppProtocol.OCPP16):
        holder, cp = DriverFactory(), _charger(protocol)
        reservation = _answer(_reserve(holder, cp)[0])
        cp.evses.get(evse_id=1).connectors.update(status=ConnectorStatus.RESERVED)
        return holder, cp, reservation

    def test_the_holder_may_start_on_the_reserved_connector(self):
        holder, cp, _ = self._reserved()
        session, created = driver_services.driver_session_start(
            driver=holder, charge_point_id=cp.pk, evse_id=1, idempotency_key="s"
        )
        assert created and session.status == "STARTING"

    def test_another_driver_is_refused_at_the_api(self):
        _, cp, _ = self._reserved()
        with pytest.raises(Conflict) as exc:
            driver_services.driver_session_start(
                driver=DriverFactory(), charge_point_id=cp.pk, evse_id=1, idempotency_key="s"
            )
        assert exc.value.code == "connector_reserved"

    def test_another_token_is_invalid_at_the_charger_for_the_reserved_evse_only(self):
        _, cp, _ = self._reserved()
        other = driver_services.driver_app_token(driver=DriverFactory())
        assert (
            idtoken_authorize(uid=other.uid, charge_point=cp, evse_id=1).status == AuthorizationStatus.INVALID
        )
        assert (
            idtoken_authorize(uid=other.uid, charge_point=cp, evse_id=2).status
            == AuthorizationStatus.ACCEPTED
        )

    def test_the_holders_start_consumes_it_16_by_reservation_id(self):
        holder, cp, reservation = self._reserved()
        token = driver_services.driver_app_token(driver=holder)
        now = clock.now()
        result = session_start(
            charge_point_id=cp.pk,
            evse_id=1,
            id_tag=token.uid,
            meter_start_wh=0,
            started_at_charger=now,
            received_at=now,
            protocol=OcppProtocol.OCPP16,
            reservation_id=reservation.pk,
        )
        assert result.auth.status == AuthorizationStatus.ACCEPTED
        reservation.refresh_from_db()
        assert reservation.status == R.CONSUMED and reservation.charging_session_id == result.session.pk

    def test_another_tokens_start_is_invalid_and_does_not_consume_it(self):
        _, cp, reservation = self._reserved()
        other = driver_services.driver_app_token(driver=DriverFactory())
        now = clock.now()
        result = session_start(
            charge_point_id=cp.pk,
            evse_id=1,
            id_tag=other.uid,
            meter_start_wh=0,
            started_at_charger=now,
            received_at=now,
            protocol=OcppProtocol.OCPP16,
        )
        assert result.auth.status == AuthorizationStatus.INVALID
        reservation.refresh_from_db()
        assert reservation.status == R.RESERVED


@pytest.mark.django_db
class TestEnd:
    def test_beat_expires_it_at_its_time_not_before(self):
        reservation = _answer(_reserve(DriverFactory(), _charger())[0])
        services.reservations_expire(now=reservation.expires_at - timedelta(seconds=1))
        reservation.refresh_from_db()
        assert reservation.status == R.RESERVED
        assert services.reservations_expire(now=reservation.expires_at) == {"expired": 1, "failed": 0}
        reservation.refresh_from_db()
        assert reservation.status == R.EXPIRED and reservation.ended_at == reservation.expires_at

    def test_16_status_notification_available_after_its_time_expires_it(self):
        cp = _charger()
        reservation = _answer(_reserve(DriverFactory(), cp)[0])
        connector_status_record(
            charge_point_id=cp.pk,
            evse_id=1,
            connector_id=1,
            status=ConnectorStatus.AVAILABLE,
            error_code="NoError",
            received_at=clock.now(),
        )
        reservation.refresh_from_db()
        assert reservation.status == R.RESERVED  # Available well before its time is not its end
        connector_status_record(
            charge_point_id=cp.pk,
            evse_id=1,
            connector_id=1,
            status=ConnectorStatus.AVAILABLE,
            error_code="NoError",
            received_at=reservation.expires_at,
            charger_at=reservation.expires_at,
        )
        reservation.refresh_from_db()
        assert reservation.status == R.EXPIRED

    @pytest.mark.parametrize("update,status", [("Expired", R.EXPIRED), ("Removed", R.CANCELLED)])
    def test_201_reservation_status_update(self, update, status):
        cp = _charger(OcppProtocol.OCPP201)
        reservation = _answer(_reserve(DriverFactory(), cp)[0])
        assert services.reservation_status_update(
            charge_point_id=cp.pk, reservation_id=reservation.pk, status=update, at=clock.now()
        )
        reservation.refresh_from_db()
        assert reservation.status == status

    def test_cancel_sends_cancel_reservation(self):
        reservation = _answer(_reserve(DriverFactory(), _charger())[0])
        reservation = services.reservation_cancel(reservation=reservation)
        assert reservation.status == R.CANCELLED
        command = OcppCommand.objects.get(pk=reservation.cancel_command_id)
        assert command.action == "CancelReservation" and command.payload == {"reservationId": reservation.pk}

    def test_cancelling_an_expired_one_is_a_no_op(self):
        reservation = _answer(_reserve(DriverFactory(), _charger())[0])
        services.reservations_expire(now=reservation.expires_at)
        reservation.refresh_from_db()
        # The beat told the charger (one CancelReservation); the driver's cancel afterwards sends nothing.
        assert OcppCommand.objects.filter(action="CancelReservation").count() == 1
        again = services.reservation_cancel(reservation=reservation)
        assert again.status == R.EXPIRED and again.cancel_command_id == reservation.cancel_command_id
        assert OcppCommand.objects.filter(action="CancelReservation").count() == 1


@pytest.mark.django_db
class TestWait:
    def test_no_answer_yet_leaves_it_pending_and_the_later_answer_decides(self):
        reservation, _ = _reserve(DriverFactory(), _charger())
        # Nobody holds the charger's channel here: the wait ends without an outcome.
        assert services.reservation_wait(reservation=reservation, timeout_s=1).status == R.PENDING
        assert _answer(reservation).status == R.RESERVED

    def test_an_answer_recorded_before_the_wait_is_read_at_once(self):
        reservation, _ = _reserve(DriverFactory(), _charger())
        _answer(reservation, "Occupied")
        reservation = services.reservation_wait(reservation=reservation)
        assert reservation.status == R.FAILED and reservation.failure_code == "connector_occupied"


def _any_connector_supported(cp) -> None:
    """What the charger told us: 1.6 GetConfiguration, 2.0.1 device model."""
    if cp.ocpp_protocol == OcppProtocol.OCPP16:
        ChargerConfigurationKeyFactory(charge_point=cp, key="ReserveConnectorZeroSupported", value="true")
    else:
        DeviceVariableFactory(
            charge_point=cp, component="ReservationCtrlr", variable="NonEvseSpecific", value="true"
        )


@pytest.mark.django_db
class TestHoldLength:
    def test_the_organisations_default_and_longest_hold(self):
        cp = _charger()
        ReservationSettingsFactory(organisation=cp.organisation, default_minutes=10, max_minutes=20)
        now = clock.now()
        reservation, _ = _reserve(DriverFactory(), cp, now=now)
        assert reservation.expires_at == now + timedelta(minutes=10)
        with pytest.raises(ValidationFailed) as exc:
            _reserve(DriverFactory(), cp, evse_id=2, key="long", minutes=21)
        assert exc.value.fields == {"minutes": ["Out of range."]}
        assert Reservation.objects.count() == 1

    def test_without_settings_15_by_default_and_30_at_most(self, settings):
        settings.CPO_RESERVATION_MAX_MIN = 45  # the operator's setting never goes past 30
        cp = _charger()
        now = clock.now()
        assert services.hold_until(organisation_id=cp.organisation_id, now=now) == now + timedelta(minutes=15)
        assert services.hold_until(
            organisation_id=cp.organisation_id, now=now, minutes=30
        ) == now + timedelta(minutes=30)
        with pytest.raises(ValidationFailed):
            services.hold_until(organisation_id=cp.organisation_id, now=now, minutes=31)

    def test_the_driver_may_ask_for_less_by_expires_at(self):
        cp = _charger()
        now = clock.now().replace(microsecond=0)
        reservation, _ = _reserve(DriverFactory(), cp, now=now, expires_at=now + timedelta(minutes=5))
        assert reservation.expires_at == now + timedelta(minutes=5)
        payload = OcppCommand.objects.get(pk=reservation.reserve_command_id).payload
        assert payload["expiryDate"] == (now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")

    @pytest.mark.parametrize(
        "kwargs,field",
        [
            ({"expires_at_in": timedelta(minutes=31)}, "expires_at"),
            ({"expires_at_in": timedelta(seconds=30)}, "expires_at"),
            ({"expires_at_in": -timedelta(minutes=1)}, "expires_at"),
            ({"expires_at_in": timedelta(minutes=5), "minutes": 5}, "expires_at"),
        ],
    )
    def test_bad_lengths_are_refused_before_the_charger_is_asked(self, kwargs, field):
        now = clock.now()
        kwargs = dict(kwargs)
        kwargs["expires_at"] = now + kwargs.pop("expires_at_in")
        with pytest.raises(ValidationFailed) as exc:
            _reserve(DriverFactory(), _charger(), now=now, **kwargs)
        assert field in exc.value.fields
        assert not Reservation.objects.exists() and not OcppCommand.objects.exists()


@pytest.mark.django_db
class TestAnyConnector:
    def test_refused_where_the_charger_has_not_said_it_supports_it(self):
        cp = _charger()
        with pytest.raises(Conflict) as exc:
            _reserve(DriverFactory(), cp, evse_id=None)
        assert exc.value.code == "any_connector_unsupported"
        assert not Reservation.objects.exists() and not OcppCommand.objects.exists()

    def test_16_sends_connector_0(self):
        cp = _charger()
        _any_connector_supported(cp)
        reservation, _ = _reserve(DriverFactory(), cp, evse_id=None)
        assert reservation.evse_id == 0 and reservation.any_connector
        payload = OcppCommand.objects.get(pk=reservation.reserve_command_id).payload
        assert payload["connectorId"] == 0 and payload["reservationId"] == reservation.pk

    def test_201_sends_no_evse_id(self):
        cp = _charger(OcppProtocol.OCPP201)
        _any_connector_supported(cp)
        reservation, _ = _reserve(DriverFactory(), cp, evse_id=None)
        payload = OcppCommand.objects.get(pk=reservation.reserve_command_id).payload
        assert "evseId" not in payload and payload["id"] == reservation.pk

    def test_no_free_connector(self):
        cp = _charger()
        _any_connector_supported(cp)
        Connector.objects.filter(evse__charge_point=cp).update(status=ConnectorStatus.CHARGING)
        with pytest.raises(Conflict) as exc:
            _reserve(DriverFactory(), cp, evse_id=None)
        assert exc.value.code == "no_free_connector" and not OcppCommand.objects.exists()

    def _held(self, protocol=OcppProtocol.OCPP16):
        holder, cp = DriverFactory(), _charger(protocol)
        _any_connector_supported(cp)
        reservation = _answer(_reserve(holder, cp, evse_id=None)[0])
        return holder, cp, reservation

    def test_others_may_take_all_but_the_last_free_connector(self):
        holder, cp, reservation = self._held()
        first, _ = driver_services.driver_session_start(
            driver=DriverFactory(), charge_point_id=cp.pk, evse_id=1, idempotency_key="a"
        )
        assert first.status == "STARTING"
        cp.evses.get(evse_id=1).connectors.update(status=ConnectorStatus.CHARGING)
        with pytest.raises(Conflict) as exc:
            driver_services.driver_session_start(
                driver=DriverFactory(), charge_point_id=cp.pk, evse_id=2, idempotency_key="b"
            )
        assert exc.value.code == "connector_reserved"
        other = driver_services.driver_app_token(driver=DriverFactory())
        assert (
            idtoken_authorize(uid=other.uid, charge_point=cp, evse_id=2).status == AuthorizationStatus.INVALID
        )
        # The holder may start at the last one, and their transaction there consumes the reservation.
        token = driver_services.driver_app_token(driver=holder)
        assert (
            idtoken_authorize(uid=token.uid, charge_point=cp, evse_id=2).status
            == AuthorizationStatus.ACCEPTED
        )
        now = clock.now()
        result = session_start(
            charge_point_id=cp.pk,
            evse_id=2,
            id_tag=token.uid,
            meter_start_wh=0,
            started_at_charger=now,
            received_at=now,
            protocol=OcppProtocol.OCPP16,
        )
        reservation.refresh_from_db()
        assert reservation.status == R.CONSUMED and reservation.charging_session_id == result.session.pk

    def test_a_connector_reservation_may_not_take_the_last_free_connector(self):
        _, cp, _ = self._held()
        _reserve(DriverFactory(), cp, evse_id=1, key="one")
        with pytest.raises(Conflict) as exc:
            _reserve(DriverFactory(), cp, evse_id=2, key="two")
        assert exc.value.code == "connector_reserved"
        assert Reservation.objects.filter(status__in=("PENDING", "RESERVED")).count() == 2

    def test_a_second_reservation_for_any_connector_is_refused(self):
        _, cp, _ = self._held()
        with pytest.raises(Conflict) as exc:
            _reserve(DriverFactory(), cp, evse_id=None, key="again")
        assert exc.value.code == "no_free_connector"
