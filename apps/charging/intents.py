"""What the driver flow asks of a charger, in domain terms: "start charging token X on EVSE n of charge
point C", "stop transaction T". Charging never builds OCPP payloads nor knows protocol versions: the
gateway provides `charger_control` (apps.ocpp_gateway.intents, wired in its AppConfig.ready()), picks the
charger's version package and builds the message there, and reports each command's final outcome back
through `driver_services.driver_session_command_finished` as an `IntentOutcome`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from cpo.hooks import Port

if TYPE_CHECKING:
    from apps.accounts.models import IdToken
    from apps.charging.models import ChargingSession
    from apps.stations.models import ChargePoint


@dataclass(frozen=True, slots=True)
class IntentSent:
    """A command recorded for the charger. `offline`: no connection holds the charger, so the command
    failed at once (it is final already). `action` names the message the gateway chose (for the record)."""

    command_id: int
    action: str
    offline: bool


class CommandOutcome(StrEnum):
    """A command's final outcome as the driver flow sees it."""

    ACCEPTED = "accepted"
    REFUSED = "refused"  # answered with anything but Accepted, or with a CALLERROR
    OFFLINE = "offline"  # no connection held the charger
    DISCONNECTED = "disconnected"  # the connection ended before the answer
    TIMEOUT = "timeout"  # no answer in time


@dataclass(frozen=True, slots=True)
class IntentOutcome:
    """The final outcome of a command an intent sent. `status`, `response` and `error_code` are the
    gateway's record of it, kept in the driver session's history as they are."""

    command_id: int
    outcome: CommandOutcome
    status: str = ""
    response: dict[str, Any] | None = field(default=None)
    error_code: str = ""


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """What a charger said when reconciliation asked about a transaction. `answered`: it took the question
    (an answer, Accepted where the message has a status); `ongoing`: it says whether the transaction runs
    (OCPP 2.x GetTransactionStatus), None where its answer does not say (1.6 TriggerMessage: the
    triggered MeterValues show it instead); `queued`: it still holds messages of the transaction."""

    command_id: int
    charge_point_id: int
    answered: bool
    ongoing: bool | None = None
    queued: bool = False


@dataclass(frozen=True, slots=True)
class ChargingLimit:
    """A charging profile of the smart charging app, in domain terms: at most `limit` (`unit` "A" per phase
    or "W") on EVSE `evse_id` (0: the whole charger) from `valid_from` until `valid_to`, for `purpose`
    ("TxProfile": the running transaction of `session`; "TxDefaultProfile": new transactions;
    "ChargePointMaxProfile": the charger's cap). `profile_id` and `stack_level` are the product's: a new
    profile with the same id replaces the previous one at the charger."""

    evse_id: int
    purpose: str
    profile_id: int
    stack_level: int
    limit: Decimal
    unit: str
    valid_from: datetime
    valid_to: datetime
    number_phases: int | None = None
    session: ChargingSession | None = None


class ChargerControl(Protocol):
    def start_charging(
        self, *, charge_point: ChargePoint, evse_id: int, id_token: IdToken, actor: Any, source: str
    ) -> IntentSent:
        """Ask the charger to start charging `id_token` on EVSE `evse_id`. The charger's transaction
        names the returned command id (OCPP 2.x remoteStartId) where its protocol allows."""
        ...

    def stop_transaction(self, *, session: ChargingSession, actor: Any, source: str) -> IntentSent:
        """Ask the charger to stop the transaction of `session`."""
        ...

    def transaction_probe(self, *, session: ChargingSession, actor: Any, source: str) -> list[IntentSent]:
        """Ask the charger whether the transaction of `session` still runs (OCPP 2.x: GetTransactionStatus;
        1.6: TriggerMessage for the connector's MeterValues and StatusNotification). The first command's
        answer comes back as a `ProbeAnswer` through `reconcile.session_probe_finished`."""
        ...

    def reserve(
        self,
        *,
        charge_point: ChargePoint,
        evse_id: int,
        id_token: IdToken,
        reservation_id: int,
        expires_at: datetime,
        actor: Any,
        source: str,
        token_type: str | None = None,
    ) -> IntentSent:
        """Ask the charger to hold EVSE `evse_id` for `id_token` until `expires_at`, under our
        `reservation_id` (1.6 ReserveNow reservationId, 2.x ReserveNow id). `token_type`: the 2.x idToken
        type (default Central, an app token)."""
        ...

    def cancel_reservation(
        self, *, charge_point: ChargePoint, reservation_id: int, actor: Any, source: str
    ) -> IntentSent:
        """Ask the charger to drop reservation `reservation_id`."""
        ...

    def outcome_wait(self, *, command_id: int, timeout_s: float | None = None) -> IntentOutcome | None:
        """Block until the command is final, at most `timeout_s` (default: until its deadline), and return
        its outcome; None when it is still open then. Call it outside any transaction: the outcome is
        recorded by another connection."""
        ...

    def set_charging_limit(
        self, *, charge_point: ChargePoint, limit: ChargingLimit, actor: Any, source: str
    ) -> IntentSent:
        """Send `limit` as a charging profile in the charger's own schema (OCPP SetChargingProfile). Its
        final outcome goes to the smart charging app (never awaited by the caller)."""
        ...


charger_control: Port[ChargerControl] = Port("charging.charger_control")
