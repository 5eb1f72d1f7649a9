"""The driver session state machine (apps.charging.driver_services), driven as the API and the charger
side drive it: start, the command's outcome, the charger's transaction, stop, the sweep."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection

from apps.accounts.choices import IdTokenStatus, IdTokenType
from apps.charging import driver_services
from apps.charging.choices import DriverSessionFailure, DriverSessionSource, DriverSessionStatus
from apps.charging.models import DriverSession, DriverSessionTransition
from apps.charging.services import session_start, session_stop, transaction_event_record
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.ocpp_gateway.services import command_record_outcome
from apps.stations.choices import ConnectorStatus, OcppProtocol
from cpo import clock
from cpo.exceptions import Conflict, NotFound, ValidationFailed
from tests.factories import ChargePointFactory, ConnectorFactory, DriverFactory, EvseFactory, IdTokenFactory

S = DriverSessionStatus


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


def _charger(protocol: str = OcppProtocol.OCPP16, online: bool = True, evses: int = 2):
    cp = ChargePointFactory(ocpp_protocol=protocol)
    for n in range(1, evses + 1):
        ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=n), status=ConnectorStatus.AVAILABLE)
    if online:
        _online(cp.identity)
    return cp


def _start(driver, cp, evse_id: int = 1, key: str = "key-1"):
    return driver_services.driver_session_start(
        driver=driver, charge_point_id=cp.pk, evse_id=evse_id, idempotency_key=key
    )


def _steps(session) -> list[tuple[str, str, str]]:
    return list(
        DriverSessionTransition.objects.filter(session=session)
        .order_by("at", "pk")
        .values_list("from_status", "to_status", "cause")
    )


@pytest.mark.django_db
class TestStart:
    def test_start_sends_the_16_remote_start_and_is_starting(self):
        driver, cp = DriverFactory(), _charger()
        session, created = _start(driver, cp)
        assert created and session.status == S.STARTING
        command = OcppCommand.objects.get(pk=session.start_command_id)
        token = driver_services.driver_app_token(driver=driver)
        assert command.action == "RemoteStartTransaction"
        assert command.payload == {"connectorId": 1, "idTag": token.uid}
        assert token.type == IdTokenType.CENTRAL and len(token.uid) <= 20
        assert _steps(session) == [
            ("", S.INITIATED, "requested"),
            (S.INITIATED, S.AUTHORISING, "authorise"),
            (S.AUTHORISING, S.STARTING, "start_sent"),
        ]
        assert session.start_deadline > clock.now()

    def test_201_charger_gets_request_start_with_the_command_id_as_remote_start_id(self):
        driver, cp = DriverFactory(), _charger(OcppProtocol.OCPP201)
        session, _ = _start(driver, cp, evse_id=2)
        command = OcppCommand.objects.get(pk=session.start_command_id)
        assert command.action == "RequestStartTransaction"
        assert command.payload["evseId"] == 2 and command.payload["remoteStartId"] == command.pk
        assert command.payload["idToken"]["type"] == "Central"

    def test_offline_charger_fails_at_once(self):
        driver, cp = DriverFactory(), _charger(online=False)
        session, created = _start(driver, cp)
        assert created and session.status == S.FAILED
        assert session.failure_reason == DriverSessionFailure.CHARGER_OFFLINE
        assert OcppCommand.objects.get(pk=session.start_command_id).status == CommandStatus.CHARGER_OFFLINE

    def test_same_key_returns_the_same_session(self):
        driver, cp = DriverFactory(), _charger()
        first, created = _start(driver, cp)
        again, created_again = _start(driver, cp)
        assert created and not created_again and again.pk == first.pk
        assert DriverSession.objects.count() == 1 and OcppCommand.objects.count() == 1

    def test_same_key_other_connector_is_refused(self):
        driver, cp = DriverFactory(), _charger()
        _start(driver, cp, evse_id=1)
        with pytest.raises(Conflict) as exc:
            _start(driver, cp, evse_id=2)
        assert exc.value.code == "idempotency_key_reused"
        assert DriverSession.objects.count() == 1

    def test_keys_are_per_driver(self):
        cp = _charger()
        a, _ = _start(DriverFactory(), cp, evse_id=1, key="same")
        b, created = _start(DriverFactory(), cp, evse_id=2, key="same")
        assert created and a.pk != b.pk

    def test_missing_key_is_refused(self):
        with pytest.raises(ValidationFailed) as exc:
            _start(DriverFactory(), _charger(), key="")
        assert exc.value.code == "idempotency_key_required"
        assert not DriverSession.objects.exists()

    @pytest.mark.parametrize(
        "status,code",
        [
            (ConnectorStatus.FAULTED, "connector_unavailable"),
            (ConnectorStatus.CHARGING, "connector_occupied"),
            (ConnectorStatus.RESERVED, "connector_reserved"),
        ],
    )
    def test_busy_or_broken_connector_is_refused(self, status, code):
        cp = _charger()
        cp.evses.get(evse_id=1).connectors.update(status=status)
        with pytest.raises(Conflict) as exc:
            _start(DriverFactory(), cp)
        assert exc.value.code == code
        assert not DriverSession.objects.exists() and not OcppCommand.objects.exists()

    def test_201_plugged_in_first_may_still_be_started(self):
        """A 2.0.1 connector says Occupied once a car is plugged in, and may run an unauthorised
        transaction."""
        cp = _charger(OcppProtocol.OCPP201)
        cp.evses.get(evse_id=1).connectors.update(status=ConnectorStatus.OCCUPIED)
        now = clock.now()
        transaction_event_record(
            charge_point_id=cp.pk,
            transaction_ref="plug-1",
            seq_no=0,
            event_type="Started",
            trigger_reason="CablePluggedIn",
            timestamp=now,
            received_at=now,
            evse_id=1,
        )
        session, created = _start(DriverFactory(), cp)
        assert created and session.status == S.STARTING

    def test_16_occupied_stays_refused(self):
        cp = _charger()
        cp.evses.get(evse_id=1).connectors.update(status=ConnectorStatus.OCCUPIED)
        with pytest.raises(Conflict):
            _start(DriverFactory(), cp)

    def test_a_closed_account_cannot_start(self):
        from cpo.exceptions import PermissionDenied

        driver = DriverFactory()
        driver.is_active = False
        driver.save()
        with pytest.raises(PermissionDenied) as exc:
            _start(driver, _charger())
        assert exc.value.code == "account_closed" and not DriverSession.objects.exists()

    def test_a_second_start_on_a_starting_connector_is_refused(self):
        cp = _charger()
        _start(DriverFactory(), cp)
        with pytest.raises(Conflict) as exc:
            _start(DriverFactory(), cp, key="other")
        assert exc.value.code == "connector_occupied"

    def test_unknown_charger_or_connector(self):
        cp = _charger()
        with pytest.raises(NotFound) as exc:
            driver_services.driver_session_start(
                driver=DriverFactory(), charge_point_id=999999, evse_id=1, idempotency_key="k"
            )
        assert exc.value.code == "charger_not_found"
        with pytest.raises(NotFound) as exc:
            _start(DriverFactory(), cp, evse_id=9)
        assert exc.value.code == "connector_not_found"

    def test_unpublished_location_is_not_found(self):
        cp = _charger()
        cp.location.is_published = False
        cp.location.save()
        with pytest.raises(NotFound):
            _start(DriverFactory(), cp)

    def test_blocked_app_token_fails_not_authorised(self):
        driver, cp = DriverFactory(), _charger()
        token = driver_services.driver_app_token(driver=driver)
        token.status = IdTokenStatus.BLOCKED
        token.save()
        session, _ = _start(driver, cp)
        assert session.status == S.FAILED and session.failure_reason == DriverSessionFailure.NOT_AUTHORISED
        assert not OcppCommand.objects.exists()


@pytest.mark.django_db
class TestCommandOutcome:
    @pytest.mark.parametrize(
        "status,response,failure",
        [
            (CommandStatus.ANSWERED, {"status": "Rejected"}, DriverSessionFailure.CHARGER_REJECTED),
            (CommandStatus.CALL_ERROR, None, DriverSessionFailure.CHARGER_REJECTED),
            (CommandStatus.TIMEOUT, None, DriverSessionFailure.START_TIMEOUT),
            (CommandStatus.CHARGER_DISCONNECTED, None, DriverSessionFailure.CHARGER_OFFLINE),
        ],
    )
    def test_a_start_the_charger_does_not_take_fails(self, status, response, failure):
        session, _ = _start(DriverFactory(), _charger())
        command_record_outcome(command_id=session.start_command_id, status=status, response=response)
        session.refresh_from_db()
        assert session.status == S.FAILED and session.failure_reason == failure

    def test_accepted_keeps_it_starting(self):
        session, _ = _start(DriverFactory(), _charger())
        command_record_outcome(
            command_id=session.start_command_id,
            status=CommandStatus.ANSWERED,
            response={"status": "Accepted"},
        )
        session.refresh_from_db()
        assert session.status == S.STARTING


def _start_16(cp, session, evse_id: int = 1, at=None):
    at = at or clock.now()
    return session_start(
        charge_point_id=cp.pk,
        evse_id=evse_id,
        id_tag=session.id_tag,
        meter_start_wh=1000,
        started_at_charger=at,
        received_at=at,
        protocol=OcppProtocol.OCPP16,
    ).session


@pytest.mark.django_db
class TestChargerSide:
    def test_16_start_transaction_makes_it_active_and_stop_completes_it(self):
        driver, cp = DriverFactory(), _charger()
        session, _ = _start(driver, cp)
        charging = _start_16(cp, session)
        session.refresh_from_db()
        assert session.status == S.ACTIVE and session.charging_session == charging
        session = driver_services.driver_session_stop(session=session)
        assert session.status == S.STOPPING
        stop = OcppCommand.objects.get(pk=session.stop_command_id)
        assert stop.action == "RemoteStopTransaction"
        assert stop.payload == {"transactionId": charging.ocpp16_transaction_id}
        session_stop(
            charge_point_id=cp.pk,
            transaction_ref=charging.transaction_ref,
            meter_stop_wh=5000,
            stopped_at_charger=clock.now(),
            received_at=clock.now(),
            reason="Remote",
        )
        session.refresh_from_db()
        assert session.status == S.COMPLETED and session.completed_at is not None
        assert [s[2] for s in _steps(session)][-3:] == ["charger_started", "stop_sent", "stopped_from_app"]

    def test_stop_twice_sends_one_command(self):
        driver, cp = DriverFactory(), _charger()
        session, _ = _start(driver, cp)
        _start_16(cp, session)
        driver_services.driver_session_stop(session=session)
        driver_services.driver_session_stop(session=session)
        assert OcppCommand.objects.filter(action="RemoteStopTransaction").count() == 1

    def test_refused_stop_goes_back_to_active(self):
        driver, cp = DriverFactory(), _charger()
        session, _ = _start(driver, cp)
        _start_16(cp, session)
        session = driver_services.driver_session_stop(session=session)
        command_record_outcome(
            command_id=session.stop_command_id,
            status=CommandStatus.ANSWERED,
            response={"status": "Rejected"},
        )
        session.refresh_from_db()
        assert session.status == S.ACTIVE and _steps(session)[-1][2] == "stop_refused"

    def test_stop_while_starting_or_failed_is_a_conflict(self):
        driver, cp = DriverFactory(), _charger()
        session, _ = _start(driver, cp)
        with pytest.raises(Conflict) as exc:
            driver_services.driver_session_stop(session=session)
        assert exc.value.code == "session_starting"
        failed, _ = _start(DriverFactory(), _charger(online=False))
        with pytest.raises(Conflict) as exc:
            driver_services.driver_session_stop(session=failed)
        assert exc.value.code == "session_failed"

    def test_stop_when_the_charger_went_offline_keeps_it_active(self):
        driver, cp = DriverFactory(), _charger()
        session, _ = _start(driver, cp)
        _start_16(cp, session)
        sync_redis().delete(presence.PREFIX + cp.identity)
        with pytest.raises(Conflict) as exc:
            driver_services.driver_session_stop(session=session)
        assert exc.value.code == "charger_offline"
        session.refresh_from_db()
        assert session.status == S.ACTIVE

    def test_201_transaction_event_links_by_remote_start_id(self):
        driver, cp = DriverFactory(), _charger(OcppProtocol.OCPP201)
        session, _ = _start(driver, cp)
        now = clock.now()
        # Plugged in first (no token yet), then the remote start's event names remoteStartId.
        transaction_event_record(
            charge_point_id=cp.pk,
            transaction_ref="tx-1",
            seq_no=0,
            event_type="Started",
            trigger_reason="CablePluggedIn",
            timestamp=now,
            received_at=now,
            evse_id=1,
        )
        session.refresh_from_db()
        assert session.status == S.STARTING
        transaction_event_record(
            charge_point_id=cp.pk,
            transaction_ref="tx-1",
            seq_no=1,
            event_type="Updated",
            trigger_reason="RemoteStart",
            timestamp=now,
            received_at=now,
            evse_id=1,
            id_tag=session.id_tag,
            remote_start_id=session.start_command_id,
        )
        session.refresh_from_db()
        assert session.status == S.ACTIVE and session.charging_session.transaction_ref == "tx-1"
        session = driver_services.driver_session_stop(session=session)
        assert OcppCommand.objects.get(pk=session.stop_command_id).payload == {"transactionId": "tx-1"}
        transaction_event_record(
            charge_point_id=cp.pk,
            transaction_ref="tx-1",
            seq_no=2,
            event_type="Ended",
            trigger_reason="RemoteStop",
            timestamp=now,
            received_at=now,
            evse_id=1,
        )
        session.refresh_from_db()
        assert session.status == S.COMPLETED

    def test_a_charge_started_with_the_drivers_card_appears_in_their_history(self):
        driver, cp = DriverFactory(), _charger()
        card = IdTokenFactory(owner=driver)
        now = clock.now()
        charging = session_start(
            charge_point_id=cp.pk,
            evse_id=2,
            id_tag=card.uid,
            meter_start_wh=0,
            started_at_charger=now,
            received_at=now,
            protocol=OcppProtocol.OCPP16,
        ).session
        session = DriverSession.objects.get(charging_session=charging)
        assert (session.driver, session.source, session.status) == (
            driver,
            DriverSessionSource.CHARGER,
            S.ACTIVE,
        )
        assert _steps(session) == [("", S.ACTIVE, "started_at_charger")]
        # ...and the app can stop it.
        assert driver_services.driver_session_stop(session=session).status == S.STOPPING

    def test_a_card_without_a_driver_makes_no_driver_session(self):
        cp = _charger()
        card = IdTokenFactory()
        now = clock.now()
        session_start(
            charge_point_id=cp.pk,
            evse_id=1,
            id_tag=card.uid,
            meter_start_wh=0,
            started_at_charger=now,
            received_at=now,
            protocol=OcppProtocol.OCPP16,
        )
        assert not DriverSession.objects.exists()

    def test_replayed_start_transaction_links_once(self):
        driver, cp = DriverFactory(), _charger()
        session, _ = _start(driver, cp)
        at = clock.now()
        _start_16(cp, session, at=at)
        _start_16(cp, session, at=at)
        assert DriverSession.objects.count() == 1
        assert [s[2] for s in _steps(session)].count("charger_started") == 1


@pytest.mark.django_db
class TestSweep:
    def test_a_start_never_begun_times_out_and_a_late_start_still_links(self):
        driver, cp = DriverFactory(), _charger()
        session, _ = _start(driver, cp)
        result = driver_services.driver_sessions_sweep(now=clock.now() + timedelta(hours=1))
        session.refresh_from_db()
        assert result["start_timeout"] == 1
        assert session.status == S.FAILED and session.failure_reason == DriverSessionFailure.START_TIMEOUT
        _start_16(cp, session)  # the charger did start it after all: it is the driver's charge
        session.refresh_from_db()
        assert session.status == S.ACTIVE
        assert session.failure_reason == "" and session.completed_at is None

    def test_keys_are_forgotten_after_24_hours(self):
        driver, cp = DriverFactory(), _charger()
        first, _ = _start(driver, cp)
        DriverSession.objects.filter(pk=first.pk).update(status=S.FAILED)
        driver_services.driver_sessions_sweep(now=clock.now() + timedelta(hours=25))
        again, created = _start(driver, cp)
        assert created and again.pk != first.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_make_one_session():
    driver, cp = DriverFactory(), _charger()
    barrier = threading.Barrier(6)
    results, errors = [], []

    def start() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(_start(driver, cp, key="concurrent")[0].pk)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(results) == 6 and len(set(results)) == 1
    assert DriverSession.objects.count() == 1
    assert OcppCommand.objects.filter(action="RemoteStartTransaction").count() == 1
