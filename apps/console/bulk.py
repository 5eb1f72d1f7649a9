"""Bulk operations over a selection of charge points (the charge point list's actions): one command per
charger through the one command service, in the charger's OCPP version, then a bounded wait for the
answers and one outcome per charger. A charger that failed can be selected again and the action re-run
(the list filter "last bulk operation failed" selects them)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from apps.ocpp_gateway import versions
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.services import command_send, command_wait
from apps.stations.models import ChargePoint
from cpo.exceptions import ApplicationError

# What each bulk operation sends, by OCPP generation (1: 1.6, 2: 2.0.1 and 2.1).
OPERATIONS: dict[str, dict[int, tuple[str, dict[str, Any]]]] = {
    "reset": {1: ("Reset", {"type": "Soft"}), 2: ("Reset", {"type": "OnIdle"})},
    "inoperative": {
        1: ("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}),
        2: ("ChangeAvailability", {"operationalStatus": "Inoperative"}),
    },
    "operative": {
        1: ("ChangeAvailability", {"connectorId": 0, "type": "Operative"}),
        2: ("ChangeAvailability", {"operationalStatus": "Operative"}),
    },
    "status": {
        1: ("TriggerMessage", {"requestedMessage": "StatusNotification"}),
        2: ("TriggerMessage", {"requestedMessage": "StatusNotification"}),
    },
}
FAILED_KEY = "cpo:console:bulk-failed:{user_id}"
FAILED_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class BulkResult:
    charge_point: ChargePoint
    ok: bool
    summary: str
    command_id: int | None = None


# Answers that mean the charger does (or will do, once its transaction ends) what was asked.
GOOD_ANSWERS = frozenset({"Accepted", "Scheduled"})


def _outcome_summary(outcome: dict[str, Any]) -> tuple[bool, str]:
    status = outcome["status"]
    if status == CommandStatus.ANSWERED:
        answer = outcome.get("response") or {}
        return answer.get("status") in GOOD_ANSWERS, str(answer.get("status", "answered"))
    if status in (CommandStatus.PENDING, CommandStatus.SENT):
        return False, "no answer yet"
    return False, str(outcome.get("error_code") or status)


def bulk_run(
    *, operation: str, charge_points: Iterable[ChargePoint], actor: Any, wait_s: float = 10.0
) -> list[BulkResult]:
    """Send `operation` to each charger, then wait (at most `wait_s` in all) for the answers. Chargers that
    did not end well are remembered for the actor (`failed_ids`) so that they can be retried."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown bulk operation {operation}")
    sent: list[tuple[ChargePoint, int]] = []
    results: list[BulkResult] = []
    for charge_point in charge_points:
        try:
            generation = versions.for_charge_point(charge_point).generation
            action, payload = OPERATIONS[operation][1 if generation < 2 else 2]
            command = command_send(
                charge_point=charge_point, action=action, payload=payload, actor=actor, source="admin"
            )
        except (ApplicationError, versions.UnknownVersion) as exc:
            results.append(BulkResult(charge_point, False, str(getattr(exc, "detail", exc))))
            continue
        sent.append((charge_point, command.pk))
    deadline = time.monotonic() + wait_s
    for charge_point, command_id in sent:
        outcome = command_wait(command_id=command_id, timeout_s=max(0.0, deadline - time.monotonic()))
        ok, summary = _outcome_summary(outcome)
        results.append(BulkResult(charge_point, ok, summary, command_id))
    failed = sorted(r.charge_point.pk for r in results if not r.ok)
    cache.set(FAILED_KEY.format(user_id=getattr(actor, "pk", 0)), failed, FAILED_TTL_S)
    return results


def failed_ids(actor: Any) -> list[int]:
    """The chargers of the actor's last bulk operation that did not end well."""
    return list(cache.get(FAILED_KEY.format(user_id=getattr(actor, "pk", 0))) or [])
