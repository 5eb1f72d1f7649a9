"""What every simulated charger does, whatever OCPP version it speaks: the connection loop, boot with
retry, heartbeat, the ordered queue of transaction messages, statuses, authorisation, transactions and
metering, availability, reservations, firmware updates and file uploads; and the skeleton of answering
the CSMS's commands (`SimulatedConnection`). A version module (`v16.py`, `v201.py`) subclasses both and
keeps only what its version spells differently: the payloads and the command handlers' signatures.

The charger outlives its connections. Each connection (`Link`) runs the `ocpp` library's receive loop
(`connection_class.start()`, which answers the CSMS's commands), the boot sequence, the heartbeat and
the drainer of the charger's ordered outgoing queue. Transaction-related messages wait in that queue
across disconnects and are delivered in order once a new connection has been accepted, with the
specification's retries (TransactionMessageAttempts / TransactionMessageRetryInterval); status
notifications queued behind them are dropped with the connection (a fresh boot reports every status
again).

The library's receive loop handles one message at a time, so nothing that runs inside a command
handler may wait for an answer from the CSMS: follow-up work runs in tasks (`spawn`), started by the
connection once the answer has been sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tools.simulator import clock
from tools.simulator.backoff import Backoff
from tools.simulator.configuration import ConfigurationStore, default_values
from tools.simulator.meter import Meter
from tools.simulator.smartcharging import CHARGE_POINT_MAX, TX, Profile, ProfileStore
from tools.simulator.state import (
    Connector,
    LocalAuthorisation,
    Outgoing,
    Reservation,
    Stats,
    Transaction,
)

logger = logging.getLogger(__name__)
# The library logs every frame at INFO; a fleet quietens it through this logger.
library_logger = logging.getLogger("ocpp")
# A request that reached the CSMS but failed there (CALLERROR, no answer in time, an invalid answer).
REQUEST_FAILURES = (OCPPError, TimeoutError, ValidationError, UnknownCallErrorCodeError)
HTTP_TIMEOUT_S = 30.0
DATA_TRANSFER_MESSAGES = frozenset({"Echo"})
Followup = Callable[[], Awaitable[Any]]


class NotConnected(Exception):
    """There is no connection to send on, or it closed before the answer came."""


@dataclass
class ChargerOptions:
    """How one simulated charger is built and behaves. `url` is the endpoint without the identity
    (ws://host:port/ocpp); `key` the Basic-auth password (security profile 1), None for profile 0."""

    identity: str
    url: str
    key: str | None = None
    connectors: int = 2
    vendor: str = "CPO-Sim"
    model: str = "SIM-AC22"
    firmware_version: str = "1.0.0"
    heartbeat_interval_s: int = 300
    meter_interval_s: int = 60
    max_power_w: float = 11_000.0
    phases: int = 3
    voltage_v: float = 230.0
    id_tags: tuple[str, ...] = ("04A1B2C3D4E5F6",)
    sessions: bool = False
    session_s: tuple[float, float] = (60.0, 300.0)
    idle_s: tuple[float, float] = (30.0, 300.0)
    authorize_before_start: bool = True
    unplug_delay_s: float = 1.0
    reconnect_base_s: float = 1.0
    reconnect_max_s: float = 60.0
    reboot_delay_s: float = 0.5
    call_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    seed: int | str | None = None
    # Keep every transaction-related message the CSMS acknowledged, with its answer (`acknowledged`):
    # what fault tests compare with what the CSMS stored. Off by default (a long run would grow it).
    record_acknowledged: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.url.rstrip('/')}/{self.identity}"


@dataclass(eq=False)
class Link:
    """One WebSocket connection and the tasks that live exactly as long as it does."""

    ws: ClientConnection
    cp: Any
    receiver: asyncio.Task
    tasks: set[asyncio.Task] = field(default_factory=set)
    registration: str = ""
    heartbeat: asyncio.Task | None = None


def soon(action: Callable[[], Any]) -> Followup:
    """A follow-up that only changes state (and queues messages), wrapped as a coroutine function."""

    async def run() -> None:
        action()

    return run


