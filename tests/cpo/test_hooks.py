"""cpo.hooks: how a lower app lets a higher one react without importing it."""

import pytest

from apps.billing import selectors as billing_selectors
from apps.charging import hooks as charging_hooks
from apps.charging import intents as charging_intents
from apps.ocpp_gateway.intents import GatewayChargerControl
from apps.reservations import services as reservation_services
from apps.roaming import sessions as roaming_sessions
from apps.roaming.authorization import RoamingAuthorizer
from apps.smartcharging import services as smartcharging_services
from apps.stations import hooks as station_hooks
from apps.tariffs import hooks as tariff_hooks
from apps.tariffs import selectors as tariff_selectors
from apps.tariffs import services as tariff_services
from cpo.hooks import Hook, Port


def test_a_hook_calls_its_receivers_in_order_once_each():
    hook = Hook("test.happened")
    calls = []

    def first(*, n):
        calls.append(("first", n))

    def second(*, n):
        calls.append(("second", n))

    hook.register(first)
    hook.register(second)
    hook.register(first)  # registering again changes nothing
    hook.emit(n=1)
    assert calls == [("first", 1), ("second", 1)]
    hook.unregister(first)
    hook.emit(n=2)
    assert calls[-1] == ("second", 2)
    assert hook.receivers == (second,)


def test_a_receivers_failure_reaches_the_emitter_and_stops_the_rest():
    hook = Hook("test.failing")
    calls = []

    def failing(**kwargs):
        raise LookupError("receiver failed")

    hook.register(failing)
    hook.register(lambda **kwargs: calls.append(kwargs))
    with pytest.raises(LookupError):
        hook.emit(n=1)
    assert calls == []


def test_a_port_gives_what_was_provided_else_its_default_else_an_error():
    def default():
        return "default"

    port = Port("test.with_default", default=default)
    assert port.get() is default
    provided = port.provide(lambda: "provided")
    assert port.get() is provided
    with pytest.raises(RuntimeError, match=r"nothing provides test\.bare"):
        Port("test.bare").get()


def test_the_apps_wire_their_hooks_and_ports_in_ready():
    assert charging_hooks.session_started.receivers == (
        tariff_services.session_tariff_on_start,
        reservation_services.reservation_consume_on_start,
        smartcharging_services.session_started,
        roaming_sessions.roaming_session_on_start,
    )
    assert charging_hooks.session_driver_known.receivers == (tariff_services.session_tariff_driver_known,)
    assert charging_hooks.transaction_event_applied.receivers == (
        tariff_services.session_activity_from_event,
        roaming_sessions.roaming_session_on_event,
    )
    assert charging_hooks.session_stopped.receivers == (
        tariff_services.session_tariff_on_stop,
        smartcharging_services.session_stopped,
        roaming_sessions.roaming_session_on_stop,
    )
    assert charging_hooks.meter_values_recorded.receivers == (smartcharging_services.meter_values_recorded,)
    assert charging_hooks.session_price.get() is tariff_selectors.session_price
    assert charging_hooks.driver_export_parts.receivers == (
        tariff_selectors.driver_receipts_export,
        billing_selectors.driver_payments_export,
    )
    assert station_hooks.connector_status_reported.receivers == (
        tariff_services.session_activity_from_status,
        reservation_services.reservation_connector_status,
        roaming_sessions.evse_status_on_report,
    )
    assert tariff_hooks.cdr_issued.receivers == (roaming_sessions.roaming_cdr_on_issue,)
    assert isinstance(charging_hooks.roaming_authorizer.get(), RoamingAuthorizer)
    assert isinstance(charging_hooks.reservation_guard.get(), reservation_services.ReservationsGuard)
    assert isinstance(charging_intents.charger_control.get(), GatewayChargerControl)
