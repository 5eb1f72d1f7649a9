"""One simulated OCPP 2.0.1 charging station: the 1.6 charger's connection, queue, meter, reservations
and smart charging, with the 2.0.1 messages and transaction flow.

Each EVSE has one connector (EVSE n is the charger's connector n, connectorId 1). A transaction is
reported by TransactionEvent messages the station numbers itself (seqNo from 0, a transactionId it
generates): Started when an authorised driver plugs in (TxStartPoint Authorized), Updated with the
periodic meter values, Ended when it stops. They wait in the ordered queue across disconnects and
carry `offline` when they were made without a connection. The device model (`devicemodel.py`) is the
2.0.1 view of the same configuration store; the CSMS's commands are answered in `v201.py`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ocpp.v201 import call

from apps.ocpp_gateway.simulator.charger import (
    REQUEST_FAILURES,
    Charger,
    ChargerOptions,
    NotConnected,
    http_transfer,
)
from apps.ocpp_gateway.simulator.devicemodel import DeviceModel, own_defaults
from apps.ocpp_gateway.simulator.state import Connector, Outgoing, Transaction
from apps.ocpp_gateway.simulator.v16 import iso
from apps.ocpp_gateway.simulator.v201 import SimulatedChargingStation
from cpo import clock

logger = logging.getLogger(__name__)
SUBPROTOCOL = "ocpp2.0.1"
RFID_TYPE = "ISO14443"
# stoppedReason → the triggerReason of the Ended event it causes.
STOP_TRIGGERS = {
    "Local": "StopAuthorized",
    "Remote": "RemoteStop",
    "DeAuthorized": "Deauthorized",
    "ImmediateReset": "ResetCommand",
    "EVDisconnected": "EVCommunicationLost",
    "Timeout": "EVConnectTimeout",
}
TX_STARTED_MEASURANDS = "SampledDataCtrlr.TxStartedMeasurands"
FINAL_FIRMWARE_STATUSES = frozenset(
    {"Installed", "DownloadFailed", "InstallationFailed", "InstallVerificationFailed", "InvalidSignature"}
)


def id_token(tag: str) -> dict[str, str]:
    """The 2.0.1 idToken of one of the simulator's RFID tags."""
    return {"id_token": tag, "type": RFID_TYPE}


