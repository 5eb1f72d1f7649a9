"""The test system's side of the OCPP 2.0.1 CSMS test cases: a charging station reduced to its OCPP-J
frames, the reusable states of part 6 (section 3.18) and the operator's side of the product.

`Station` sends exactly the CALLs a test case names and answers the CSMS's CALLs as the test case says.
Every message is checked both ways against the `ocpp` library's 2.0.1 JSON schemas: what the station
sends (so a test cannot drift from the protocol), what the product answers and every CALL the product
sends. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import ocpp
from jsonschema import Draft6Validator, FormatChecker
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from apps.ocpp_gateway.choices import CommandStatus
from cpo.clock import parse_iso8601
from tests.e2e.conftest import KEY, Server, basic_auth, command

# CPO_CONFORMANCE_SUBPROTOCOL=ocpp2.1 runs the same cases as a 2.1 station, checked against the 2.1 schemas.
SUBPROTOCOL = os.environ.get("CPO_CONFORMANCE_SUBPROTOCOL", "ocpp2.0.1")
ANSWER_TIMEOUT_S = 10.0
# OCPP-J 2.0.1 (part 4, 4.3): the error codes a CALLERROR may carry.
ERROR_CODES = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)
SCHEMAS = Path(ocpp.__file__).parent / {"ocpp2.0.1": "v201", "ocpp2.1": "v21"}[SUBPROTOCOL] / "schemas"

_format_checker = FormatChecker(formats=())


@_format_checker.checks("date-time", raises=(ValueError, TypeError))
def _is_datetime(value: Any) -> bool:
    return not isinstance(value, str) or parse_iso8601(value) is not None


@cache
def _schema(action: str, kind: str) -> Draft6Validator:
    """The library's 2.0.1 schema of `action`'s Request or Response."""
    schema = json.loads((SCHEMAS / f"{action}{kind}.json").read_text(encoding="utf-8-sig"))
    return Draft6Validator(schema, format_checker=_format_checker)


def assert_request_valid(action: str, payload: Any) -> None:
    """`payload` is a valid 2.0.1 `action` request."""
    _schema(action, "Request").validate(payload)


def assert_response_valid(action: str, payload: Any) -> None:
    """`payload` is a valid 2.0.1 `action` response."""
    _schema(action, "Response").validate(payload)


def now_iso() -> str:
    value = datetime.now(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class Station:
    """One WebSocket connection of a charging station, speaking OCPP-J 2.0.1 frame by frame.

    A reader task files the CSMS's CALLs in order (`expect`) and resolves the answers to our own CALLs
    (`call`), so a test can send and answer in whatever order its steps give."""

    def __init__(self, ws: ClientConnection, identity: str) -> None:
        self.ws = ws
        self.identity = identity
        self._ids = itertools.count(1)
        self._event_ids = itertools.count(1)
        self._notify_seq = itertools.count(0)
        self._answers: dict[str, asyncio.Future[list]] = {}
        self._calls: asyncio.Queue[list] = asyncio.Queue()
        self.frames = 0  # sent and received: the server logs each of them (its message log)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(
        cls,
        server: Server,
        identity: str,
        *,
        key: str | None = KEY,
        username: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> Station:
        """Connect as `identity` with Basic auth `username`:`key` (username defaults to the identity),
        over TLS with `tls` (the server's url is then a wss:// one)."""
        headers = {"Authorization": basic_auth(username or identity, key)} if key else {}
        ws = await connect(
            f"{server.url}/{identity}",
            subprotocols=[SUBPROTOCOL],
            additional_headers=headers,
            compression=None,
            proxy=None,
            open_timeout=10,
            ping_interval=None,
            close_timeout=2,
            ssl=tls,
        )
        assert ws.subprotocol == SUBPROTOCOL, ws.subprotocol
        return cls(ws, identity)

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self.frames += 1
                frame = json.loads(text)
                if frame[0] == 2:
                    self._calls.put_nowait(frame)
                    continue
                future = self._answers.pop(frame[1], None)
                if future is None or future.done():
                    raise AssertionError(f"{self.identity}: answer to no outstanding CALL: {frame}")
                future.set_result(frame)
        except ConnectionClosed:
            pass
        finally:
            for future in self._answers.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.identity}: connection closed"))

    # --- our CALLs ---------------------------------------------------------------------------------
    async def call(self, action: str, payload: dict[str, Any]) -> list:
        """Send a CALL (itself schema-checked) and return the answer frame: a CALLRESULT valid for
        `action`, or a well-formed CALLERROR."""
        assert_request_valid(action, payload)
        unique_id = f"{self.identity}-{next(self._ids)}"
        future: asyncio.Future[list] = asyncio.get_running_loop().create_future()
        self._answers[unique_id] = future
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        self.frames += 1
        answer = await asyncio.wait_for(future, timeout=ANSWER_TIMEOUT_S)
        assert answer[1] == unique_id, answer
        if answer[0] == 3:
            assert len(answer) == 3, answer
            assert_response_valid(action, answer[2])
        else:
            assert answer[0] == 4 and len(answer) == 5, answer
            assert answer[2] in ERROR_CODES and isinstance(answer[3], str) and isinstance(answer[4], dict), (
                answer
            )
        return answer

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The CALLRESULT payload of a CALL that must be answered."""
        answer = await self.call(action, payload)
        assert answer[0] == 3, answer
        return answer[2]

    # --- the CSMS's CALLs --------------------------------------------------------------------------
    async def expect(self, action: str, *, timeout: float = ANSWER_TIMEOUT_S) -> list:
        """The next CALL from the CSMS, which must be `action` with a schema-valid payload."""
        frame = await asyncio.wait_for(self._calls.get(), timeout=timeout)
        assert frame[2] == action, frame
        assert_request_valid(action, frame[3])
        return frame

    async def reply(self, frame: list, payload: dict[str, Any]) -> None:
        """Answer the CSMS's CALL `frame` with a (schema-checked) CALLRESULT."""
        assert_response_valid(frame[2], payload)
        await self.ws.send(json.dumps([3, frame[1], payload]))
        self.frames += 1

    async def answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Expect the CSMS's `action`, answer it with `payload`; returns the request payload."""
        frame = await self.expect(action)
        await self.reply(frame, payload)
        return frame[3]

    async def silent(self, timeout: float = 1.0) -> None:
        """No CALL from the CSMS arrives within `timeout`."""
        with contextlib.suppress(TimeoutError):
            frame = await asyncio.wait_for(self._calls.get(), timeout=timeout)
            raise AssertionError(f"unexpected CALL {frame}")

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await asyncio.wait_for(self._reader, timeout=5)

    # --- messages every test case uses -------------------------------------------------------------
    async def boot(
        self, *, reason: str = "PowerUp", status: str = "Accepted", firmware_version: str = "1.0.0"
    ) -> dict[str, Any]:
        """BootNotificationRequest with <Configured model/vendorName>; the answer must carry `status`."""
        answer = await self.result(
            "BootNotification",
            {
                "reason": reason,
                "chargingStation": {
                    "model": "OCTT-AC22",
                    "vendorName": "OCTT",
                    "serialNumber": self.identity,
                    "firmwareVersion": firmware_version,
                },
            },
        )
        assert answer["status"] == status, answer
        parse_iso8601(answer["currentTime"])
        return answer

    async def connector_status(self, status: str, *, evse_id: int = 1, connector_id: int = 1) -> None:
        """The station notifies a connector's state: a StatusNotificationRequest and a NotifyEventRequest
        (trigger Delta, Connector.AvailabilityState), both answered."""
        await self.result(
            "StatusNotification",
            {
                "timestamp": now_iso(),
                "connectorStatus": status,
                "evseId": evse_id,
                "connectorId": connector_id,
            },
        )
        await self.notify_event(
            "Connector", "AvailabilityState", status, evse={"id": evse_id, "connectorId": connector_id}
        )

    async def notify_event(
        self,
        component: str,
        variable: str,
        value: str,
        *,
        evse: dict[str, int] | None = None,
        trigger: str = "Delta",
    ) -> dict[str, Any]:
        """A NotifyEventRequest with one event (Delta unless `trigger` says otherwise); returns the answer."""
        component_data: dict[str, Any] = {"name": component}
        if evse is not None:
            component_data["evse"] = evse
        return await self.result(
            "NotifyEvent",
            {
                "generatedAt": now_iso(),
                "seqNo": next(self._notify_seq),
                "eventData": [
                    {
                        "eventId": next(self._event_ids),
                        "timestamp": now_iso(),
                        "trigger": trigger,
                        "actualValue": value,
                        "eventNotificationType": "HardWiredNotification",
                        "component": component_data,
                        "variable": {"name": variable},
                    }
                ],
            },
        )

    async def booted(
        self,
        *,
        evses: int = 2,
        reason: str = "PowerUp",
        occupied: tuple[int, ...] = (),
        firmware_version: str = "1.0.0",
    ) -> None:
        """Reusable State Booted: BootNotification (Accepted), then every connector's state (Available,
        or Occupied for the EVSEs in `occupied`)."""
        await self.boot(reason=reason, firmware_version=firmware_version)
        for evse_id in range(1, evses + 1):
            await self.connector_status("Occupied" if evse_id in occupied else "Available", evse_id=evse_id)

    async def firmware_status(self, *statuses: str, request_id: int | None = None) -> None:
        """One FirmwareStatusNotificationRequest per status, each answered."""
        for status in statuses:
            payload: dict[str, Any] = {"status": status}
            if request_id is not None:
                payload["requestId"] = request_id
            assert await self.result("FirmwareStatusNotification", payload) == {}


