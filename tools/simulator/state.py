"""What a simulated charger remembers: connectors, transactions, reservations, the local authorisation
list and cache, and its counters. Plain data; the behaviour lives in `base.py`
and the version modules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from tools.simulator.meter import Meter


@dataclass
class Stats:
    """Counters of one charger (a fleet adds them up)."""

    connects: int = 0
    connect_failures: int = 0
    boots_accepted: int = 0
    reboots: int = 0
    sessions_started: int = 0
    sessions_completed: int = 0
    commands_answered: int = 0
    messages_sent: int = 0
    errors: int = 0

    def add(self, other: Stats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Transaction:
    """A transaction as the charger knows it. OCPP 1.6: `transaction_id` is None until StartTransaction is
    answered (the start may be queued while offline); messages built later read it at send time. OCPP
    2.0.1: the station chooses the (string) transactionId itself and numbers the events by `seq_no`."""

    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: datetime
    reservation_id: int | None = None
    transaction_id: int | str | None = None
    begin_values: list[dict[str, Any]] = field(default_factory=list)
    meter_task: asyncio.Task | None = None
    remote_start_id: int | None = None
    seq_no: int = 0


@dataclass
class Reservation:
    reservation_id: int
    connector_id: int
    id_tag: str
    parent_id_tag: str | None
    expires_at: datetime
    expiry_task: asyncio.Task | None = None


@dataclass
class Connector:
    """One connector. `operative` survives reboots (ChangeAvailability is persistent); `pending_operative`
    is a change scheduled for the end of the running transaction."""

    connector_id: int
    meter: Meter
    operative: bool = True
    pending_operative: bool | None = None
    phase: str = ""  # "Preparing" / "Finishing" around a transaction, else ""
    transaction: Transaction | None = None
    reservation: Reservation | None = None


@dataclass
class Outgoing:
    """A message waiting in the charger's ordered queue. `build` makes the payload at send time (so a
    queued MeterValues can carry a transactionId learnt after it was queued) or returns None when it can
    no longer be sent. Transaction-related messages survive disconnects and are retried."""

    build: Callable[[], Any]
    transactional: bool
    on_result: Callable[[Any], None] | None = None
    failures: int = 0


@dataclass
class LocalAuthorisation:
    """The local authorisation list (versioned, SendLocalList) and the authorisation cache."""

    version: int = 0
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)

    def lookup(self, id_tag: str, *, use_list: bool, use_cache: bool) -> dict[str, Any] | None:
        if use_list and id_tag in self.entries:
            return self.entries[id_tag]
        if use_cache:
            return self.cache.get(id_tag)
        return None