def sampled_values(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The meter's 1.6-shaped sampled values as 2.0.1 SampledValueType (a number, unitOfMeasure)."""
    out = []
    for value in values:
        item = {key: value[key] for key in ("context", "measurand", "location", "phase") if key in value}
        item["value"] = float(value["value"])
        item["unit_of_measure"] = {"unit": value["unit"]}
        out.append(item)
    return out


class ChargingStation(Charger):
    """A simulated OCPP 2.0.1 charging station (see the module docstring)."""

    subprotocol = SUBPROTOCOL
    connection_class = SimulatedChargingStation

    def __init__(self, options: ChargerOptions) -> None:
        super().__init__(options)
        for key, value in own_defaults(organization=options.vendor).items():
            self.config.set(key, value)
        self.device_model = DeviceModel(self.config)
        self.boot_reason = "PowerUp"
        self.firmware_request_id: int | None = None
        self.firmware_task: asyncio.Task | None = None
        self.log_request_id: int | None = None
        self.reset_when_idle = False
        self.costs: dict[str, float] = {}

    # --- boot, heartbeat, status -------------------------------------------------------------------
    def boot_payload(self, reason: str | None = None) -> call.BootNotification:
        return call.BootNotification(
            charging_station={
                "model": self.options.model[:20],
                "vendor_name": self.options.vendor[:50],
                "serial_number": self.identity[:25],
                "firmware_version": self.firmware_version[:50],
            },
            reason=reason or self.boot_reason,
        )

    def boot_accepted(self) -> None:
        # A later connection without a reboot boots for no reason the station could name.
        self.boot_reason = "Unknown"

    def reboot(self, reason: str = "RemoteReset") -> None:
        """Close the connection and boot again with BootNotification reason `reason`."""
        self.boot_reason = reason
        super().reboot()

    def heartbeat_payload(self) -> call.Heartbeat:
        return call.Heartbeat()

    def status_targets(self) -> list[int]:
        """2.0.1 reports connectors only (the station as a whole has no StatusNotification)."""
        return list(self.connectors)

    def status_of(self, connector_id: int) -> str:
        """The 2.0.1 ConnectorStatus of EVSE `connector_id`'s connector (0: the station, as 1.6 would say)."""
        status = super().status_of(connector_id)
        if connector_id == 0 or status in ("Available", "Unavailable", "Reserved"):
            return status
        return "Occupied"

    def status_payload(self, connector_id: int, status: str) -> call.StatusNotification:
        return call.StatusNotification(
            timestamp=iso(clock.now()), connector_status=status, evse_id=connector_id, connector_id=1
        )

    def firmware_status_payload(self, status: str) -> call.FirmwareStatusNotification:
        request_id = self.firmware_request_id if status != "Idle" else None
        return call.FirmwareStatusNotification(status=status, request_id=request_id)

    def diagnostics_status_payload(self, status: str) -> call.LogStatusNotification:
        request_id = self.log_request_id if status != "Idle" else None
        return call.LogStatusNotification(status=status, request_id=request_id)

    # --- authorisation -----------------------------------------------------------------------------
    async def authorize(self, id_tag: str) -> str:
        """Authorise like a 2.0.1 station: the local list or cache when LocalPreAuthorize is on, else
        Authorize; offline, the local list or cache (LocalAuthorizeOffline) or OfflineTxForUnknownId."""
        known = self._known(id_tag)
        known_ok = known is not None and known.get("status") == "Accepted"
        if known_ok and self.config.boolean("LocalPreAuthorize"):
            return "Accepted"
        try:
            answer = await self.request(call.Authorize(id_token=id_token(id_tag)))
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
        self.remember(id_tag, answer.id_token_info)
        return str(answer.id_token_info.get("status", "Invalid"))

    # --- transactions ------------------------------------------------------------------------------
    def event(
        self,
        tx: Transaction,
        event_type: str,
        trigger_reason: str,
        *,
        meter_value: list[dict[str, Any]] | None = None,
        id_tag: str | None = None,
        stopped_reason: str | None = None,
        charging_state: str | None = None,
        with_evse: bool = False,
    ) -> None:
        """Queue a TransactionEvent of `tx` with the next seqNo; `offline` when made without a connection."""
        seq_no, tx.seq_no = tx.seq_no, tx.seq_no + 1
        info: dict[str, Any] = {"transaction_id": tx.transaction_id}
        if charging_state:
            info["charging_state"] = charging_state
        if stopped_reason:
            info["stopped_reason"] = stopped_reason
        if tx.remote_start_id is not None and event_type == "Started":
            info["remote_start_id"] = tx.remote_start_id
        payload = call.TransactionEvent(
            event_type=event_type,
            timestamp=iso(clock.now()),
            trigger_reason=trigger_reason,
            seq_no=seq_no,
            transaction_info=info,
            meter_value=meter_value or None,
            offline=True if not self.accepted else None,
            reservation_id=tx.reservation_id if event_type == "Started" else None,
            evse={"id": tx.connector_id, "connector_id": 1} if with_evse or event_type == "Started" else None,
            id_token=id_token(id_tag) if id_tag else None,
        )
        self.enqueue(
            Outgoing(
                build=lambda: payload, transactional=True, on_result=lambda a: self._answered(tx, id_tag, a)
            )
        )

    def _answered(self, tx: Transaction, id_tag: str | None, answer: Any) -> None:
        """A TransactionEventResponse: remember the token's status; end a transaction the CSMS does not
        authorise when StopTxOnInvalidId says so."""
        info = answer.id_token_info
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

    def send_started(self, tx: Transaction) -> None:
        tx.transaction_id = str(uuid.uuid4())
        connector = self.connectors[tx.connector_id]
        begin = connector.meter.sampled_values(
            self.config.items(TX_STARTED_MEASURANDS), context="Transaction.Begin"
        )
        self.event(
            tx,
            "Started",
            "RemoteStart" if tx.remote_start_id is not None else "Authorized",
            meter_value=[{"timestamp": iso(tx.started_at), "sampled_value": sampled_values(begin)}],
            id_tag=tx.id_tag,
            charging_state="Charging",
        )

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
        self.event(
            tx,
            "Ended",
            STOP_TRIGGERS.get(reason, "AbnormalCondition"),
            meter_value=[{"timestamp": iso(stopped_at), "sampled_value": sampled_values(end_values)}]
            if end_values
            else None,
            id_tag=id_tag,
            stopped_reason=reason,
            charging_state="EVConnected",
        )
        if self.reset_when_idle and not any(c.transaction for c in self.connectors.values()):
            self.reset_when_idle = False
            self.spawn(self._reset_after_queue("ScheduledReset"))

    def queue_meter_values(self, connector: Connector, tx: Transaction) -> None:
        """A periodic TransactionEvent Updated with the TxUpdatedMeasurands."""
        values = connector.meter.sampled_values(
            self.config.items("MeterValuesSampledData"), context="Sample.Periodic"
        )
        self.event(
            tx,
            "Updated",
            "MeterValuePeriodic",
            meter_value=[{"timestamp": iso(clock.now()), "sampled_value": sampled_values(values)}],
        )

    def trigger_transaction_event(self, connector: Connector) -> bool:
        """TriggerMessage(TransactionEvent): an Updated event with the current meter values."""
        tx = connector.transaction
        if tx is None:
            return False
        values = connector.meter.sampled_values(
            self.config.items("MeterValuesSampledData"), context="Trigger"
        )
        self.event(
            tx,
            "Updated",
            "Trigger",
            meter_value=[{"timestamp": iso(clock.now()), "sampled_value": sampled_values(values)}],
            charging_state="Charging" if connector.meter.power_w > 0 else "SuspendedEVSE",
            with_evse=True,
        )
        return True

    def meter_values_payload(self, connector: Connector, *, context: str, tx: Transaction | None) -> Any:
        values = connector.meter.sampled_values(self.config.items("MeterValuesSampledData"), context=context)
        return call.MeterValues(
            evse_id=connector.connector_id,
            meter_value=[{"timestamp": iso(clock.now()), "sampled_value": sampled_values(values)}],
        )

    def queued_events(self, transaction_id: str | None = None) -> int:
        """TransactionEvents waiting in the queue (of one transaction, when given)."""
        return sum(
            1
            for item in self._outbox
            if item.transactional
            and (transaction_id is None or item.build().transaction_info["transaction_id"] == transaction_id)
        )

    # --- reset -------------------------------------------------------------------------------------
    def request_reset(self, kind: str, evse_id: int | None) -> str:
        """Reset: Immediate ends the transactions (ImmediateReset) and reboots; OnIdle reboots at once
        when idle, else is Scheduled for when the last transaction ends. An EVSE reset only ends that
        EVSE's transaction (the EVSE has nothing else to restart here)."""
        if evse_id is not None:
            connector = self.connectors[evse_id]
            if connector.transaction is None:
                return "Accepted"
            if kind == "Immediate":
                self.stop_transaction(evse_id, reason="ImmediateReset")
                return "Accepted"
            return "Scheduled"
        busy = any(c.transaction is not None for c in self.connectors.values())
        if kind == "OnIdle" and busy:
            self.reset_when_idle = True
            return "Scheduled"
        for connector_id in self.connectors:
            self.stop_transaction(connector_id, reason="ImmediateReset")
        self.spawn(self._reset_after_queue("RemoteReset"))
        return "Accepted"

    async def _reset_after_queue(self, reason: str) -> None:
        """Deliver what is queued (the Ended events), then reboot."""
        await asyncio.sleep(0)
        await self.wait_queue_empty(self.options.call_timeout_s)
        self.reboot(reason)

    # --- firmware and logs -------------------------------------------------------------------------
    def request_firmware_update(
        self,
        *,
        request_id: int,
        location: str,
        retrieve_at: datetime,
        install_at: datetime | None,
        signature: str | None,
        retries: int,
        retry_interval_s: int,
    ) -> str:
        """UpdateFirmware: Accepted, or AcceptedCanceled when it replaces an update in progress."""
        status = "Accepted"
        if self.firmware_task is not None and not self.firmware_task.done():
            self.firmware_task.cancel()
            status = "AcceptedCanceled"
        self.firmware_request_id = request_id
        self.firmware_task = self.spawn(
            self._update_firmware(
                location=location,
                retrieve_at=retrieve_at,
                install_at=install_at,
                signature=signature,
                retries=retries,
                retry_interval_s=retry_interval_s,
            )
        )
        return status

    async def _update_firmware(
        self,
        *,
        location: str,
        retrieve_at: datetime,
        install_at: datetime | None,
        signature: str | None,
        retries: int,
        retry_interval_s: int,
    ) -> None:
        """DownloadScheduled (retrieveDateTime in the future), Downloading, Downloaded, SignatureVerified
        (when signed), InstallScheduled (installDateTime in the future), Installing once no transaction
        runs, InstallRebooting, reboot; Installed after the next accepted boot."""
        await asyncio.sleep(0)  # the UpdateFirmwareResponse goes first
        if retrieve_at > clock.now():
            await self.firmware_status_report("DownloadScheduled")
            await asyncio.sleep((retrieve_at - clock.now()).total_seconds())
        await self.firmware_status_report("Downloading")
        downloaded = False
        for attempt in range(retries + 1):
            downloaded = await asyncio.to_thread(http_transfer, location, None)
            if downloaded or attempt == retries:
                break
            await asyncio.sleep(retry_interval_s)
        if not downloaded:
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
        self.reboot("FirmwareUpdate")

    async def firmware_status_report(self, status: str) -> None:
        self.firmware_status = status
        await self.notify(self.firmware_status_payload(status))
        if status in FINAL_FIRMWARE_STATUSES:
            self.firmware_status = "Idle"

    async def upload_log(
        self, *, request_id: int, location: str, file_name: str, retries: int, retry_interval_s: int
    ) -> None:
        """GetLog: Uploading, an HTTP PUT of the log (to location + file name when it ends with /), then
        Uploaded or UploadFailure."""
        await asyncio.sleep(0)  # the GetLogResponse goes first
        self.log_request_id = request_id
        self.diagnostics_status = "Uploading"
        await self.notify(self.diagnostics_status_payload("Uploading"))
        url = location + file_name if location.endswith("/") else location
        body = self.diagnostics_text().encode()
        uploaded = False
        for attempt in range(retries + 1):
            uploaded = await asyncio.to_thread(http_transfer, url, body)
            if uploaded or attempt == retries:
                break
            await asyncio.sleep(retry_interval_s)
        await self.notify(self.diagnostics_status_payload("Uploaded" if uploaded else "UploadFailure"))
        self.diagnostics_status = "Idle"
