"""One charger's OCPP-J conversation, independent of the transport.

The consumer feeds every text frame to `receive()` and gives a `send` coroutine. Answers to our CALLs
are resolved straight from `receive()`; the charger's own requests go to a per-connection worker task
and our commands to another, so neither waits behind the other (consumer dispatch is sequential).
At most one CALL per direction is outstanding: requests and commands are each handled in order.

A request received in full is never thrown away: when the connection closes (the charger hung up, a
newer connection replaced it, the server shuts down) `close()` lets the request worker finish the queue
within a bound, answering nobody, and keeps what it could not finish for replay (`OcppFailedMessage`,
replayed in order before the charger's next connection's first request, or by a periodic task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.routing import create_route_map

from apps.ocpp_gateway import conf, messagelog, protocol, versions
from apps.ocpp_gateway.choices import CommandStatus, Direction
from apps.ocpp_gateway.dbwork import db_work
from apps.ocpp_gateway.protocol import (
    CALL,
    CALLERROR,
    CALLRESULT,
    Call,
    CallError,
    CallResult,
    ErrorCodes,
    ProtocolViolation,
    UnknownMessageType,
    UnparsableFrame,
)
from apps.ocpp_gateway.services import failed_message_store, failed_messages_keep_unprocessed
from cpo import clock, metrics
from cpo import logs as log_context

logger = logging.getLogger(__name__)
MAX_QUEUED_REQUESTS = 50


class ConnectionClosed(Exception):
    """The connection ended before the charger answered."""


@dataclass
class ConnectionContext:
    """What the handlers know about the charger on the other end."""

    identity: str
    charge_point_id: int
    organisation_id: int
    subprotocol: str
    registration_status: str
    triggered: set[str] = field(default_factory=set)
    # Told what each BootNotification answered Accepted or Pending said (the consumer notes it in presence).
    on_boot: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    # Awaited once, before this connection's first request is handled: requests an earlier connection of
    # the charger received but did not finish are handled (replayed) first, so order per charger holds.
    catch_up: Callable[[], Awaitable[None]] | None = None
    # The OCPP version this connection speaks (its subprotocol) and that version's schema key.
    ocpp: versions.OcppVersion = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.ocpp = versions.by_subprotocol(self.subprotocol)
        self.version = self.ocpp.key


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    status: str
    response: dict[str, Any] | None = None
    error_code: str = ""
    error_description: str = ""


_ROUTE_MAPS: dict[type, dict[str, dict[str, Any]]] = {}


def _route_map(handlers_cls: type) -> dict[str, dict[str, Any]]:
    """The `@on` routes of a handler class, built once per class (its functions are called with the
    connection's handler instance), not once per connection."""
    routes = _ROUTE_MAPS.get(handlers_cls)
    if routes is None:
        routes = _ROUTE_MAPS[handlers_cls] = create_route_map(handlers_cls)
    return routes


# Outcome recordings in flight, held until done (the event loop keeps only weak references to tasks).
_RECORDING: set[asyncio.Future] = set()


def _recorded(identity: str, command_id: Any, recording: asyncio.Future) -> None:
    _RECORDING.discard(recording)
    if not recording.cancelled() and recording.exception() is not None:
        logger.error(
            "%s: could not record the outcome of command %s",
            identity,
            command_id,
            exc_info=recording.exception(),
        )


class OcppConnection:
    def __init__(
        self,
        *,
        context: ConnectionContext,
        send: Callable[[str], Awaitable[None]],
        record_outcome: Callable[[dict[str, Any], CommandOutcome], Awaitable[None]] | None = None,
    ) -> None:
        self.ctx = context
        ocpp = context.ocpp
        self.codes: ErrorCodes = ocpp.codes
        self.handlers = ocpp.handlers(self)
        self.route_map = _route_map(ocpp.handlers)
        self.known_actions = ocpp.known_actions
        self._send = send
        self._record_outcome = record_outcome
        # Work queues with a worker task that exists only while there is work: an idle charger then costs
        # no task and no asyncio.Queue (measured ~7 KB a connection with two resident workers).
        self.requests: deque[Call] = deque()
        self.commands: deque[dict[str, Any]] = deque()
        self.pending: dict[str, tuple[str, asyncio.Future]] = {}
        self._request_task: asyncio.Task | None = None
        self._command_task: asyncio.Task | None = None
        # The request the worker is handling (kept for replay if the worker must be cancelled mid-way).
        self._current: Call | None = None
        self._caught_up = context.catch_up is None
        self.closed = False

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Nothing to start: workers are created on demand (see `_kick`)."""

    def has_requests(self) -> bool:
        """Whether requests received are still queued or being handled."""
        return bool(self.requests) or self._current is not None

    async def close(self, *, drain_timeout: float = 0.0) -> list[dict[str, Any]]:
        """Stop the command worker and fail the outstanding CALL; let the request worker finish the
        requests already received for at most `drain_timeout` seconds (their answers are not sent: the
        socket is gone), then keep the rest, the one cut off mid-way included, for replay. Returns the
        commands never sent. Nothing is sent once this has been called."""
        self.closed = True
        for _unique_id, (_action, future) in list(self.pending.items()):
            if not future.done():
                future.set_exception(ConnectionClosed())
        command_task = self._command_task
        if command_task is not None and not command_task.done():
            command_task.cancel()
            await asyncio.gather(command_task, return_exceptions=True)
        unsent = list(self.commands)
        self.commands.clear()
        request_task = self._request_task
        try:
            if request_task is not None and not request_task.done():
                await asyncio.wait({request_task}, timeout=max(drain_timeout, 0.0))
        finally:
            # Also when the close itself is cancelled (server shutdown past its grace period): what was
            # not handled is kept, never dropped. Shielded, so a second cancellation cannot lose it.
            if request_task is not None and not request_task.done():
                request_task.cancel()
                await asyncio.gather(request_task, return_exceptions=True)
            leftovers = ([self._current] if self._current is not None else []) + list(self.requests)
            self._current = None
            self.requests.clear()
            if leftovers:
                await asyncio.shield(self._keep_unprocessed(leftovers))
        return unsent

    async def _keep_unprocessed(self, calls: list[Call]) -> None:
        logger.warning(
            "%s: connection closed with %d request(s) not handled (%s); kept for replay",
            self.ctx.identity,
            len(calls),
            ", ".join(f"{c.action} {c.unique_id}" for c in calls),
        )
        try:
            await db_work(failed_messages_keep_unprocessed)(
                charge_point_id=self.ctx.charge_point_id,
                protocol=self.ctx.subprotocol,
                calls=[(c.action, c.unique_id, c.payload) for c in calls],
            )
        except Exception:
            logger.exception(
                "%s: could not keep %d unhandled request(s) for replay: %s",
                self.ctx.identity,
                len(calls),
                protocol.dumps([[c.unique_id, c.action, c.payload] for c in calls])[:4000],
            )

    # --- frames in ---------------------------------------------------------------------------------
    def _log(self, direction: str, raw: str, message_type: int | None, action: str, unique_id: str) -> None:
        metrics.OCPP_MESSAGES.labels(direction, action or "-", self.ctx.version).inc()
        messagelog.record(
            messagelog.Entry(
                charge_point_id=self.ctx.charge_point_id,
                identity=self.ctx.identity,
                direction=direction,
                message_type=message_type,
                action=action,
                unique_id=unique_id,
                frame=raw,
                at=clock.now(),
            )
        )

    async def send_frame(self, raw: str, message_type: int, action: str, unique_id: str) -> None:
        if self.closed:
            # A request finished after the socket closed: the charger cannot get its answer (it will
            # repeat the request, which is idempotent); nothing is sent on a closed socket.
            logger.info("%s: %s %s handled after the connection closed", self.ctx.identity, action, unique_id)
            return
        self._log(Direction.OUT, raw, message_type, action, unique_id)
        await self._send(raw)

    async def receive(self, raw: str) -> None:
        try:
            frame = protocol.parse_frame(raw, self.codes, max_depth=conf.max_json_depth())
        except UnknownMessageType as exc:
            if exc.type_id in self.ctx.ocpp.extra_message_types:
                # 2.1 CALLRESULTERROR (the charger could not process our answer) or SEND (a message
                # that wants no answer, e.g. a periodic event stream we never open): kept, not answered.
                self._log(Direction.IN, raw, exc.type_id, "", exc.unique_id)
                logger.warning("%s: message type %s received: %s", self.ctx.identity, exc.type_id, raw[:500])
                return
            self._log(Direction.IN, raw, None, "", exc.unique_id)
            await self._on_unparsable(exc, unique_id=exc.unique_id, unknown_type=True)
            return
        except UnparsableFrame as exc:
            self._log(Direction.IN, raw, None, "", "")
            await self._on_unparsable(exc, unique_id=None, unknown_type=False)
            return
        except ProtocolViolation as exc:
            self._log(Direction.IN, raw, None, "", exc.unique_id or "")
            await self._send_error(exc.unique_id or "-1", exc.code, exc.description, exc.details, "")
            return
        if isinstance(frame, Call):
            self._log(Direction.IN, raw, CALL, frame.action, frame.unique_id)
            if len(self.requests) >= MAX_QUEUED_REQUESTS:
                await self._send_error(
                    frame.unique_id,
                    self.codes.generic,
                    "Too many requests outstanding; send one at a time.",
                    {},
                    frame.action,
                )
                return
            self.requests.append(frame)
            if self._request_task is None or self._request_task.done():
                self._request_task = asyncio.get_running_loop().create_task(self._request_worker())
            return
        pending = self.pending.get(frame.unique_id)
        action = pending[0] if pending else ""
        self._log(
            Direction.IN,
            raw,
            CALLRESULT if isinstance(frame, CallResult) else CALLERROR,
            action,
            frame.unique_id,
        )
        if pending is None:
            logger.warning(
                "%s: answer to unknown or expired message id %s", self.ctx.identity, frame.unique_id
            )
            return
        if not pending[1].done():
            pending[1].set_result(frame)

    async def _on_unparsable(self, exc: Exception, *, unique_id: str | None, unknown_type: bool) -> None:
        """OCPP 1.6 has no way to answer a frame without a readable id: log it and keep the connection.
        OCPP 2.x answers RpcFrameworkError (message id "-1" when none can be read) or, for an unknown
        message type, MessageTypeNotSupported (2.0.1 part 4, 4.2.3 and 4.4)."""
        logger.warning("%s: unparsable frame: %s", self.ctx.identity, exc)
        if self.ctx.ocpp.generation == 1:
            return
        if unknown_type and unique_id:
            await self._send_error(unique_id, "MessageTypeNotSupported", str(exc), {}, "")
        else:
            await self._send_error(unique_id or "-1", "RpcFrameworkError", str(exc), {}, "")

    async def _send_error(
        self, unique_id: str, code: str, description: str, details: dict[str, Any], action: str
    ) -> None:
        await self.send_frame(
            protocol.error_frame(unique_id, code, description, details), CALLERROR, action, unique_id
        )

    # --- the charger's requests --------------------------------------------------------------------
    async def _request_worker(self) -> None:
        if not self._caught_up and self.ctx.catch_up is not None:
            self._caught_up = True
            try:
                await self.ctx.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: could not replay the requests kept for it", self.ctx.identity)
        while True:
            if not self.requests:
                return
            call = self._current = self.requests.popleft()
            started = time.perf_counter()
            token = log_context.bind(charger=self.ctx.identity, message_id=call.unique_id)
            try:
                await self._handle_call(call)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: could not answer %s %s", self.ctx.identity, call.action, call.unique_id)
            finally:
                log_context.unbind(token)
                metrics.OCPP_HANDLER_SECONDS.labels(call.action, self.ctx.version).observe(
                    time.perf_counter() - started
                )
            self._current = None

    def allowed_before_acceptance(self, action: str) -> bool:
        return action == "BootNotification"

    async def _handle_call(self, call: Call) -> None:
        codes = self.codes
        handlers = self.route_map.get(call.action)
        if handlers is None or "_on_action" not in handlers:
            if call.action in self.known_actions:
                await self._send_error(
                    call.unique_id,
                    codes.not_supported,
                    f"{call.action} is not a request a charger sends.",
                    {},
                    call.action,
                )
            else:
                await self._send_error(
                    call.unique_id, codes.not_implemented, f"Unknown action {call.action}.", {}, call.action
                )
            return
        if self.ctx.registration_status != "Accepted" and not self.allowed_before_acceptance(call.action):
            if call.action in self.ctx.triggered:
                self.ctx.triggered.discard(call.action)
            else:
                await self._send_error(
                    call.unique_id,
                    codes.security,
                    f"The charge point is {self.ctx.registration_status}: only BootNotification "
                    "(or a triggered message) is allowed.",
                    {},
                    call.action,
                )
                return
        try:
            protocol.validate(call.action, call.payload, self.ctx.version, codes, unique_id=call.unique_id)
            handler = handlers["_on_action"]
            result = await handler(self.handlers, **camel_to_snake_case(call.payload))
            payload = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
            if conf.get("CPO_OCPP_VALIDATE_RESPONSES", False):
                protocol.validate(call.action, payload, self.ctx.version, codes, kind=CALLRESULT)
        except ProtocolViolation as exc:
            await self._send_error(call.unique_id, exc.code, exc.description, exc.details, call.action)
            return
        except OCPPError as exc:
            await self._send_error(
                call.unique_id, exc.code, exc.description or exc.code, exc.details or {}, call.action
            )
            return
        except Exception as exc:
            logger.exception("%s: %s failed inside the product", self.ctx.identity, call.action)
            await self._keep_for_replay(call, exc)
            await self._send_error(
                call.unique_id,
                codes.internal,
                "The message could not be processed; it has been kept for replay.",
                {},
                call.action,
            )
            return
        if call.action == "BootNotification" and self.ctx.on_boot is not None:
            try:  # before the answer: once the charger has it, the accept page shows this boot
                await self.ctx.on_boot(call.payload)
            except Exception:
                logger.exception("%s: could not note the BootNotification", self.ctx.identity)
        await self.send_frame(
            protocol.result_frame(call.unique_id, payload), CALLRESULT, call.action, call.unique_id
        )

    async def _keep_for_replay(self, call: Call, exc: Exception) -> None:

        try:
            await db_work(failed_message_store)(
                charge_point_id=self.ctx.charge_point_id,
                protocol=self.ctx.subprotocol,
                action=call.action,
                unique_id=call.unique_id,
                payload=call.payload,
                error=f"{type(exc).__name__}: {exc}",
            )
        except Exception:
            logger.exception(
                "%s: could not keep failed %s for replay: %s",
                self.ctx.identity,
                call.action,
                protocol.dumps(call.payload)[:2000],
            )

    # --- our CALLs ---------------------------------------------------------------------------------
    async def call(
        self, action: str, payload: dict[str, Any], *, timeout: float, unique_id: str | None = None
    ) -> CallResult | CallError:
        """Send a CALL and wait for its answer. Raises TimeoutError or ConnectionClosed."""
        if self.closed:
            raise ConnectionClosed()
        unique_id = unique_id or str(uuid.uuid4())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = (action, future)
        try:
            await self.send_frame(protocol.call_frame(unique_id, action, payload), CALL, action, unique_id)
            return await asyncio.wait_for(future, timeout=timeout)
        finally:
            self.pending.pop(unique_id, None)

    def enqueue_command(self, command: dict[str, Any]) -> None:
        self.commands.append(command)
        if self._command_task is None or self._command_task.done():
            self._command_task = asyncio.get_running_loop().create_task(self._command_worker())

    async def _command_worker(self) -> None:
        while True:
            if not self.commands:
                return
            command = self.commands.popleft()
            outcome = await self.run_command(command)
            if self._record_outcome is not None:
                # Shielded: a charger that closes right after answering (e.g. to reconnect with the key it
                # just accepted) cancels this worker, but the outcome it answered is still recorded.
                recording = asyncio.ensure_future(self._record_outcome(command, outcome))
                _RECORDING.add(recording)
                recording.add_done_callback(partial(_recorded, self.ctx.identity, command.get("command_id")))
                with contextlib.suppress(Exception):  # logged by _recorded; go on with the next command
                    await asyncio.shield(recording)

    async def run_command(self, command: dict[str, Any]) -> CommandOutcome:
        remaining = float(command["deadline_ts"]) - clock.now().timestamp()
        if remaining <= 0:
            return CommandOutcome(CommandStatus.TIMEOUT, error_description="deadline passed before sending")
        action = command["action"]
        try:
            answer = await self.call(
                action, command["payload"], timeout=remaining, unique_id=command["unique_id"]
            )
        except TimeoutError:
            return CommandOutcome(CommandStatus.TIMEOUT, error_description="no answer before the deadline")
        except ConnectionClosed:
            return CommandOutcome(CommandStatus.CHARGER_DISCONNECTED)
        if isinstance(answer, CallError):
            return CommandOutcome(
                CommandStatus.CALL_ERROR,
                error_code=answer.error_code,
                error_description=answer.error_description[:500],
            )
        try:
            protocol.validate(action, answer.payload, self.ctx.version, self.codes, kind=CALLRESULT)
        except ProtocolViolation as exc:
            if protocol.CALLRESULTERROR in self.ctx.ocpp.extra_message_types:
                # OCPP-J 2.1 tells the charger that its answer could not be processed (best effort: the
                # outcome is recorded whether or not this reaches it).
                try:
                    await self.send_frame(
                        protocol.result_error_frame(answer.unique_id, exc.code, exc.description, exc.details),
                        protocol.CALLRESULTERROR,
                        action,
                        answer.unique_id,
                    )
                except Exception:
                    logger.warning("%s: could not send CALLRESULTERROR", self.ctx.identity, exc_info=True)
            return CommandOutcome(
                CommandStatus.CALL_ERROR,
                response=answer.payload if isinstance(answer.payload, dict) else None,
                error_code="InvalidResponse",
                error_description=exc.description,
            )
        self.after_command(action, command["payload"], answer.payload)
        return CommandOutcome(CommandStatus.ANSWERED, response=answer.payload)

    def after_command(self, action: str, payload: dict[str, Any], response: dict[str, Any]) -> None:
        """A TriggerMessage the charger accepted lets it send that message even while Pending."""
        if action == "TriggerMessage" and response.get("status") == "Accepted":
            requested = payload.get("requestedMessage")
            if requested:
                self.ctx.triggered.add(str(requested))
