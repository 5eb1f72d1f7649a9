"""Rebalance latency: from the last of `chargers` transaction starts at one site to the last charging profile
accepted, as smart charging runs in production: a stack server holds the chargers, a Celery worker runs the
coalesced rebalance (CPO_SMART_COALESCE_S included), the profiles go out through the command service and
the chargers' answers come back through the command outcome path.

The chargers are OCPP 1.6 clients run by this process (raw `websockets`, like benchmarks.clients). Each
round: every charger sends StartTransaction at once (a burst, as when a car park opens); the round ends
when every charger holds a TxProfile for its transaction with the final share (the site's budget over
`chargers`) and nothing more arrives. The figure of a round is the time from the last start (the last
StartTransaction answered: the server has recorded every session) to the last of those final profiles
answered Accepted by its charger (wall clock of this process); `rebalance_from_sent_p99_ms` counts from
the last StartTransaction sent instead (it adds the server's recording of the burst of starts).
Then all stop and the next round begins. A warm-up round first (not measured): the static profiles
(TxDefaultProfile, ChargePointMaxProfile) are in force before the measured rounds, as at a site in use.
`rebalance_p99_ms` is the 99th percentile of the rounds' figures (with a handful of rounds: the worst).

    python -m benchmarks.rebalance [--chargers 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.common import HOST, PY, Child, percentile, r1, say

FIRST = 0  # BENCH-00000 onwards (setup.ensure_charge_points)
SHARE_A = 8.0  # each charger's final share: the site's budget is chargers x SHARE_A per phase
LOCATION_NAME = "Bench rebalance site"
QUIET_S = 2.0  # nothing more arrives for this long after the final shares: the round is over
ROUND_TIMEOUT_S = 30.0
ROUND_MARGIN_S = 20.0  # a measured round (start, rebalance, stop) is begun only with this much box left


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def prepare(chargers: int) -> tuple[int, list[str]]:
    """The site (a location of its own, `chargers` x SHARE_A per phase) with the bench chargers on it, one
    EVSE and connector each, one accepted card per charger; leftovers of earlier runs closed. Returns the
    site id and the identities."""
    from decimal import Decimal

    from django.contrib.gis.geos import Point

    from apps.accounts.models import IdToken, Organisation
    from apps.charging.models import ChargingSession
    from apps.smartcharging.models import ChargingLimit, Site
    from apps.stations.models import ChargePoint, Connector, Evse, Location
    from benchmarks.clients import identity_for
    from benchmarks.setup import ORG_SLUG

    org = Organisation.objects.get(slug=ORG_SLUG)
    location, _ = Location.objects.get_or_create(
        organisation=org,
        name=LOCATION_NAME,
        defaults={
            "address": "Lastweg 1",
            "city": "Berlin",
            "country": "DE",
            "time_zone": "Europe/Berlin",
            "point": Point(13.40, 52.52, srid=4326),
        },
    )
    identities = [identity_for(FIRST + n) for n in range(chargers)]
    ChargePoint.objects.filter(identity__in=identities).update(location=location, ocpp_protocol="ocpp1.6")
    cp_ids = list(ChargePoint.objects.filter(identity__in=identities).values_list("pk", flat=True))
    have = set(
        Evse.objects.filter(charge_point_id__in=cp_ids, evse_id=1).values_list("charge_point_id", flat=True)
    )
    Evse.objects.bulk_create([Evse(charge_point_id=pk, evse_id=1) for pk in cp_ids if pk not in have])
    evses = list(Evse.objects.filter(charge_point_id__in=cp_ids, evse_id=1).values_list("pk", flat=True))
    have = set(Connector.objects.filter(evse_id__in=evses).values_list("evse_id", flat=True))
    Connector.objects.bulk_create([Connector(evse_id=pk, connector_id=1) for pk in evses if pk not in have])
    # Earlier runs: close what was left running, forget the profiles (the chargers are new connections).
    ChargingSession.objects.filter(charge_point_id__in=cp_ids, status="ACTIVE").update(status="COMPLETED")
    ChargingLimit.objects.filter(charge_point_id__in=cp_ids).delete()
    for n in range(chargers):
        IdToken.objects.get_or_create(uid=tag_for(n), defaults={"organisation": org})
    site, _ = Site.objects.update_or_create(
        location=location,
        name="",
        defaults={"organisation": org, "max_current_a": Decimal(str(chargers * SHARE_A)), "phases": 3},
    )
    site.charge_points.clear()
    return site.pk, identities


def tag_for(n: int) -> str:
    return f"BENCHRB{n:05d}"


@dataclass
class BenchCharger:
    """One 1.6 charger: answers every CALL at once (SetChargingProfile Accepted, recorded)."""

    identity: str
    n: int
    ws: ClientConnection | None = None
    transaction_id: int | None = None
    pending: dict[str, asyncio.Future] = field(default_factory=dict)
    # (answered at, purpose, limit, transactionId) of every SetChargingProfile, in order
    profiles: list[tuple[float, str, float, int | None]] = field(default_factory=list)
    seq: int = 0

    async def open(self, base_url: str) -> None:
        from benchmarks.clients import key_for

        token = base64.b64encode(f"{self.identity}:{key_for(self.identity)}".encode()).decode()
        self.ws = await connect(
            f"{base_url}/{self.identity}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Basic {token}"},
            compression=None,
            open_timeout=30,
            ping_interval=None,
            close_timeout=2,
        )
        asyncio.get_running_loop().create_task(self.read())
        boot = await self.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "RB"})
        if boot.get("status") != "Accepted":
            raise RuntimeError(f"{self.identity}: boot {boot}")
        await self.call(
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": now_iso()},
        )

    async def read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg[0] == 2:
                    answer: dict[str, Any] = {"status": "Accepted"}
                    if msg[2] == "SetChargingProfile":
                        profile = msg[3].get("csChargingProfiles") or {}
                        period = (profile.get("chargingSchedule") or {}).get("chargingSchedulePeriod") or [{}]
                        await self.ws.send(json.dumps([3, msg[1], answer]))
                        self.profiles.append(
                            (
                                time.time(),
                                str(profile.get("chargingProfilePurpose")),
                                float(period[0].get("limit", -1)),
                                profile.get("transactionId"),
                            )
                        )
                        continue
                    await self.ws.send(json.dumps([3, msg[1], answer]))
                elif msg[0] in (3, 4):
                    future = self.pending.pop(msg[1], None)
                    if future is not None and not future.done():
                        future.set_result(msg[2] if msg[0] == 3 else {"error": msg[2]})
        except ConnectionClosed:
            pass

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        assert self.ws is not None
        self.seq += 1
        uid = f"{action[:4]}{self.seq}"
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[uid] = future
        await self.ws.send(json.dumps([2, uid, action, payload]))
        return await asyncio.wait_for(future, timeout)

    async def start(self) -> tuple[float, float]:
        """StartTransaction; returns when it was sent and when its answer came (the server recorded it)."""
        sent = time.time()
        answer = await self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": tag_for(self.n), "meterStart": 0, "timestamp": now_iso()},
        )
        if (answer.get("idTagInfo") or {}).get("status") != "Accepted":
            raise RuntimeError(f"{self.identity}: start {answer}")
        self.transaction_id = int(answer["transactionId"])
        return sent, time.time()

    async def stop(self) -> None:
        if self.transaction_id is None:
            return
        await self.call(
            "StopTransaction",
            {
                "transactionId": self.transaction_id,
                "meterStop": 1000,
                "timestamp": now_iso(),
                "reason": "Local",
            },
        )
        self.transaction_id = None

    def final_at(self, share: float) -> float | None:
        """When it answered the TxProfile in force for its transaction, if that one gives `share`."""
        tx = [p for p in self.profiles if p[1] == "TxProfile" and p[3] == self.transaction_id]
        if not tx or abs(tx[-1][2] - share) > 1e-6:
            return None
        return tx[-1][0]


async def _round(chargers: list[BenchCharger], share: float) -> dict[str, Any]:
    counts = [len(c.profiles) for c in chargers]
    started = await asyncio.gather(*(c.start() for c in chargers))
    sent = [s for s, _answered in started]
    last_start = max(sent)
    last_answer = max(answered for _s, answered in started)
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    quiet_since: float | None = None
    seen = 0
    while time.monotonic() < deadline:
        finals = [c.final_at(share) for c in chargers]
        total = sum(len(c.profiles) for c in chargers)
        if all(f is not None for f in finals):
            if total != seen or quiet_since is None:
                seen, quiet_since = total, time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_S:
                done = [f for f in finals if f is not None]
                return {
                    "ms": (max(done) - last_answer) * 1000,
                    "from_sent_ms": (max(done) - last_start) * 1000,
                    "per_charger_ms": [(f - last_answer) * 1000 for f in done],
                    "profiles": total - sum(counts),
                    "start_burst_ms": (last_start - min(sent)) * 1000,
                    "starts_answered_ms": (last_answer - last_start) * 1000,
                }
        else:
            quiet_since = None
        await asyncio.sleep(0.02)
    missing = [c.identity for c in chargers if c.final_at(share) is None]
    raise TimeoutError(f"{len(missing)} chargers without their final profile after {ROUND_TIMEOUT_S:g} s")


async def _stop_all(chargers: list[BenchCharger], site_id: int) -> None:
    from apps.smartcharging.models import ChargingLimit

    await asyncio.gather(*(c.stop() for c in chargers))

    def cleared() -> bool:
        # The stops' rebalance ran: no TxProfile of ours left for the site.
        return not ChargingLimit.objects.filter(site_id=site_id, purpose="TxProfile").exists()

    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while not await asyncio.to_thread(cleared):
        if time.monotonic() > deadline:
            raise TimeoutError("the stops' rebalance did not run")
        await asyncio.sleep(0.1)


async def _measure(
    base_url: str, site_id: int, identities: list[str], rounds: int, deadline: float
) -> dict[str, Any]:
    """Connect the chargers, warm up, then up to `rounds` measured rounds while the box (`deadline`,
    monotonic) leaves room for one more."""
    from django.db import connections

    from apps.smartcharging.models import ChargingLimit

    chargers = [BenchCharger(identity=i, n=n) for n, i in enumerate(identities)]
    for i in range(0, len(chargers), 25):
        await asyncio.gather(*(c.open(base_url) for c in chargers[i : i + 25]))
    say(f"  rebalance: {len(chargers)} chargers connected and booted")

    def static_in_force() -> int:
        return (
            ChargingLimit.objects.filter(site_id=site_id, status="accepted")
            .exclude(purpose="TxProfile")
            .count()
        )

    results = []
    try:
        # Warm-up (not measured): the worker's first run, and the static profiles in force.
        await _round(chargers, SHARE_A)
        static_deadline = time.monotonic() + ROUND_TIMEOUT_S
        while await asyncio.to_thread(static_in_force) < 2 * len(chargers):
            if time.monotonic() > static_deadline:
                raise TimeoutError("static profiles not accepted")
            await asyncio.sleep(0.1)
        await _stop_all(chargers, site_id)
        for i in range(rounds):
            if time.monotonic() + ROUND_MARGIN_S > deadline:
                say(f"  rebalance: time box reached after {i} measured round(s)")
                break
            result = await _round(chargers, SHARE_A)
            results.append(result)
            say(
                f"  rebalance round {i + 1}: last start recorded -> last profile accepted "
                f"{result['ms']:.0f} ms "
                f"(from the last StartTransaction sent: {result['from_sent_ms']:.0f} ms) "
                f"({result['profiles']} profiles; the {len(chargers)} starts were sent in "
                f"{result['start_burst_ms']:.0f} ms, all answered after "
                f"{result['starts_answered_ms']:.0f} ms)"
            )
            await _stop_all(chargers, site_id)
    finally:
        for c in chargers:
            if c.ws is not None:
                await c.ws.close()
        await asyncio.to_thread(connections.close_all)
    return {"rounds": results}


def run(ctx: Any, *, chargers: int, rounds: int, box: float) -> dict[str, Any]:
    """The phase: one stack server, one Celery worker, `chargers` chargers at one site, `rounds` bursts."""
    from benchmarks.phases import start_stack_server

    site_id, identities = prepare(chargers)
    server = worker = None
    try:
        server, port = start_stack_server(ctx, "rebalance-server")
        celery = str(Path(PY).parent / "celery")
        worker = Child(
            "rebalance-worker",
            [
                celery,
                "-A",
                "config",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=ctx.server_env,
            log_dir=ctx.log_dir,
        )
        measured = asyncio.run(
            _measure(f"ws://{HOST}:{port}/ocpp", site_id, identities, rounds, time.monotonic() + box)
        )
    finally:
        if worker is not None:
            worker.stop()
        if server is not None:
            server.stop()
    figures = [r["ms"] for r in measured["rounds"]]
    if not figures:
        raise RuntimeError("no round measured within the time box")
    from_sent = [r["from_sent_ms"] for r in measured["rounds"]]
    per_charger = [ms for r in measured["rounds"] for ms in r["per_charger_ms"]]
    result = {
        "rebalance_p99_ms": r1(percentile(figures, 99)),
        "rebalance_p50_ms": r1(percentile(figures, 50)),
        "rebalance_rounds_ms": [r1(x) for x in figures],
        "rebalance_charger_p50_ms": r1(percentile(per_charger, 50)),
        # The same from the last StartTransaction sent: includes the server's recording of the 50 starts.
        "rebalance_from_sent_p99_ms": r1(percentile(from_sent, 99)),
        # Of which the server's recording of the starts (the last StartTransaction answered).
        "rebalance_starts_answered_p50_ms": r1(
            percentile([r["starts_answered_ms"] for r in measured["rounds"]], 50)
        ),
        "rebalance_profiles_per_round": [r["profiles"] for r in measured["rounds"]],
        "rebalance_chargers": chargers,
        "rebalance_share_a": SHARE_A,
    }
    say(
        f"  rebalance: {len(figures)} rounds of {chargers} starts; last start recorded -> last profile "
        f"accepted "
        f"p50 {result['rebalance_p50_ms']} ms, p99 {result['rebalance_p99_ms']} ms (target < 2000 ms); "
        f"per charger p50 {result['rebalance_charger_p50_ms']} ms; from the last StartTransaction sent "
        f"p99 {result['rebalance_from_sent_p99_ms']} ms"
    )
    return result


def main() -> int:
    import os

    from benchmarks import setup
    from benchmarks.common import raise_fd_limit
    from benchmarks.phases import Ctx

    parser = argparse.ArgumentParser(prog="python -m benchmarks.rebalance")
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=180)
    args = parser.parse_args()
    env = setup.bench_env()
    raise_fd_limit()
    setup.create_database(env["DATABASE_URL"])
    setup.migrate(env, timeout=300)
    setup.flush_redis(env["REDIS_URL"])
    setup.django_setup(env)
    setup.ensure_charge_points(FIRST + args.chargers)
    log_dir = Path(tempfile.mkdtemp(prefix="cpo-bench-"))
    ctx = Ctx(
        env=env,
        log_dir=log_dir,
        deadline=time.monotonic() + args.budget,
        server_kind="uvicorn-sansio",
        server_env=dict(env),
    )
    try:
        figures = run(ctx, chargers=args.chargers, rounds=args.rounds, box=args.budget - 20)
    finally:
        Child.stop_all(grace=1.0)
    figures["logs"] = str(log_dir)
    figures["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
