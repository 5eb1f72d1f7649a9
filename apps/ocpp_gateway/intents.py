"""The gateway's side of the domain's intents (apps.charging.intents): the charger's version package
builds the message, `command_send` sends it like any other command, and each command's final outcome
goes back to the driver flow as an `IntentOutcome`. Provided to charging in OcppGatewayConfig.ready().
"""

from __future__ import annotations

from datetime import datetime
from types import ModuleType
from typing import Any

from apps.accounts.models import IdToken
from apps.charging.driver_services import driver_session_command_finished
from apps.charging.intents import ChargingLimit, CommandOutcome, IntentOutcome, IntentSent, ProbeAnswer
from apps.charging.models import ChargingSession
from apps.charging.reconcile import session_probe_finished

# A module import: services -> outcomes -> intents -> services is a cycle; command_send is looked up
# when an intent is sent, by then services is complete.
from apps.ocpp_gateway import services, versions
from apps.ocpp_gateway.choices import FINAL_COMMAND_STATUSES, CommandStatus
from apps.ocpp_gateway.models import OcppCommand
from apps.reservations.services import reservation_command_finished
from apps.smartcharging.services import charging_limit_finished
from apps.stations.models import ChargePoint

# The actions an intent sends: their final outcomes are reported to the driver flow.
INTENT_ACTIONS = frozenset(
    {"RemoteStartTransaction", "RequestStartTransaction", "RemoteStopTransaction", "RequestStopTransaction"}
)
# The reservation actions: a ReserveNow's final outcome decides the reservation.
RESERVATION_ACTIONS = frozenset({"ReserveNow"})
# The actions reconciliation's question about a transaction sends (`transaction_probe`).
PROBE_ACTIONS = frozenset({"GetTransactionStatus", "TriggerMessage"})
_OUTCOMES: dict[str, CommandOutcome] = {
    CommandStatus.CHARGER_OFFLINE: CommandOutcome.OFFLINE,
    CommandStatus.CHARGER_DISCONNECTED: CommandOutcome.DISCONNECTED,
    CommandStatus.TIMEOUT: CommandOutcome.TIMEOUT,
}


def payloads_for(protocol: str) -> ModuleType:
    """The `payloads` module of a subprotocol ("" or unknown: 1.6)."""
    try:
        return versions.by_subprotocol(protocol).payloads if protocol else versions.DEFAULT.payloads
    except versions.UnknownVersion:
        return versions.DEFAULT.payloads


def _sent(command: OcppCommand) -> IntentSent:
    return IntentSent(
        command_id=command.pk,
        action=command.action,
        offline=command.status == CommandStatus.CHARGER_OFFLINE,
    )


def start_charging(
    *, charge_point: ChargePoint, evse_id: int, id_token: IdToken, actor: Any, source: str
) -> IntentSent:
    action, payload = payloads_for(charge_point.ocpp_protocol).start_charging(
        evse_id=evse_id, id_token=id_token.uid
    )
    command = services.command_send(
        charge_point=charge_point, action=action, payload=payload, actor=actor, source=source
    )
    return _sent(command)


def stop_transaction(*, session: ChargingSession, actor: Any, source: str) -> IntentSent:
    # The transaction's own protocol decides how it is named (1.6: our integer id; 2.x: the charger's).
    action, payload = payloads_for(session.protocol).stop_transaction(session=session)
    command = services.command_send(
        charge_point=session.charge_point, action=action, payload=payload, actor=actor, source=source
    )
    return _sent(command)


def transaction_probe(*, session: ChargingSession, actor: Any, source: str) -> list[IntentSent]:
    requests = payloads_for(session.protocol).transaction_probe(session=session)
    return [
        _sent(
            services.command_send(
                charge_point=session.charge_point, action=action, payload=payload, actor=actor, source=source
            )
        )
        for action, payload in requests
    ]


