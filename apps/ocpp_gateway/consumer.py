"""The OCPP WebSocket endpoint: /ocpp/<identity>. Thin: negotiate the subprotocol, authenticate, claim
presence, and feed frames to the version's OcppConnection. Commands for this charger arrive on this
connection's own channel (`ocpp.command`), addressed by the presence record."""

from __future__ import annotations

import logging
import re
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncWebsocketConsumer

from apps.ocpp_gateway import auth, conf, drain, presence, replay, versions
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.connection import CommandOutcome, ConnectionContext, OcppConnection
from apps.ocpp_gateway.dbwork import db_work
from apps.ocpp_gateway.services import command_record_outcome
from cpo import clock, live, metrics

logger = logging.getLogger(__name__)
IDENTITY_RE = re.compile(r"^[A-Za-z0-9._~\-]{1,48}$")


async def _record_outcome(command: dict[str, Any], outcome: CommandOutcome) -> None:
    """Hand the outcome of `command` (an `ocpp.command` message) to the one recorder, which makes the row
    final and then publishes it to waiters."""
    await db_work(command_record_outcome)(
        command_id=command["command_id"],
        status=outcome.status,
        response=outcome.response,
        error_code=outcome.error_code,
        error_description=outcome.error_description,
        action=command.get("action"),
        has_new_key=command.get("new_key"),
    )