# --- tokens --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    """An idToken as the OCTT configures it (valid_idtoken, blocked_idtoken, ...)."""

    id_token: str
    type: str = "ISO14443"

    def wire(self) -> dict[str, str]:
        return {"idToken": self.id_token, "type": self.type}


# --- transactions and the reusable states ----------------------------------------------------------------
@dataclass
class Tx:
    """One transaction as the station runs it: its own transactionId, seqNo from 0, a meter register.
    The flags follow the reusable states (a state that already holds is not executed again)."""

    station: Station
    evse_id: int = 1
    connector_id: int = 1
    transaction_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    register_wh: int = 12_000
    seq_no: int = 0
    started: bool = False
    authorized: bool = False
    ev_connected: bool = False
    evse_sent: bool = False

    def meter(self, context: str, *, signed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A meterValue with the energy register, as the given reading context."""
        sampled: dict[str, Any] = {
            "value": self.register_wh,
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"},
        }
        if signed is not None:
            sampled["signedMeterValue"] = signed
        return [{"timestamp": now_iso(), "sampledValue": [sampled]}]

    async def event(
        self,
        event_type: str,
        trigger_reason: str,
        *,
        charging_state: str | None = None,
        stopped_reason: str | None = None,
        token: Token | None = None,
        remote_start_id: int | None = None,
        meter_value: list[dict[str, Any]] | None = None,
        offline: bool = False,
        seq_no: int | None = None,
        evse: bool | None = None,
    ) -> dict[str, Any]:
        """Send a TransactionEventRequest and return the answer. seqNo counts from 0 unless given;
        the evse goes into the first event (or when `evse` says so); Started and Ended carry the
        Transaction.Begin / Transaction.End register unless `meter_value` is given."""
        info: dict[str, Any] = {"transactionId": self.transaction_id}
        if charging_state is not None:
            info["chargingState"] = charging_state
        if stopped_reason is not None:
            info["stoppedReason"] = stopped_reason
        if remote_start_id is not None:
            info["remoteStartId"] = remote_start_id
        if seq_no is None:
            seq_no, self.seq_no = self.seq_no, self.seq_no + 1
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": now_iso(),
            "triggerReason": trigger_reason,
            "seqNo": seq_no,
            "transactionInfo": info,
        }
        if offline:
            payload["offline"] = True
        if evse if evse is not None else not self.evse_sent:
            payload["evse"] = {"id": self.evse_id, "connectorId": self.connector_id}
            self.evse_sent = True
        if token is not None:
            payload["idToken"] = token.wire()
        if meter_value is None and event_type == "Started":
            meter_value = self.meter("Transaction.Begin")
        if meter_value is None and event_type == "Ended":
            self.register_wh += 7_500
            meter_value = self.meter("Transaction.End")
        if meter_value:
            payload["meterValue"] = meter_value
        self.started = True
        return await self.station.result("TransactionEvent", payload)

    @property
    def next_type(self) -> str:
        """Started for the first event of the transaction, Updated after it."""
        return "Updated" if self.started else "Started"


def assert_token_status(answer: dict[str, Any], *statuses: str, group: str | None = None) -> None:
    """`answer` (Authorize- or TransactionEventResponse) has idTokenInfo.status in `statuses` and, when
    `group` is given, idTokenInfo.groupIdToken.idToken `group`."""
    info = answer.get("idTokenInfo") or {}
    assert info.get("status") in statuses, answer
    if group is not None:
        assert (info.get("groupIdToken") or {}).get("idToken") == group, answer


async def authorized(tx: Tx, token: Token, *, group: str | None = None) -> None:
    """Reusable State Authorized: AuthorizeRequest, then a TransactionEventRequest (triggerReason
    Authorized) with the token; both answers Accepted."""
    assert_token_status(
        await tx.station.result("Authorize", {"idToken": token.wire()}), "Accepted", group=group
    )
    answer = await tx.event(tx.next_type, "Authorized", token=token)
    assert_token_status(answer, "Accepted", group=group)
    tx.authorized = True


async def ev_connected_pre_session(tx: Tx) -> None:
    """Reusable State EVConnectedPreSession: the connector turns Occupied and a TransactionEventRequest
    (CablePluggedIn, EVConnected) follows, Updated when already Authorized, else Started."""
    await tx.station.connector_status("Occupied", evse_id=tx.evse_id, connector_id=tx.connector_id)
    await tx.event(
        "Updated" if tx.authorized else "Started", "CablePluggedIn", charging_state="EVConnected", evse=True
    )
    tx.ev_connected = True


async def energy_transfer_started(tx: Tx, token: Token) -> None:
    """Reusable State EnergyTransferStarted: Authorized (unless it holds), the cable plugged in (unless
    the EV is connected), then chargingState Charging."""
    if not tx.authorized:
        await authorized(tx, token)
    if not tx.ev_connected:
        await tx.station.connector_status("Occupied", evse_id=tx.evse_id, connector_id=tx.connector_id)
        await tx.event("Updated", "CablePluggedIn", charging_state="EVConnected", evse=True)
        tx.ev_connected = True
    await tx.event("Updated", "ChargingStateChanged", charging_state="Charging")


async def energy_transfer_suspended(tx: Tx) -> None:
    """Reusable State EnergyTransferSuspended: chargingState SuspendedEV."""
    await tx.event("Updated", "ChargingStateChanged", charging_state="SuspendedEV")


async def stop_authorized(tx: Tx, token: Token) -> None:
    """Reusable State StopAuthorized: a TransactionEventRequest (StopAuthorized) answered Accepted."""
    assert_token_status(await tx.event("Updated", "StopAuthorized", token=token), "Accepted")


async def ev_connected_post_session(tx: Tx) -> None:
    """Reusable State EVConnectedPostSession: chargingState back to EVConnected."""
    await tx.event("Updated", "ChargingStateChanged", charging_state="EVConnected")


async def ev_disconnected(tx: Tx) -> None:
    """Reusable State EVDisconnected: the connector is Available again and the transaction Ended
    (EVCommunicationLost, Idle, EVDisconnected)."""
    await tx.station.connector_status("Available", evse_id=tx.evse_id, connector_id=tx.connector_id)
    await tx.event("Ended", "EVCommunicationLost", charging_state="Idle", stopped_reason="EVDisconnected")
    tx.ev_connected = False


# --- the operator ------------------------------------------------------------------------------------------
async def operate(
    station: Station, action: str, payload: dict[str, Any], answer: dict[str, Any], *, timeout_s: float = 15.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator sends `action` through the product's command service while the station answers it
    with `answer`. Returns (the request as the station received it, the command's answered response)."""
    outcome = asyncio.get_running_loop().create_task(
        command(station.identity, action, payload, timeout_s=timeout_s)
    )
    try:
        request = await station.answer(action, answer)
    except BaseException:
        outcome.cancel()
        raise
    result = await asyncio.wait_for(outcome, timeout=timeout_s + 10)
    assert result["status"] == CommandStatus.ANSWERED, result
    assert result["response"] == answer, result
    return request, result
