"""What charging tells the apps above it, and what it asks them, without importing them.

Receivers run inside the charging service's transaction (the one that changed the session), so what
they write commits or rolls back with it. Wired in the higher apps' `AppConfig.ready()`:

- `session_started`: `services.session_start` created a session. Tariffs freezes the tariff in force.
- `session_driver_known`: `services.transaction_event_record` learnt the token after plug-in (2.0.1).
  Tariffs takes the snapshot again for that driver.
- `transaction_event_applied`: `services.transaction_event_record` applied a new event. Tariffs
  records parking and departure.
- `meter_values_recorded`: `services.meter_samples_record` stored samples (MeterValues, TransactionEvent,
  Start/StopTransaction). Smart charging rebalances a site when the draw changed.
- `session_stopped`: `services.session_stop` completed a session (once). Tariffs dispatches the CDR on
  commit.
- `session_price` (port): `driver_selectors.session_usage` asks what a session costs. Tariffs answers
  (the cost so far, or the issued CDR's).
- `start_payment` (port): `driver_services.driver_session_start` asks for a payment before the locked
  part of a start (a card pre-authorisation hold), links it to the new session, and says when a start
  failed (the hold is released). Billing provides it; without it every start is paid on account.
- `driver_standing` (port): `services.idtoken_authorize` asks whether a token's owner may charge (a driver
  with an unpaid debt may not: their tokens answer Blocked). Billing provides it; default: everyone may.
- `driver_standing_changed`: a driver's standing changed (a debt arose or was paid), after commit. The
  gateway sends chargers whose local list holds the driver's tokens a differential update.

- `driver_export_parts`: `driver_selectors.driver_export` (GET /api/v1/me/export) asks every receiver for
  what its app keeps about the driver (a dict of its own top-level keys, JSON-ready), merged into the
  export. Tariffs adds the receipts (issued records and credit notes), billing the saved cards (brand,
  last 4, expiry: never a card number) and the payments.

- `reservation_guard` (port): who holds an EVSE by a reservation (its own, or one for any connector of the
  charger when it is the last free one). `driver_services` refuses other drivers' starts there and lets
  the holder start; `services.idtoken_authorize` answers another token Invalid for a start on it.
  Reservations provides it; without it no EVSE is held.

- `roaming_authorizer` (port): `services.idtoken_authorize` asks about a token we do not issue (an eMSP's
  driver): stored tokens, or the eMSP in real time. Roaming provides it; without it such a token is Invalid.

All but `start_payment`, `driver_standing`, `driver_standing_changed`, `reservation_guard`,
`meter_values_recorded` and `roaming_authorizer` are registered in TariffsConfig.ready(); `start_payment`,
`driver_standing` and billing's `driver_export_parts` in BillingConfig.ready(),
`driver_standing_changed` in OcppGatewayConfig.ready(), `reservation_guard` in ReservationsConfig.ready(),
`meter_values_recorded` in SmartChargingConfig.ready() (which also receives starts and stops),
`roaming_authorizer` in RoamingConfig.ready().
The charger commands the driver flow needs go through `apps.charging.intents` (provided by the gateway).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from cpo.hooks import Hook, Port

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.charging.metering import Sample
    from apps.charging.models import ChargingSession, DriverSession
    from apps.stations.models import ChargePoint


class SessionStarted(Protocol):
    def __call__(
        self,
        *,
        session: ChargingSession,
        charge_point: ChargePoint,
        token_group_id: str,
        customer_account_id: int | None,
    ) -> None: ...


class SessionDriverKnown(Protocol):
    def __call__(
        self, *, session: ChargingSession, token_group_id: str, customer_account_id: int | None
    ) -> None: ...


class TransactionEventApplied(Protocol):
    def __call__(
        self,
        *,
        session: ChargingSession,
        at: datetime,
        charging_state: str,
        previous_state: str,
        trigger_reason: str,
        stopped_reason: str,
    ) -> None: ...


class SessionStopped(Protocol):
    def __call__(self, *, session: ChargingSession, reason: str) -> None: ...


class MeterValuesRecorded(Protocol):
    def __call__(
        self, *, charge_point_id: int, evse_id: int, session: ChargingSession | None, samples: list[Sample]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionPrice:
    """What a session costs: `cost` has `currency`, `net`, `gross`, `lines`, `vat_lines` and `as_dict()`
    (a tariffs.pricing.PriceBreakdown); `final` once it is the issued charge detail record's."""

    cost: Any
    final: bool


class SessionPriceReader(Protocol):
    def __call__(self, *, session: ChargingSession) -> SessionPrice | None: ...


def _no_price(*, session: ChargingSession) -> SessionPrice | None:
    return None


@dataclass(frozen=True, slots=True)
class PaymentHold:
    """A payment secured for a start (a card hold): `payment_id` is the payment app's record, `detail` what
    the AUTHORISING transition records (e.g. {"payment": "card", "amount_held": 5000, "currency": "EUR"})."""

    payment_id: int
    detail: dict[str, Any]


class StartPayment(Protocol):
    def authorise(
        self, *, driver: User, charge_point: ChargePoint, evse_id: int, idempotency_key: str
    ) -> PaymentHold | None:
        """Secure the payment of a start, before any row lock is taken: None when none is needed (the
        driver pays on account); raises an ApplicationError (402) when it cannot be secured. The same
        driver and key give the same hold."""
        ...

    def attach(self, *, hold: PaymentHold, session: DriverSession) -> None:
        """Link the hold to the new session (in the start's transaction)."""
        ...

    def start_failed(self, *, session: DriverSession | None, hold: PaymentHold | None = None) -> None:
        """The start did not happen (the session FAILED, or no session was made for `hold`): release the
        hold after commit."""
        ...