class SimulatedCharger(ABC):
    """A simulated charger. `run()` connects and keeps reconnecting until `stop()`; the state (connectors,
    configuration, queue of transaction messages) survives disconnects and reboots.

    A version subclass sets `subprotocol`, `connection_class` and the status names its version uses, and
    implements the payload methods (`boot_payload`, `status_payload`, `authorize_payload`,
    `send_started`, `send_stopped`, `meter_values_payload`, `queue_meter_values`, ...)."""

    subprotocol: ClassVar[str] = ""
    connection_class: ClassVar[type[Any]]
    # Firmware statuses the version knows (the update flow skips the others) and those after which
    # the charger is Idle again.
    firmware_statuses: ClassVar[frozenset[str]] = frozenset()
    final_firmware_statuses: ClassVar[frozenset[str]] = frozenset()
    # The upload statuses: success, failure, and the message TriggerMessage asks for them with.
    upload_succeeded: ClassVar[str] = "Uploaded"
    upload_failed: ClassVar[str] = "UploadFailed"
    upload_status_message: ClassVar[str] = ""

    def __init__(self, options: ChargerOptions) -> None:
        if not 1 <= options.connectors <= 64:
            raise ValueError("a simulated charger has 1 to 64 connectors")
        self.options = options
        self.identity = options.identity
        self.rng = random.Random(options.seed if options.seed is not None else options.identity)
        self.config = ConfigurationStore(
            default_values(
                connectors=options.connectors,
                heartbeat_interval_s=options.heartbeat_interval_s,
                meter_interval_s=options.meter_interval_s,
                authorization_key=options.key,
            )
        )
        self.connectors = {
            n: Connector(
                n,
                Meter(
                    energy_wh=float(self.rng.randrange(0, 2_000_000)),
                    phases=options.phases,
                    voltage_v=options.voltage_v,
                ),
            )
            for n in range(1, options.connectors + 1)
        }
        self.operative = True
        self.pending_operative: bool | None = None
        # Reservations for any connector (1.6 ReserveNow connectorId 0, 2.x ReserveNow without evseId):
        # each keeps one idle connector free for its tag until it ends.
        self.floating: list[Reservation] = []
        self.profiles = ProfileStore(phases=options.phases, voltage_v=options.voltage_v)
        self.auth = LocalAuthorisation()
        self.stats = Stats()
        self.backoff = Backoff(
            base_s=options.reconnect_base_s, maximum_s=options.reconnect_max_s, rng=self.rng
        )
        self.firmware_version = options.firmware_version
        self.firmware_status = "Idle"
        self.diagnostics_status = "Idle"
        self.registration = ""
        self.last_refusal: int | None = None
        self.link: Link | None = None
        self._reported: dict[int, str] = {}
        self._outbox: deque[Outgoing] = deque()
        # (payload, answer) of every acknowledged transaction-related message, with record_acknowledged
        self.acknowledged: list[tuple[Any, Any]] = []
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._outbox_empty.set()
        self._reconnect = asyncio.Event()
        self._stopped = asyncio.Event()
        self._boot_now = asyncio.Event()
        self._reboot = False
        self._next_delay_s: float | None = None
        self._firmware_installed = False
        self._tasks: set[asyncio.Task] = set()

    # --- life cycle --------------------------------------------------------------------------------
    @property
    def accepted(self) -> bool:
        """Connected, and the current connection's BootNotification was accepted."""
        return self.link is not None and self.link.registration == "Accepted"

    async def run(self, *, initial_delay_s: float = 0.0) -> None:
        """Connect, serve and reconnect (randomised exponential back-off) until `stop()`."""
        try:
            if initial_delay_s > 0 and await self._sleep(initial_delay_s):
                return
            if self.options.sessions:
                for connector in self.connectors.values():
                    self.spawn(self._session_loop(connector))
            while not self._stopped.is_set():
                await self._connect_and_serve()
                if self._stopped.is_set():
                    break
                if self._reboot:
                    self._reboot = False
                    self.stats.reboots += 1
                    delay = self.options.reboot_delay_s
                elif self._next_delay_s is not None:
                    delay, self._next_delay_s = self._next_delay_s, None
                else:
                    delay = self.backoff.next()
                await self._sleep(delay)
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Ask `run()` to close the connection and return."""
        self._stopped.set()
        self._reconnect.set()

    def reboot(self) -> None:
        """Close the connection and connect again after `reboot_delay_s`, booting again."""
        self._reboot = True
        self._reconnect.set()

    def reconnect(self) -> None:
        """Close the connection and connect again at once (e.g. with a new AuthorizationKey)."""
        self._next_delay_s = 0.0
        self._reconnect.set()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped first; True when stopped."""
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return False
        return True

    def spawn(self, coro: Coroutine[Any, Any, Any], *, link: Link | None = None) -> asyncio.Task:
        """Run `coro` as a task of the charger (or of `link`, cancelled when it closes); a failure is
        logged and counted as an error."""
        task = asyncio.get_running_loop().create_task(coro)
        owner = link.tasks if link is not None else self._tasks
        owner.add(task)
        task.add_done_callback(lambda t: self._task_done(t, owner))
        return task

    def _task_done(self, task: asyncio.Task, owner: set[asyncio.Task]) -> None:
        owner.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.stats.errors += 1
            logger.error("%s: task failed: %r", self.identity, exc, exc_info=exc)

    def _connect_kwargs(self) -> dict[str, Any]:
        headers = {}
        key = self.config.get("AuthorizationKey")
        if key:
            token = base64.b64encode(f"{self.identity}:{key}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        ping = self.config.integer("WebSocketPingInterval") or None
        return {
            "subprotocols": [self.subprotocol],
            "additional_headers": headers,
            "compression": None,
            "proxy": None,
            "open_timeout": self.options.connect_timeout_s,
            "ping_interval": ping,
            "ping_timeout": ping,
            "close_timeout": 5,
            "max_queue": 8,
            "user_agent_header": f"{self.options.vendor}/{self.options.model}",
        }

    async def _connect_and_serve(self) -> None:
        self._reconnect.clear()
        try:
            ws = await connect(self.options.endpoint, **self._connect_kwargs())
        except InvalidStatus as exc:
            self.last_refusal = exc.response.status_code
            self._connect_failed(f"handshake refused with HTTP {exc.response.status_code}")
            return
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self._connect_failed(f"cannot connect: {exc!r}")
            return
        link: Link | None = None
        try:
            if ws.subprotocol != self.subprotocol:
                self._connect_failed(f"the server did not accept subprotocol {self.subprotocol}")
                return
            self.stats.connects += 1
            self.last_refusal = None
            cp = self.connection_class(self, ws)
            link = Link(ws=ws, cp=cp, receiver=asyncio.get_running_loop().create_task(cp.start()))
            self.link = link
            self.spawn(self._boot(link), link=link)
            reconnect = asyncio.get_running_loop().create_task(self._reconnect.wait())
            try:
                await asyncio.wait({link.receiver, reconnect}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reconnect.cancel()
            if link.receiver.done() and not link.receiver.cancelled():
                self._receiver_ended(link.receiver.exception())
        finally:
            if link is not None:
                await self._close_link(link)
            await ws.close()

    def _receiver_ended(self, exc: BaseException | None) -> None:
        """The server closed the connection (normal), or the receive loop failed (a bug: counted)."""
        if isinstance(exc, ConnectionClosed):
            logger.info("%s: connection closed by the server: %s", self.identity, exc)
        elif exc is not None:
            self.stats.errors += 1
            logger.error("%s: receive loop failed: %r", self.identity, exc, exc_info=exc)

    def _connect_failed(self, reason: str) -> None:
        self.stats.connect_failures += 1
        self.stats.errors += 1
        logger.info("%s: %s", self.identity, reason)

    async def _close_link(self, link: Link) -> None:
        if self.link is link:
            self.link = None
        tasks = [link.receiver, *link.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reported.clear()
        self._outbox = deque(item for item in self._outbox if item.transactional)
        if not self._outbox:
            self._outbox_empty.set()

    # --- requests to the CSMS ----------------------------------------------------------------------
    async def request(self, payload: Any) -> Any:
        """Send one request on the current connection and return the answer (a call_result dataclass).
        Raises NotConnected, or one of REQUEST_FAILURES when the CSMS answered with an error or not at all."""
        link = self.link
        if link is None:
            raise NotConnected()
        pending = asyncio.ensure_future(link.cp.call(payload, suppress=False))
        try:
            done, _ = await asyncio.wait({pending, link.receiver}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pending.cancel()
            raise
        if pending not in done:
            pending.cancel()
            raise NotConnected()
        try:
            answer = pending.result()
        except ConnectionClosed as exc:
            raise NotConnected() from exc
        self.stats.messages_sent += 1
        return answer

    async def notify(self, payload: Any) -> Any | None:
        """Send a notification now, outside the queue; None when it could not be delivered."""
        try:
            return await self.request(payload)
        except NotConnected:
            return None
        except REQUEST_FAILURES as exc:
            self.stats.errors += 1
            logger.warning("%s: %s failed: %r", self.identity, type(payload).__name__, exc)
            return None

    def enqueue(self, item: Outgoing) -> None:
        """Queue a message behind the transaction-related messages already waiting."""
        self._outbox.append(item)
        self._outbox_empty.clear()
        self._outbox_ready.set()

    async def wait_queue_empty(self, timeout_s: float) -> bool:
        """Wait until every queued message was delivered (or dropped); False after `timeout_s`."""
        try:
            await asyncio.wait_for(self._outbox_empty.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    async def _drain(self) -> None:
        """Deliver the queue in order while the connection lasts; a transaction-related message that
        fails is retried TransactionMessageAttempts times, TransactionMessageRetryInterval times n apart."""
        while True:
            if not self._outbox:
                self._outbox_empty.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            item = self._outbox[0]
            payload = item.build()
            if payload is None:
                self._outbox.popleft()
                continue
            try:
                answer = await self.request(payload)
            except NotConnected:
                return
            except REQUEST_FAILURES as exc:
                self.stats.errors += 1
                item.failures += 1
                attempts = max(1, self.config.integer("TransactionMessageAttempts"))
                logger.warning(
                    "%s: %s failed (%d of %d): %r",
                    self.identity,
                    type(payload).__name__,
                    item.failures,
                    attempts,
                    exc,
                )
                if not item.transactional or item.failures >= attempts:
                    self._outbox.popleft()
                else:
                    await asyncio.sleep(
                        self.config.integer("TransactionMessageRetryInterval") * item.failures
                    )
                continue
            self._outbox.popleft()
            if item.transactional and self.options.record_acknowledged:
                self.acknowledged.append((payload, answer))
            if item.on_result is not None:
                item.on_result(answer)

    # --- what a version spells ---------------------------------------------------------------------
    @abstractmethod
    def boot_payload(self, reason: str | None = None) -> Any:
        """The BootNotification (`reason`: why it boots, where the version says so)."""
        ...

    @abstractmethod
    def heartbeat_payload(self) -> Any: ...

    @abstractmethod
    def status_targets(self) -> list[int]:
        """What a StatusNotification is sent for at boot."""
        ...

    @abstractmethod
    def status_payload(self, connector_id: int, status: str) -> Any: ...

    @abstractmethod
    def authorize_payload(self, id_tag: str) -> Any: ...

    @abstractmethod
    def token_info(self, answer: Any) -> dict[str, Any] | None:
        """The token information of an answer that carries one (idTagInfo / idTokenInfo)."""
        ...

    @abstractmethod
    def send_started(self, tx: Transaction) -> None:
        """Queue the message(s) reporting a transaction's start."""
        ...

    @abstractmethod
    def send_stopped(
        self,
        tx: Transaction,
        *,
        reason: str,
        id_tag: str | None,
        stopped_at: datetime,
        meter_stop: int,
        end_values: list[dict[str, Any]],
    ) -> None:
        """Queue the message(s) reporting a transaction's end."""
        ...

    @abstractmethod
    def meter_values_payload(self, connector: Connector, *, context: str, tx: Transaction | None) -> Any: ...

    @abstractmethod
    def queue_meter_values(self, connector: Connector, tx: Transaction) -> None:
        """Queue the periodic meter values of a running transaction."""
        ...

    @abstractmethod
    def firmware_status_payload(self, status: str) -> Any: ...

    @abstractmethod
    def diagnostics_status_payload(self, status: str) -> Any: ...

    def trigger_status_targets(self, connector_id: int | None) -> list[int]:
        """What a triggered StatusNotification is sent for: the connector (EVSE) named, else what boot
        reports."""
        return [connector_id] if connector_id is not None else self.status_targets()

    # --- boot, heartbeat, status -------------------------------------------------------------------
    async def _boot(self, link: Link) -> None:
        """BootNotification until Accepted (Pending: again after the interval; Rejected: disconnect and
        come back after it), then report every status and start the heartbeat and the queue."""
        while True:
            try:
                answer = await self.request(self.boot_payload())
            except NotConnected:
                return
            except REQUEST_FAILURES as exc:
                self.stats.errors += 1
                logger.warning("%s: BootNotification failed: %r", self.identity, exc)
                if await self._sleep(self.options.reconnect_max_s):
                    return
                continue
            link.registration = self.registration = answer.status
            if answer.status == "Accepted":
                break
            wait_s = answer.interval if answer.interval > 0 else 60
            if answer.status == "Rejected":
                self._next_delay_s = wait_s
                self._reconnect.set()
                return
            self._boot_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._boot_now.wait(), timeout=wait_s)
        if answer.interval > 0:
            self.config.set("HeartbeatInterval", str(answer.interval))
        self.stats.boots_accepted += 1
        self.backoff.reset()
        self.boot_accepted()
        for connector_id in self.status_targets():
            status = self.status_of(connector_id)
            self._reported[connector_id] = status
            await self.notify(self.status_payload(connector_id, status))
        if self._firmware_installed:
            self._firmware_installed = False
            await self.firmware_status_report("Installed")
        self.restart_heartbeat()
        self.spawn(self._drain(), link=link)

    def boot_accepted(self) -> None:  # noqa: B027 - an optional hook, nothing by default
        """Called once a BootNotification was accepted, before the statuses are reported."""

    def wake_boot(self) -> None:
        """A triggered BootNotification while Pending: send it now instead of after the interval."""
        self._boot_now.set()

    def restart_heartbeat(self) -> None:
        """(Re)start the heartbeat at the current HeartbeatInterval, on an accepted connection only."""
        link = self.link
        if link is None or link.registration != "Accepted":
            return
        if link.heartbeat is not None:
            link.heartbeat.cancel()
        link.heartbeat = self.spawn(self._heartbeat(), link=link)

    async def _heartbeat(self) -> None:
        while True:
            interval = self.config.integer("HeartbeatInterval")
            if interval <= 0:
                return
            await asyncio.sleep(interval)
            answer = await self.notify(self.heartbeat_payload())
            if answer is None and self.link is None:
                return

    def status_of(self, connector_id: int) -> str:
        """The status a connector (0: the charger as a whole) is in now, as OCPP 1.6 names it."""
        if connector_id == 0:
            return "Available" if self.operative else "Unavailable"
        connector = self.connectors[connector_id]
        if connector.transaction is not None:
            return "Charging" if connector.meter.power_w > 0 else "SuspendedEVSE"
        if connector.phase:
            return connector.phase
        if not (self.operative and connector.operative):
            return "Unavailable"
        if connector.reservation is not None:
            return "Reserved"
        return "Available"

    def refresh_statuses(self) -> None:
        """Queue a StatusNotification for every connector whose status changed since it was reported."""
        if not self.accepted:
            return
        for connector_id in self.status_targets():
            status = self.status_of(connector_id)
            if self._reported.get(connector_id) != status:
                self._reported[connector_id] = status
                payload = self.status_payload(connector_id, status)
                self.enqueue(Outgoing(build=lambda p=payload: p, transactional=False))

    # --- triggered messages ------------------------------------------------------------------------
    async def send_triggered(self, message: str, connector_id: int | None) -> None:
        """Send the message a TriggerMessage asked for, with current information only (`connector_id`:
        the connector or EVSE it named)."""
        if message == "BootNotification":
            if self.accepted:
                answer = await self.notify(self.boot_payload("Triggered"))
                if answer is not None and answer.interval > 0:
                    self.config.set("HeartbeatInterval", str(answer.interval))
                    self.restart_heartbeat()
            else:
                self.triggered_boot()
        elif message == "Heartbeat":
            await self.notify(self.heartbeat_payload())
        elif message == "StatusNotification":
            for target in self.trigger_status_targets(connector_id):
                await self.notify(self.status_payload(target, self.status_of(target)))
        elif message == "MeterValues":
            for target in [connector_id] if connector_id else list(self.connectors):
                connector = self.connectors[target]
                await self.notify(
                    self.meter_values_payload(connector, context="Trigger", tx=connector.transaction)
                )
        elif message == "FirmwareStatusNotification":
            await self.notify(self.firmware_status_payload(self.firmware_status))
        elif message == self.upload_status_message:
            await self.notify(self.diagnostics_status_payload(self.diagnostics_status))

    def triggered_boot(self) -> None:
        """TriggerMessage(BootNotification) while not accepted yet: boot again now."""
        self.wake_boot()

    # --- authorisation -----------------------------------------------------------------------------
    def _known(self, id_tag: str) -> dict[str, Any] | None:
        return self.auth.lookup(
            id_tag,
            use_list=self.config.boolean("LocalAuthListEnabled"),
            use_cache=self.config.boolean("AuthorizationCacheEnabled"),
        )

    def remember(self, id_tag: str | None, info: dict[str, Any] | None) -> None:
        """Update the authorisation cache from token information (not for tags on the local list)."""
        if (
            id_tag
            and info
            and self.config.boolean("AuthorizationCacheEnabled")
            and id_tag not in self.auth.entries
        ):
            self.auth.cache[id_tag] = info

    async def authorize(self, id_tag: str) -> str:
        """Authorise like a charger: the local list or cache when pre-authorisation is on, else Authorize;
        offline, the local list or cache (LocalAuthorizeOffline) or AllowOfflineTxForUnknownId."""
        known = self._known(id_tag)
        known_ok = known is not None and known.get("status") == "Accepted"
        if known_ok and self.config.boolean("LocalPreAuthorize"):
            return "Accepted"
        try:
            answer = await self.request(self.authorize_payload(id_tag))
        except NotConnected:
            if known_ok and self.config.boolean("LocalAuthorizeOffline"):
                return "Accepted"
            if known is None and self.config.boolean("AllowOfflineTxForUnknownId"):
                return "Accepted"
            return "Invalid"
        except REQUEST_FAILURES as exc:
            self.stats.errors += 1
            logger.warning("%s: Authorize failed: %r", self.identity, exc)
            return "Invalid"
        info = self.token_info(answer)
        self.remember(id_tag, info)
        return str(info.get("status", "Invalid"))

    def check_token(self, tx: Transaction, id_tag: str | None, info: dict[str, Any] | None) -> None:
        """The CSMS answered a transaction message with token information: remember it, and end the
        transaction when the token of the running transaction is not accepted and StopTransactionOnInvalidId
        says so."""
        if not id_tag or not info:
            return
        self.remember(id_tag, info)
        connector = self.connectors[tx.connector_id]
        if (
            info.get("status") != "Accepted"
            and connector.transaction is tx
            and id_tag == tx.id_tag
            and self.config.boolean("StopTransactionOnInvalidId")
        ):
            self.stop_transaction(tx.connector_id, reason="DeAuthorized")

    def apply_local_list(
        self, *, version: int, update_type: str, entries: list[tuple[str, dict[str, Any] | None]]
    ) -> str:
        """SendLocalList once the version's own checks passed: `entries` as (tag, info or None to
        remove). VersionMismatch, Failed (the list would be too long) or Accepted."""
        if update_type == "Differential" and version <= self.auth.version:
            return "VersionMismatch"
        updated = {} if update_type == "Full" else dict(self.auth.entries)
        for tag, info in entries:
            if info is None:
                updated.pop(tag, None)
            else:
                updated[tag] = info
        if len(updated) > self.config.integer("LocalAuthListMaxLength"):
            return "Failed"
        self.auth.entries, self.auth.version = updated, version
        for tag in updated:
            self.auth.cache.pop(tag, None)
        return "Accepted"

    def local_list_version(self) -> int:
        """0 means "the list is empty" (-1 would mean "no local list support")."""
        return self.auth.version if self.auth.entries else 0

    def clear_cache(self) -> str:
        if not self.config.boolean("AuthorizationCacheEnabled"):
            return "Rejected"
        self.auth.cache.clear()
        return "Accepted"

    # --- transactions ------------------------------------------------------------------------------
    def free_for(self, connector_id: int, id_tag: str) -> bool:
        """Whether a transaction for `id_tag` may start on the connector now."""
        connector = self.connectors.get(connector_id)
        if connector is None or connector.transaction is not None or connector.phase:
            return False
        if not (self.operative and connector.operative):
            return False
        if connector.reservation is not None:
            return connector.reservation.id_tag == id_tag
        others = [r for r in self.floating if r.id_tag != id_tag]
        if not others:
            return True
        # Another tag's reservation for any connector: one idle connector must stay free for each.
        spare = sum(1 for n, c in self.connectors.items() if n != connector_id and self._idle(c))
        return spare >= len(others)

    def _idle(self, connector: Connector) -> bool:
        """No transaction, no car, no reservation of its own, operative: free for anyone."""
        return (
            self.operative
            and connector.operative
            and connector.transaction is None
            and not connector.phase
            and connector.reservation is None
        )

    def first_free_connector(self, id_tag: str) -> int | None:
        """The connector a remote start without a connector (EVSE) uses."""
        return next((n for n in self.connectors if self.free_for(n, id_tag)), None)

    def connector_with_transaction(self, transaction_id: int | str) -> int | None:
        """The connector running the transaction the CSMS knows as `transaction_id`."""
        for connector in self.connectors.values():
            if connector.transaction is not None and connector.transaction.transaction_id == transaction_id:
                return connector.connector_id
        return None

    async def start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        *,
        authorize: bool,
        profile: Profile | None = None,
        remote_start_id: int | None = None,
    ) -> bool:
        """Plug in, authorise (when asked), start, and meter until stopped. False when it did not start.
        `remote_start_id` is the CSMS's id of the remote start that asked for it (OCPP 2.0.1)."""
        if not self.free_for(connector_id, id_tag):
            return False
        connector = self.connectors[connector_id]
        connector.phase = "Preparing"
        self.refresh_statuses()
        if authorize and await self.authorize(id_tag) != "Accepted":
            connector.phase = ""
            self.refresh_statuses()
            return False
        connector.phase = ""
        if not self.free_for(connector_id, id_tag):
            self.refresh_statuses()
            return False
        reservation = connector.reservation or next((r for r in self.floating if r.id_tag == id_tag), None)
        if reservation is not None:
            self._drop_reservation(reservation)
        now = clock.now()
        connector.meter.advance()
        tx = Transaction(
            connector_id=connector_id,
            id_tag=id_tag,
            meter_start_wh=connector.meter.register_wh,
            started_at=now,
            reservation_id=reservation.reservation_id if reservation else None,
            remote_start_id=remote_start_id,
        )
        tx.begin_values = connector.meter.sampled_values(
            self.config.items("StopTxnSampledData"), context="Transaction.Begin"
        )
        connector.transaction = tx
        if profile is not None:
            self.profiles.install(profile)
        self.send_started(tx)
        self.stats.sessions_started += 1
        self.update_power(connector)
        self.refresh_statuses()
        tx.meter_task = self.spawn(self._meter_loop(connector, tx))
        return True

    def stop_transaction(self, connector_id: int, *, reason: str, id_tag: str | None = None) -> bool:
        """End the connector's transaction and queue the message that reports it (with the meter values
        StopTxnSampledData asks for). False when no transaction runs there."""
        connector = self.connectors.get(connector_id)
        if connector is None or connector.transaction is None:
            return False
        tx = connector.transaction
        if tx.meter_task is not None:
            tx.meter_task.cancel()
        connector.meter.set_power(0.0, offered_a=connector.meter.offered_a)
        stopped_at = clock.now()
        meter_stop = connector.meter.register_wh
        end_values = connector.meter.sampled_values(
            self.config.items("StopTxnSampledData"), context="Transaction.End"
        )
        connector.transaction = None
        connector.phase = "Finishing"
        self.profiles.end_transaction(connector_id)
        self.send_stopped(
            tx,
            reason=reason,
            id_tag=id_tag,
            stopped_at=stopped_at,
            meter_stop=meter_stop,
            end_values=end_values,
        )
        self.stats.sessions_completed += 1
        if connector.pending_operative is not None:
            connector.operative, connector.pending_operative = connector.pending_operative, None
        if self.pending_operative is not None and not any(c.transaction for c in self.connectors.values()):
            self.operative, self.pending_operative = self.pending_operative, None
        self.refresh_statuses()
        self.spawn(self._unplug(connector))
        return True

    async def _unplug(self, connector: Connector) -> None:
        await asyncio.sleep(self.options.unplug_delay_s)
        if connector.phase == "Finishing":
            connector.phase = ""
            self.refresh_statuses()

    def update_power(self, connector: Connector) -> None:
        """Draw what the charging profiles allow (the physical maximum without one)."""
        physical_a = self.options.max_power_w / (self.options.voltage_v * self.options.phases)
        tx = connector.transaction
        limit = self.profiles.limit_a(
            connector.connector_id, clock.now(), transaction_start=tx.started_at if tx else None
        )
        offered_a = physical_a if limit is None else max(0.0, min(limit, physical_a))
        power = offered_a * self.options.voltage_v * self.options.phases if tx is not None else 0.0
        connector.meter.set_power(power, offered_a=offered_a)

    def profiles_changed(self) -> None:
        """Charging profiles were set or cleared: draw what they allow from now on."""
        for connector in self.connectors.values():
            if connector.transaction is not None:
                self.update_power(connector)
        self.refresh_statuses()

    async def _meter_loop(self, connector: Connector, tx: Transaction) -> None:
        while connector.transaction is tx:
            interval = self.config.integer("MeterValueSampleInterval")
            await asyncio.sleep(interval if interval > 0 else 60)
            if connector.transaction is not tx:
                return
            self.update_power(connector)
            self.refresh_statuses()
            if interval > 0:
                self.queue_meter_values(connector, tx)

    def restart_metering(self) -> None:
        """MeterValueSampleInterval changed: sample at the new interval from now on."""
        for connector in self.connectors.values():
            tx = connector.transaction
            if tx is not None:
                if tx.meter_task is not None:
                    tx.meter_task.cancel()
                tx.meter_task = self.spawn(self._meter_loop(connector, tx))

    async def _session_loop(self, connector: Connector) -> None:
        """Automatic sessions: a car arrives after an idle while, charges for a while, and leaves. Connector
        n uses the n-th of `id_tags` (cycling), so one driver does not charge at two connectors at once."""
        tags = self.options.id_tags
        id_tag = tags[(connector.connector_id - 1) % len(tags)]
        while True:
            await asyncio.sleep(self.rng.uniform(*self.options.idle_s))
            if not self.accepted or not self.free_for(connector.connector_id, id_tag):
                continue
            if not await self.start_transaction(
                connector.connector_id, id_tag, authorize=self.options.authorize_before_start
            ):
                continue
            tx = connector.transaction
            await asyncio.sleep(self.rng.uniform(*self.options.session_s))
            if tx is not None and connector.transaction is tx:
                self.stop_transaction(connector.connector_id, reason="Local", id_tag=id_tag)

    def configuration_changed(self, keys: list[str]) -> None:
        """Configuration keys were changed by the CSMS: act on the ones that change behaviour now."""
        if "HeartbeatInterval" in keys:
            self.restart_heartbeat()
        if "MeterValueSampleInterval" in keys:
            self.restart_metering()
        if "AuthorizationKey" in keys:
            # Security whitepaper A01 / 2.0.1 A01.FR.11: disconnect (keeping queued messages) and
            # connect with the new password.
            self.reconnect()

    # --- availability and reservations -------------------------------------------------------------
    def change_availability(self, connector_id: int, *, operative: bool) -> str:
        """ChangeAvailability: Accepted, or Scheduled when a running transaction must end first."""
        targets = list(self.connectors.values()) if connector_id == 0 else [self.connectors[connector_id]]
        scheduled = False
        for connector in targets:
            if connector.transaction is not None and not operative:
                connector.pending_operative = operative
                scheduled = True
            else:
                connector.operative, connector.pending_operative = operative, None
        if connector_id == 0:
            if scheduled:
                self.pending_operative = operative
            else:
                self.operative, self.pending_operative = operative, None
        return "Scheduled" if scheduled else "Accepted"

    def reserve(
        self,
        *,
        reservation_id: int,
        connector_id: int,
        id_tag: str,
        parent_id_tag: str | None,
        expires_at: datetime,
    ) -> str:
        """ReserveNow: a reservation with the same id is replaced. Accepted, Occupied, Unavailable or
        Rejected. Connector 0: any connector (one idle connector is kept free for the tag)."""
        for existing in self._reservations():
            if existing.reservation_id == reservation_id:
                self._drop_reservation(existing)
        reservation = Reservation(
            reservation_id=reservation_id,
            connector_id=connector_id,
            id_tag=id_tag,
            parent_id_tag=parent_id_tag,
            expires_at=expires_at,
        )
        if connector_id == 0:
            if not self.operative:
                return "Unavailable"
            if sum(1 for c in self.connectors.values() if self._idle(c)) <= len(self.floating):
                return "Occupied"
            if expires_at <= clock.now():
                return "Rejected"
            self.floating.append(reservation)
        else:
            connector = self.connectors[connector_id]
            if not (self.operative and connector.operative):
                return "Unavailable"
            if connector.transaction is not None or connector.phase or connector.reservation is not None:
                return "Occupied"
            if expires_at <= clock.now():
                return "Rejected"
            connector.reservation = reservation
        reservation.expiry_task = self.spawn(self._expire(reservation))
        return "Accepted"

    def _reservations(self) -> list[Reservation]:
        """Every reservation the charger holds: its connectors' and those for any connector."""
        held = [c.reservation for c in self.connectors.values() if c.reservation is not None]
        return held + list(self.floating)

    def cancel_reservation(self, reservation_id: int) -> bool:
        """CancelReservation: False when no reservation has that id."""
        for reservation in self._reservations():
            if reservation.reservation_id == reservation_id:
                self._drop_reservation(reservation)
                return True
        return False

    def _drop_reservation(self, reservation: Reservation) -> None:
        if reservation.connector_id == 0:
            if reservation in self.floating:
                self.floating.remove(reservation)
        else:
            connector = self.connectors[reservation.connector_id]
            if connector.reservation is reservation:
                connector.reservation = None
        if reservation.expiry_task is not None and reservation.expiry_task is not asyncio.current_task():
            reservation.expiry_task.cancel()

    async def _expire(self, reservation: Reservation) -> None:
        await asyncio.sleep(max(0.0, (reservation.expires_at - clock.now()).total_seconds()))
        self._reservation_expired(reservation)

    def _reservation_expired(self, reservation: Reservation) -> None:
        self._drop_reservation(reservation)
        self.reservation_ended(reservation, "Expired")
        self.refresh_statuses()

    def expire_reservations(self, *, now: datetime) -> list[int]:
        """Expire the reservations due at `now` as the charger's own clock would (a test moves time on
        without waiting); returns their ids."""
        due = [r for r in self._reservations() if r.expires_at <= now]
        for reservation in due:
            self._reservation_expired(reservation)
        return [r.reservation_id for r in due]

    def reservation_ended(self, reservation: Reservation, status: str) -> None:
        """The charger ended a reservation by itself (`status`: Expired or Removed). OCPP 1.6 says so only
        by the connector's status; 2.x sends ReservationStatusUpdate."""
        return None

    # --- smart charging ----------------------------------------------------------------------------
    def install_profile(self, profile: Profile, *, rate_units: list[str]) -> bool:
        """SetChargingProfile once parsed: False (Rejected) when the charger cannot execute it (limits of
        its configuration, `rate_units` it accepts, a TxProfile without its transaction, too many
        profiles)."""
        config = self.config
        if (
            profile.stack_level > config.integer("ChargeProfileMaxStackLevel")
            or len(profile.periods) > config.integer("ChargingScheduleMaxPeriods")
            or profile.unit not in rate_units
        ):
            return False
        if profile.purpose == CHARGE_POINT_MAX and profile.connector_id != 0:
            return False
        if profile.purpose == TX:
            # A TxProfile needs a running transaction on that connector (and names it, when it names one).
            connector = self.connectors.get(profile.connector_id)
            tx = connector.transaction if connector is not None else None
            if tx is None or profile.transaction_id not in (None, tx.transaction_id):
                return False
        before = list(self.profiles.profiles)
        self.profiles.install(profile)
        if len(self.profiles.profiles) > config.integer("MaxChargingProfilesInstalled"):
            self.profiles.profiles = before
            return False
        return True

    def composite_schedule(
        self, connector_id: int, duration: int, unit: str
    ) -> tuple[datetime, list[dict[str, Any]]]:
        """GetCompositeSchedule: its start (now, whole seconds) and periods for connector (EVSE)
        `connector_id`, 0 meaning the charger as a whole."""
        options = self.options
        physical_a = options.max_power_w / (options.voltage_v * options.phases)
        if connector_id == 0:
            physical_a *= len(self.connectors)
            tx_start = None
        else:
            tx = self.connectors[connector_id].transaction
            tx_start = tx.started_at if tx is not None else None
        start = clock.now().replace(microsecond=0)
        periods = self.profiles.composite(
            connector_id,
            start,
            duration,
            unit=unit,
            physical_max_a=physical_a,
            transaction_start=tx_start,
            max_periods=self.config.integer("ChargingScheduleMaxPeriods"),
        )
        return start, periods

    # --- firmware and file uploads -----------------------------------------------------------------
    async def firmware_status_report(self, status: str) -> None:
        """Send a FirmwareStatusNotification (a status the version does not know is skipped); after a
        final status the charger is Idle again."""
        if status not in self.firmware_statuses:
            return
        self.firmware_status = status
        await self.notify(self.firmware_status_payload(status))
        if status in self.final_firmware_statuses:
            self.firmware_status = "Idle"

    async def diagnostics_status_report(self, status: str) -> None:
        """Send the upload's status notification; after a final status the charger is Idle again."""
        self.diagnostics_status = status
        await self.notify(self.diagnostics_status_payload(status))
        if status in (self.upload_succeeded, self.upload_failed):
            self.diagnostics_status = "Idle"

    async def update_firmware(
        self,
        *,
        location: str,
        retrieve_at: datetime,
        retries: int,
        retry_interval_s: int,
        install_at: datetime | None = None,
        signature: str | None = None,
    ) -> None:
        """UpdateFirmware: DownloadScheduled (retrieve time in the future), Downloading, Downloaded (HTTP and
        HTTPS only), SignatureVerified (when signed), InstallScheduled (install time in the future),
        Installing once no transaction runs, InstallRebooting, reboot; Installed after the next accepted
        boot. The statuses the version does not know are not sent."""
        await asyncio.sleep(0)  # the UpdateFirmware answer goes first
        if retrieve_at > clock.now():
            await self.firmware_status_report("DownloadScheduled")
            await asyncio.sleep((retrieve_at - clock.now()).total_seconds())
        await self.firmware_status_report("Downloading")
        if not await self._transfer(location, None, retries=retries, retry_interval_s=retry_interval_s):
            await self.firmware_status_report("DownloadFailed")
            return
        await self.firmware_status_report("Downloaded")
        if signature:
            await self.firmware_status_report("SignatureVerified")
        if install_at is not None and install_at > clock.now():
            await self.firmware_status_report("InstallScheduled")
            await asyncio.sleep((install_at - clock.now()).total_seconds())
        while any(c.transaction is not None for c in self.connectors.values()):
            await asyncio.sleep(1.0)
        await self.firmware_status_report("Installing")
        name = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        self.firmware_version = (name or f"{self.firmware_version}+1")[:50]
        await self.firmware_status_report("InstallRebooting")
        self._firmware_installed = True
        self.firmware_rebooted()

    def firmware_rebooted(self) -> None:
        """Reboot into newly installed firmware."""
        self.reboot()

    async def upload_file(
        self, *, location: str, file_name: str, retries: int, retry_interval_s: int
    ) -> None:
        """GetDiagnostics / GetLog: Uploading, an HTTP PUT of the diagnostics text (to location + file
        name when the location ends with /), then the success or failure status. HTTP and HTTPS only."""
        await asyncio.sleep(0)  # the command's answer goes first
        await self.diagnostics_status_report("Uploading")
        url = location + file_name if location.endswith("/") else location
        uploaded = await self._transfer(
            url, self.diagnostics_text().encode(), retries=retries, retry_interval_s=retry_interval_s
        )
        await self.diagnostics_status_report(self.upload_succeeded if uploaded else self.upload_failed)

    async def _transfer(self, url: str, body: bytes | None, *, retries: int, retry_interval_s: int) -> bool:
        """Download (body None) or upload, retried `retries` times `retry_interval_s` apart."""
        for attempt in range(retries + 1):
            if await asyncio.to_thread(http_transfer, url, body):
                return True
            if attempt < retries:
                await asyncio.sleep(retry_interval_s)
        return False

    def diagnostics_text(self) -> str:
        """The diagnostics file: identity, firmware, registration, counters and connector states."""
        lines = [
            f"identity={self.identity}",
            f"vendor={self.options.vendor}",
            f"model={self.options.model}",
            f"firmware={self.firmware_version}",
            f"registration={self.registration}",
            f"stats={self.stats}",
        ]
        for connector in self.connectors.values():
            lines.append(
                f"connector {connector.connector_id}: {self.status_of(connector.connector_id)} "
                f"register={connector.meter.register_wh}Wh"
            )
        return "\n".join(lines) + "\n"


class SimulatedConnection:
    """The part of one connection that answers the CSMS, mixed into a version's library ChargePoint:
    every answer is counted, and a follow-up registered with it runs as a charger task once the answer
    has been sent (an `@after` hook for every action, installed here rather than written per handler).

    Handlers are named `on_<action>` (a name like `start` would replace `ChargePoint.start()`). They
    decide the answer at once and never wait for the CSMS."""

    def __init__(self, station: Any, connection: ClientConnection) -> None:
        super().__init__(  # type: ignore[call-arg]
            station.identity,
            connection,
            response_timeout=station.options.call_timeout_s,
            logger=library_logger,
        )
        self.station = station
        self._followups: dict[str, Followup] = {}
        route_map: dict[str, dict[str, Any]] = self.route_map  # type: ignore[attr-defined]
        for handlers in route_map.values():
            if "_on_action" in handlers:
                handlers.setdefault("_after_action", self._after)

    def _answer(self, unique_id: str, result: Any, followup: Followup | None = None) -> Any:
        self.station.stats.commands_answered += 1
        if followup is not None:
            self._followups[unique_id] = followup
        return result

    def _after(self, call_unique_id: str, **kwargs: Any) -> None:
        followup = self._followups.pop(call_unique_id, None)
        if followup is not None:
            self.station.spawn(followup())

    def _valid_connector(self, connector_id: int | None, *, allow_zero: bool = False) -> bool:
        """A connector (1.6) or EVSE (2.0.1) of the charger; 0 (the charger as a whole) when allowed."""
        return connector_id in self.station.connectors or (allow_zero and connector_id == 0)

    def _remote_start(
        self, *, requested: int | None, tag: str, profile: Profile | None, remote_start_id: int | None
    ) -> tuple[bool, Followup | None]:
        """Whether a remote start is accepted, and the follow-up that starts the transaction."""
        station = self.station
        chosen = requested if requested is not None else station.first_free_connector(tag)
        if not station.accepted or chosen is None or not station.free_for(chosen, tag):
            return False, None
        authorize = station.config.boolean("AuthorizeRemoteTxRequests")
        return True, lambda: station.start_transaction(
            chosen, tag, authorize=authorize, profile=profile, remote_start_id=remote_start_id
        )

    def _remote_stop(self, transaction_id: int | str) -> Followup | None:
        """The follow-up that ends the transaction, None when no transaction has that id (Rejected)."""
        connector_id = self.station.connector_with_transaction(transaction_id)
        if connector_id is None:
            return None
        return soon(lambda: self.station.stop_transaction(connector_id, reason="Remote"))

    def _data_transfer_status(self, vendor_id: str, message_id: str | None) -> str:
        if vendor_id != self.station.options.vendor:
            return "UnknownVendorId"
        if message_id is not None and message_id not in DATA_TRANSFER_MESSAGES:
            return "UnknownMessageId"
        return "Accepted"


def http_transfer(url: str, body: bytes | None) -> bool:
    """GET `url` (body None) or PUT `body` to it; True on a 2xx answer. Blocking: run it in a thread."""
    if urlsplit(url).scheme not in ("http", "https"):
        return False
    headers = {"Content-Type": "text/plain; charset=utf-8"} if body is not None else {}
    # The scheme is checked above: only http(s), never file: or custom schemes.
    request = urllib.request.Request(  # noqa: S310
        url, data=body, method="GET" if body is None else "PUT", headers=headers
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT_S) as response:
            response.read()
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.info("transfer to %s failed: %r", url, exc)
        return False