class OcppConsumer(AsyncWebsocketConsumer):
    connection: OcppConnection | None = None
    identity: str = ""
    epoch: int = 0

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels runs `aclose_old_connections()` on the database thread before every message; for a
        charger's frames that is a thread hop per frame (measured: ~15% of the event loop and GIL waits).
        Every ORM call here already goes through dbwork.db_work, which manages connections."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.connection = None
        self.identity = self.scope["url_route"]["kwargs"]["identity"]
        if not IDENTITY_RE.match(self.identity):
            await self.deny(400, "invalid charge point identity in the URL")
            return
        version = versions.negotiate(self.scope.get("subprotocols") or [])
        if version is None:
            offered = ", ".join(versions.subprotocols())
            await self.deny(400, f"no supported OCPP subprotocol offered ({offered})")
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope.get("headers", [])}
        client = self.scope.get("client") or ("", 0)
        secure = self.scope.get("scheme") in ("wss", "https")
        refusal_key = auth.RefusalCache.key(
            self.identity, str(client[0]), headers.get("authorization"), secure
        )
        decision = auth.refusals.get(refusal_key)
        if decision is not None:
            decision = await auth.refused_again(
                identity=self.identity, address=str(client[0]), cached=decision
            )
        else:
            decision = await db_work(auth.authenticate)(
                identity=self.identity,
                authorization=headers.get("authorization"),
                address=str(client[0]),
                secure=secure,
            )
            auth.refusals.add(refusal_key, decision)
        if not decision.allowed:
            logger.info(
                "refused %s from %s: %s", self.identity, client[0], decision.log_reason or decision.reason
            )
            await self.deny(decision.status, decision.reason)
            return
        try:
            self.epoch, previous = await presence.claim(
                self.identity,
                self.channel_name,
                address=str(client[0]),
                authenticated=decision.authenticated,
                unless_alive_since=None
                if decision.authenticated
                else clock.now().timestamp() - conf.unauthenticated_takeover_after_s(),
            )
        except presence.Held:
            # Without credentials, a newcomer never replaces a live connection from another address (it
            # could be anyone); from the same address it does (the charger reconnecting, see presence).
            logger.warning(
                "refused %s from %s: unauthenticated, and a live connection holds it",
                self.identity,
                client[0],
            )
            await self.deny(409, "another connection holds this charge point")
            return
        if previous is not None and previous.channel != self.channel_name:
            try:
                await self.channel_layer.send(
                    previous.channel, {"type": "ocpp.replaced", "epoch": previous.epoch}
                )
            except ChannelFull:
                # Best effort: the replaced socket also closes at its next presence refresh (epoch changed).
                logger.warning(
                    "%s: could not tell the replaced connection to close (channel full)", self.identity
                )
        context = ConnectionContext(
            identity=self.identity,
            charge_point_id=decision.charge_point_id,
            organisation_id=decision.organisation_id,
            subprotocol=version.subprotocol,
            registration_status=decision.registration_status,
            on_boot=self._note_boot,
            catch_up=self._catch_up,
        )
        self.connection = OcppConnection(
            context=context, send=self._send_text, record_outcome=_record_outcome
        )
        self._last_touch = clock.now().timestamp()
        await self.accept(subprotocol=version.subprotocol)
        metrics.OCPP_CONNECTIONS.inc()
        self.connection.start()
        await self._announce(decision.organisation_id, decision.charge_point_id, "connected")

    async def _announce(self, organisation_id: int | None, charge_point_id: int, what: str) -> None:
        """Tell the operators' consoles of the charger's organisation (best effort: a console re-reads
        presence when it refreshes anyway, so a lost announcement only delays it)."""
        if organisation_id is None:
            return
        try:
            await self.channel_layer.group_send(
                live.operations_group(organisation_id),
                live.operations_message(charge_point_id=charge_point_id, what=what),
            )
        except Exception:
            logger.warning("%s: console not told that it %s", self.identity, what, exc_info=True)

    async def _note_boot(self, payload: dict[str, Any]) -> None:
        """Keep what this connection's BootNotification said in its presence record (the accept page)."""
        station = payload.get("chargingStation") or {}
        await presence.note_boot(
            self.identity,
            self.epoch,
            vendor=str(payload.get("chargePointVendor") or station.get("vendorName") or ""),
            model=str(payload.get("chargePointModel") or station.get("model") or ""),
            serial=str(
                payload.get("chargePointSerialNumber")
                or payload.get("chargeBoxSerialNumber")
                or station.get("serialNumber")
                or ""
            ),
        )

    async def _catch_up(self) -> None:
        """Before this connection's first request: let an earlier connection of the charger finish what
        it had received, then replay what was kept (the charger's requests keep their order)."""
        connection = self.connection
        if connection is None:
            return
        charge_point_id = connection.ctx.charge_point_id
        if await drain.before_first_request(self.identity, self.epoch, charge_point_id):
            counts = await db_work(replay.kept_messages_replay)(charge_point_id=charge_point_id, wait_s=1.0)
            logger.info("%s: requests kept for replay handled: %s", self.identity, counts)

    async def deny(self, status: int, reason: str) -> None:
        """Refuse the handshake with an HTTP status where the server supports it (uvicorn), else 403."""
        if "websocket.http.response" in (self.scope.get("extensions") or {}):
            body = reason.encode()
            await self.base_send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await self.base_send({"type": "websocket.http.response.body", "body": body})
        else:
            await self.close()

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.connection is None:
            return
        if text_data is None:
            logger.warning("%s: binary frame ignored (OCPP-J is text)", self.identity)
            return
        if len(text_data) > conf.max_frame_bytes():
            logger.warning("%s: frame of %d bytes exceeds the limit", self.identity, len(text_data))
            await self.close(code=1009)
            return
        now = clock.now().timestamp()
        if now - self._last_touch >= conf.presence_touch_every_s():
            self._last_touch = now
            if not await presence.touch(self.identity, self.epoch):
                logger.info("%s: connection epoch %s was replaced; closing", self.identity, self.epoch)
                await self.close(code=4000)
                return
        await self.connection.receive(text_data)

    async def ocpp_command(self, event: dict[str, Any]) -> None:
        if self.connection is None or event.get("epoch") != self.epoch:
            await _record_outcome(
                event,
                CommandOutcome(
                    CommandStatus.CHARGER_DISCONNECTED, error_description="connection was replaced"
                ),
            )
            return
        self.connection.enqueue_command(event)

    async def ocpp_replaced(self, event: dict[str, Any]) -> None:
        if event.get("epoch") == self.epoch:
            await self.close(code=4000)

    async def disconnect(self, code: int) -> None:
        if self.connection is None:
            return
        connection, self.connection = self.connection, None
        metrics.OCPP_CONNECTIONS.dec()
        draining = connection.has_requests()
        if draining:
            # The charger's next connection waits for these before its own (drain.before_first_request).
            await drain.draining_begin(self.identity, self.epoch)
        try:
            unsent = await connection.close(drain_timeout=conf.drain_timeout_s())
        finally:
            if draining:
                await drain.draining_end(self.identity, self.epoch)
        for command in unsent:
            await _record_outcome(command, CommandOutcome(CommandStatus.CHARGER_DISCONNECTED))
        await presence.release(self.identity, self.epoch)
        await self._announce(connection.ctx.organisation_id, connection.ctx.charge_point_id, "disconnected")


class NotFoundConsumer(OcppConsumer):
    """Any other WebSocket path (e.g. /ocpp/..%2Fx, which arrives decoded as /ocpp/../x): a handshake
    refused with 404, where an unrouted path used to end in a 500."""

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        await self.deny(404, "not found")