class OnAccount:
    """No payment app: every start is paid on account."""

    def authorise(
        self, *, driver: User, charge_point: ChargePoint, evse_id: int, idempotency_key: str
    ) -> PaymentHold | None:
        return None

    def attach(self, *, hold: PaymentHold, session: DriverSession) -> None:
        return None

    def start_failed(self, *, session: DriverSession | None, hold: PaymentHold | None = None) -> None:
        return None


class DriverStanding(Protocol):
    def blocked(self, *, user_id: int) -> bool:
        """True when the driver may not charge now (an unpaid debt): their tokens answer Blocked."""
        ...


class InGoodStanding:
    """No payment app: nobody is blocked for money."""

    def blocked(self, *, user_id: int) -> bool:
        return False


class DriverStandingChanged(Protocol):
    def __call__(self, *, user_id: int) -> None: ...


# A new charging session was created (any protocol), in its creating transaction.
session_started: Hook[SessionStarted] = Hook("charging.session_started")
# The driver of a session that started without a token is now known (OCPP 2.0.1).
session_driver_known: Hook[SessionDriverKnown] = Hook("charging.session_driver_known")
# An OCPP 2.0.1 TransactionEvent was applied to its session (not for a replayed one).
transaction_event_applied: Hook[TransactionEventApplied] = Hook("charging.transaction_event_applied")
# A session completed (once: a repeated stop does not emit it again).
session_stopped: Hook[SessionStopped] = Hook("charging.session_stopped")
# Meter samples were stored for an EVSE (any protocol, any message), in the storing transaction.
meter_values_recorded: Hook[MeterValuesRecorded] = Hook("charging.meter_values_recorded")
# The price of a session (None: not priced, e.g. no tariff or no pricing app installed).
session_price: Port[SessionPriceReader] = Port("charging.session_price", default=_no_price)
# How a driver's start is paid (default: on account).
start_payment: Port[StartPayment] = Port("charging.start_payment", default=OnAccount())


@dataclass(frozen=True, slots=True)
class ReservationHold:
    """An EVSE held for a driver's token until `expires_at` (reservation `reservation_id`)."""

    reservation_id: int
    driver_id: int | None
    id_token_id: int | None
    id_tag: str
    expires_at: datetime


class ReservationGuard(Protocol):
    def holder(self, *, charge_point_id: int, evse_id: int, at: datetime) -> ReservationHold | None:
        """The reservation holding this EVSE at `at`, if any."""
        ...


class NoReservations:
    """No reservations app: no EVSE is held."""

    def holder(self, *, charge_point_id: int, evse_id: int, at: datetime) -> ReservationHold | None:
        return None


class DriverExportPart(Protocol):
    def __call__(self, *, driver: User) -> dict[str, Any]:
        """What one app keeps about `driver`, under its own top-level keys (JSON-ready values)."""
        ...


# What the apps above charging add to a driver's data export. Unlike the other hooks its receivers
# answer: driver_export calls each (registration order) and merges the dicts they return.
driver_export_parts: Hook[DriverExportPart] = Hook("charging.driver_export_parts")

# Who holds an EVSE by a reservation (default: nobody).
reservation_guard: Port[ReservationGuard] = Port("charging.reservation_guard", default=NoReservations())
# Whether a driver may charge (default: everyone may).
driver_standing: Port[DriverStanding] = Port("charging.driver_standing", default=InGoodStanding())
# A driver's standing changed (a debt arose or was paid); emitted after commit.
driver_standing_changed: Hook[DriverStandingChanged] = Hook("charging.driver_standing_changed")


@dataclass(frozen=True, slots=True)
class RoamingAuthorization:
    """A roaming partner's answer for a token we do not issue: `status` is an AuthorizationStatus value,
    `group_id` the token's group (told to the charger only where Accepted)."""

    status: str
    group_id: str = ""


@dataclass(frozen=True, slots=True)
class RoamingListToken:
    """An eMSP's token that may go on chargers' local lists (Accepted): `type` is the OCPI TokenType."""

    uid: str
    group_id: str
    type: str


class RoamingAuthorizer(Protocol):
    def authorize(
        self,
        *,
        uid: str,
        charge_point: ChargePoint,
        at: datetime,
        to_start: bool,
        exclude_session_id: int | None = None,
    ) -> RoamingAuthorization | None:
        """The status of a token that is not ours at this charge point: None when no roaming partner
        issued it. May ask the partner in real time (bounded by a short timeout)."""
        ...

    def prepare(self, *, uid: str, charge_point_id: int) -> None:
        """Before `authorize`, outside the database thread the charger's messages share: ask the token's
        eMSP in real time now if its whitelist type needs it, so that `authorize` finds the answer
        remembered. Never raises for an eMSP that does not answer."""
        ...

    def local_list_tokens(self, *, organisation_id: int) -> list[RoamingListToken]:
        """The roaming tokens this operator's chargers may hold on their local lists (whitelisted)."""
        ...


class NoRoaming:
    """No roaming app: a token we do not issue is unknown."""

    def prepare(self, *, uid: str, charge_point_id: int) -> None:
        return None

    def local_list_tokens(self, *, organisation_id: int) -> list[RoamingListToken]:
        return []

    def authorize(
        self,
        *,
        uid: str,
        charge_point: ChargePoint,
        at: datetime,
        to_start: bool,
        exclude_session_id: int | None = None,
    ) -> RoamingAuthorization | None:
        return None


# Tokens of roaming partners (default: none). Roaming provides it.
roaming_authorizer: Port[RoamingAuthorizer] = Port("charging.roaming_authorizer", default=NoRoaming())