def reserve(
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
    action, payload = payloads_for(charge_point.ocpp_protocol).reserve(
        evse_id=evse_id,
        id_token=id_token.uid,
        reservation_id=reservation_id,
        expires_at=expires_at,
        token_type=token_type,
    )
    command = services.command_send(
        charge_point=charge_point, action=action, payload=payload, actor=actor, source=source
    )
    return _sent(command)


def set_charging_limit(
    *, charge_point: ChargePoint, limit: ChargingLimit, actor: Any, source: str
) -> IntentSent:
    action, payload = payloads_for(charge_point.ocpp_protocol).set_charging_limit(limit=limit)
    command = services.command_send(
        charge_point=charge_point, action=action, payload=payload, actor=actor, source=source
    )
    return _sent(command)


def cancel_reservation(
    *, charge_point: ChargePoint, reservation_id: int, actor: Any, source: str
) -> IntentSent:
    action, payload = payloads_for(charge_point.ocpp_protocol).cancel_reservation(
        reservation_id=reservation_id
    )
    command = services.command_send(
        charge_point=charge_point, action=action, payload=payload, actor=actor, source=source
    )
    return _sent(command)


def outcome_wait(*, command_id: int, timeout_s: float | None = None) -> IntentOutcome | None:
    """Wait for a command's final outcome (command_wait records a timeout past its deadline); None when
    it is still open after `timeout_s`."""
    services.command_wait(command_id=command_id, timeout_s=timeout_s)
    command = OcppCommand.objects.get(pk=command_id)
    if command.status not in FINAL_COMMAND_STATUSES:
        return None
    return intent_outcome(command)


def reservation_command_done(*, command: OcppCommand) -> None:
    """Tell reservations the final outcome of a ReserveNow (whoever sent it: one that is no reservation of
    ours changes nothing)."""
    if command.action in RESERVATION_ACTIONS:
        reservation_command_finished(outcome=intent_outcome(command))


def limit_command_finished(*, command: OcppCommand) -> None:
    """Tell smart charging the final outcome of a SetChargingProfile (one not of ours changes nothing)."""
    if command.action == "SetChargingProfile":
        charging_limit_finished(charge_point_id=command.charge_point_id, outcome=intent_outcome(command))


def probe_answer(command: OcppCommand) -> ProbeAnswer:
    """A final GetTransactionStatus or TriggerMessage as reconciliation sees it."""
    response = command.response or {}
    if command.status != CommandStatus.ANSWERED:
        return ProbeAnswer(command_id=command.pk, charge_point_id=command.charge_point_id, answered=False)
    if command.action == "GetTransactionStatus":
        ongoing = response.get("ongoingIndicator")
        return ProbeAnswer(
            command_id=command.pk,
            charge_point_id=command.charge_point_id,
            answered=True,
            ongoing=ongoing if isinstance(ongoing, bool) else None,
            queued=response.get("messagesInQueue") is True,
        )
    return ProbeAnswer(
        command_id=command.pk,
        charge_point_id=command.charge_point_id,
        answered=response.get("status") == "Accepted",
    )


def probe_command_finished(*, command: OcppCommand) -> None:
    """Tell reconciliation the outcome of a question it may have asked (whoever sent the command: one
    that is no session's question changes nothing)."""
    if command.action in PROBE_ACTIONS:
        session_probe_finished(answer=probe_answer(command))


def intent_outcome(command: OcppCommand) -> IntentOutcome:
    """A final command as the driver flow sees it: Accepted, refused (any other answer or a CALLERROR),
    offline, disconnected or timed out."""
    if command.status == CommandStatus.ANSWERED and (command.response or {}).get("status") == "Accepted":
        outcome = CommandOutcome.ACCEPTED
    else:
        outcome = _OUTCOMES.get(command.status, CommandOutcome.REFUSED)
    return IntentOutcome(
        command_id=command.pk,
        outcome=outcome,
        status=command.status,
        response=command.response,
        error_code=command.error_code,
    )


def intent_command_finished(*, command: OcppCommand) -> None:
    """Tell the driver flow the final outcome of a start or stop command (whoever sent it)."""
    if command.action in INTENT_ACTIONS:
        driver_session_command_finished(outcome=intent_outcome(command))


class GatewayChargerControl:
    """apps.charging.intents.ChargerControl, implemented by this gateway."""

    def start_charging(
        self, *, charge_point: ChargePoint, evse_id: int, id_token: IdToken, actor: Any, source: str
    ) -> IntentSent:
        return start_charging(
            charge_point=charge_point, evse_id=evse_id, id_token=id_token, actor=actor, source=source
        )

    def stop_transaction(self, *, session: ChargingSession, actor: Any, source: str) -> IntentSent:
        return stop_transaction(session=session, actor=actor, source=source)

    def transaction_probe(self, *, session: ChargingSession, actor: Any, source: str) -> list[IntentSent]:
        return transaction_probe(session=session, actor=actor, source=source)

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
        return reserve(
            charge_point=charge_point,
            evse_id=evse_id,
            id_token=id_token,
            reservation_id=reservation_id,
            expires_at=expires_at,
            actor=actor,
            source=source,
            token_type=token_type,
        )

    def cancel_reservation(
        self, *, charge_point: ChargePoint, reservation_id: int, actor: Any, source: str
    ) -> IntentSent:
        return cancel_reservation(
            charge_point=charge_point, reservation_id=reservation_id, actor=actor, source=source
        )

    def outcome_wait(self, *, command_id: int, timeout_s: float | None = None) -> IntentOutcome | None:
        return outcome_wait(command_id=command_id, timeout_s=timeout_s)

    def set_charging_limit(
        self, *, charge_point: ChargePoint, limit: ChargingLimit, actor: Any, source: str
    ) -> IntentSent:
        return set_charging_limit(charge_point=charge_point, limit=limit, actor=actor, source=source)
