"""Driver start latency: from `POST /api/v1/sessions` to the charger receiving its RemoteStartTransaction,
with `chargers` chargers connected to the server that also serves the API (one uvicorn process).

Each start is a different driver on a different charger (as in real life; it also keeps every start
legitimate: an EVSE with a start in progress refuses a second one). Starts arrive open-loop, as drivers
do: `--rate` per second on average (10 by default, about thirty times what 1,000 chargers see at a busy
hour with one-hour sessions), whatever the server's answer times. A closed loop of callers with no
think time measures the process's throughput instead: one process then spends its core on the ORM work
of back-to-back starts (about 20 ms of CPU each here) and every caller waits for all the others. The
chargers are the bench's fleet clients, which log the arrival time of every CALL (`--calls-log`); the
latency is that time minus the time the HTTP request was sent, both read from the same host clock. API
rate limits per address are lifted for the bench server (every request comes from 127.0.0.1): the bench
measures the start path, not the limiter.

Payments are on by default (`--no-payments` turns them off): the phase starts localstripe on loopback
(in memory: tools/localstripe_server.py --no-persist) and points the server at it, and every bench driver
has a card and no customer account, so each start first takes a card hold (a PaymentIntent with manual
capture, created and confirmed at localstripe) before the charger is asked, as a card-paying driver's
start does. localstripe answers from this machine in milliseconds; Stripe itself adds its network round
trips, which this phase does not model.

    python -m benchmarks.driver_start [--chargers 1000] [--starts 200] [--rate 10] [--no-payments]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import PY, Child, ChildFailed, free_port, percentile, r1, say, wait_port

DRIVER_EMAIL = "bench-driver-{n}@bench.invalid"
RATE_OVERRIDES = {"CPO_API_RATE_START_ADDRESS": "1000000/min", "CPO_API_RATE_START_USER": "1000000/min"}
# The bench's own Stripe settings (test-mode keys localstripe accepts; no real Stripe is ever reached).
STRIPE_SETTINGS = {
    "STRIPE_SECRET_KEY": "sk_test_bench",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_bench",
    "STRIPE_WEBHOOK_SECRET": "whsec_bench",
    "STRIPE_MAX_NETWORK_RETRIES": "0",
}
BENCH_CARD = "pm_card_visa"


def prepare(chargers: int, starts: int) -> tuple[list[int], list[str]]:
    """A published location, one EVSE with one Available connector per bench charger, `starts` drivers;
    returns (charge point ids in identity order, JWT access tokens). Leftover starts of earlier runs go."""
    from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
    from django.contrib.gis.geos import Point
    from rest_framework_simplejwt.tokens import AccessToken

    from apps.accounts.models import Organisation, User
    from apps.charging.models import DriverSession, DriverSessionTransition
    from apps.stations.models import ChargePoint, Connector, Evse, Location
    from benchmarks.clients import identity_for
    from benchmarks.setup import ORG_SLUG

    org = Organisation.objects.get(slug=ORG_SLUG)
    location, _ = Location.objects.get_or_create(
        organisation=org,
        name="Bench site",
        defaults={
            "address": "Benchstrasse 1",
            "city": "Berlin",
            "country": "DE",
            "time_zone": "Europe/Berlin",
            "point": Point(13.4132, 52.5219, srid=4326),
        },
    )
    identities = [identity_for(n) for n in range(chargers)]
    ChargePoint.objects.filter(identity__in=identities).update(location=location, ocpp_protocol="ocpp1.6")
    cps = dict(ChargePoint.objects.filter(identity__in=identities).values_list("identity", "pk"))
    have = set(
        Evse.objects.filter(charge_point_id__in=cps.values(), evse_id=1).values_list(
            "charge_point_id", flat=True
        )
    )
    Evse.objects.bulk_create(
        [Evse(charge_point_id=pk, evse_id=1) for pk in cps.values() if pk not in have], batch_size=2000
    )
    evses = dict(
        Evse.objects.filter(charge_point_id__in=cps.values(), evse_id=1).values_list("charge_point_id", "pk")
    )
    have = set(Connector.objects.filter(evse_id__in=evses.values()).values_list("evse_id", flat=True))
    Connector.objects.bulk_create(
        [Connector(evse_id=pk, connector_id=1) for pk in evses.values() if pk not in have], batch_size=2000
    )
    Connector.objects.filter(evse_id__in=evses.values()).update(status="Available")
    DriverSessionTransition.objects.filter(session__charge_point_id__in=cps.values()).delete()
    DriverSession.objects.filter(charge_point_id__in=cps.values()).delete()
    emails = [DRIVER_EMAIL.format(n=n) for n in range(starts)]
    existing = set(User.objects.filter(email__in=emails).values_list("email", flat=True))
    User.objects.bulk_create(
        [User(email=e, password=UNUSABLE_PASSWORD_PREFIX) for e in emails if e not in existing],
        batch_size=2000,
    )
    users = {u.email: u for u in User.objects.filter(email__in=emails)}
    tokens = [str(AccessToken.for_user(users[e])) for e in emails]
    return [cps[i] for i in identities], tokens


def start_localstripe(ctx: Any) -> tuple[Child, str]:
    """localstripe on a free loopback port, its state in memory only; (child, base URL)."""
    port = free_port()
    child = Child(
        "localstripe",
        [PY, "-m", "tools.localstripe_server", "--port", str(port), "--no-persist"],
        env=ctx.env,
        log_dir=ctx.log_dir,
    )
    wait_port(port, 30, child)
    return child, f"http://127.0.0.1:{port}"


def give_cards(tokens_of: list[str], api_base: str) -> int:
    """Every bench driver gets a Stripe customer with a default card at this run's localstripe (a fresh
    one: what earlier runs recorded of their customers, cards and holds goes first). Returns how many."""
    from django.db import transaction
    from django.test.utils import override_settings

    from apps.accounts.models import DriverProfile, User
    from apps.billing import services
    from apps.billing.models import Payment, PaymentCharge, Refund, StripeCall, StripeCustomer

    users = list(User.objects.filter(email__in=tokens_of).order_by("pk"))
    with transaction.atomic():
        PaymentCharge.objects.filter(payment__customer__user__in=users).delete()
        Refund.objects.filter(payment__customer__user__in=users).delete()
        Payment.objects.filter(customer__user__in=users).delete()
        StripeCustomer.objects.filter(user__in=users).delete()  # and their cards
        keys = {f"cpo-customer-user-{u.pk}-0" for u in users}
        StripeCall.objects.filter(idempotency_key__in=keys).delete()
        # paying by card, not on a customer account's invoice
        DriverProfile.objects.filter(user__in=users).update(customer_account=None)
    stripe_log = logging.getLogger("stripe")
    level = stripe_log.level
    stripe_log.setLevel(logging.WARNING)  # not a line per request on the bench's output
    try:
        with override_settings(STRIPE_API_BASE=api_base, STRIPE_TIMEOUT_S=10.0, **STRIPE_SETTINGS):
            for user in users:
                services.payment_method_attach(user=user, payment_method_id=BENCH_CARD)
    finally:
        stripe_log.setLevel(level)
    return len(users)


def holds_made(emails: list[str]) -> dict[str, int]:
    """The bench drivers' payments by status (each card start holds once)."""
    from django.db.models import Count

    from apps.billing.models import Payment

    rows = (
        Payment.objects.filter(customer__user__email__in=emails)
        .values("status")
        .annotate(n=Count("pk"))
        .order_by("status")
    )
    return {row["status"]: row["n"] for row in rows}


def measure(
    *,
    base_url: str,
    charge_point_ids: list[int],
    tokens: list[str],
    rate: float,
    deadline: float,
    warm_ms: list[float],
) -> list[dict[str, Any]]:
    """POST one start per token, arriving open-loop at `rate` per second on average (exponential gaps,
    seeded), each from its own worker so that a slow answer never delays the next arrival."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    import requests

    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    local = threading.local()
    rng = random.Random(6)

    def one(n: int, token: str) -> None:
        http = getattr(local, "http", None) or requests.Session()
        local.http = http
        sent = time.time()
        response = http.post(
            f"{base_url}/api/v1/sessions",
            json={"charge_point": charge_point_ids[n], "connector": 1},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
            timeout=10,
        )
        answered = time.time()
        with lock:
            records.append(
                {
                    "n": n,
                    "sent": sent,
                    "http_ms": (answered - sent) * 1000,
                    "status": response.status_code,
                    "state": (response.json() if response.content else {}).get("status"),
                }
            )

    def warm(token: str) -> float:
        http = getattr(local, "http", None) or requests.Session()
        local.http = http
        sent = time.time()
        http.get(f"{base_url}/api/v1/sessions", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return (time.time() - sent) * 1000

    with ThreadPoolExecutor(max_workers=32, thread_name_prefix="driver-start") as pool:
        # A server that has been serving: its first API requests pay one-time costs (lazy imports and
        # URL resolution, the database connections its view threads open). Reported, not measured as
        # starts: 32 concurrent, authenticated reads of the drivers' session lists.
        warm_ms.extend(pool.map(warm, (tokens * 32)[:32]))
        next_at = time.monotonic()
        for n, token in enumerate(tokens):
            next_at += rng.expovariate(rate)
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if time.monotonic() > deadline:
                break
            pool.submit(one, n, token)
    return records


def received_at(calls_log: Path, action: str) -> dict[str, float]:
    """identity → first arrival time of `action` in the fleet's calls log."""
    found: dict[str, float] = {}
    for line in calls_log.read_text().splitlines():
        identity, name, at = line.split(" ")
        if name == action and identity not in found:
            found[identity] = float(at)
    return found


def run(
    ctx: Any, *, chargers: int, starts: int, rate: float, box: float, payments: bool = True
) -> dict[str, Any]:
    """The phase: one stack server, `chargers` fleet chargers on it, `starts` driver starts (with
    `payments`, each a card driver's: a hold at localstripe first)."""
    from benchmarks.clients import identity_for
    from benchmarks.phases import clients, start_stack_server

    box_end = min(time.monotonic() + box, ctx.deadline - 10)
    starts = min(starts, chargers)
    cp_ids, tokens = prepare(chargers, starts)
    emails = [DRIVER_EMAIL.format(n=n) for n in range(starts)]
    saved_env = ctx.server_env
    ctx.server_env = {**saved_env, **RATE_OVERRIDES}
    calls_log = Path(tempfile.mkdtemp(prefix="cpo-bench-calls-")) / "calls.log"
    server = fleet = stripe = None
    warm_ms: list[float] = []
    try:
        if payments:
            stripe, stripe_url = start_localstripe(ctx)
            t = time.monotonic()
            carded = give_cards(emails, stripe_url)
            say(
                f"  driver start: payments on: {carded} drivers with a card at localstripe ({stripe_url}), "
                f"set up in {time.monotonic() - t:.0f} s"
            )
            ctx.server_env = {**ctx.server_env, **STRIPE_SETTINGS, "STRIPE_API_BASE": stripe_url}
        server, port = start_stack_server(ctx, "driver-server")
        fleet = clients(
            ctx,
            "driver-fleet",
            "fleet",
            port,
            0,
            chargers,
            auth=True,
            max_seconds=box + 20,
            extra=["--concurrency", "50", "--hb-min", "5", "--hb-max", "10", "--calls-log", str(calls_log)],
        )
        try:
            ready = fleet.expect("READY", max(5.0, box_end - time.monotonic() - 40))
        except ChildFailed:
            if not fleet.alive():
                raise
            fleet.send("NOW")
            ready = fleet.expect("READY", 10)
        say(f"  driver start: {ready['connected']:,}/{chargers:,} chargers connected")
        time.sleep(3.0)  # into the steady state (heartbeats flowing)
        records = measure(
            base_url=f"http://127.0.0.1:{port}",
            charge_point_ids=cp_ids,
            tokens=tokens,
            warm_ms=warm_ms,
            rate=rate,
            deadline=box_end - 10,
        )
        time.sleep(1.0)  # the last commands reach their chargers
        fleet.send("STOP")
        try:
            fleet.expect("RESULT", 15)
        except ChildFailed as exc:
            say(f"  driver start: {exc}")
    finally:
        ctx.server_env = saved_env
        if fleet is not None:
            fleet.stop()
        if server is not None:
            server.stop()
        if stripe is not None:
            stripe.stop()
    arrivals = received_at(calls_log, "RemoteStartTransaction") if calls_log.exists() else {}
    latencies = [
        arrivals[identity_for(r["n"])] * 1000 - r["sent"] * 1000
        for r in records
        if identity_for(r["n"]) in arrivals
    ]
    http = [r["http_ms"] for r in records]
    statuses: dict[str, int] = {}
    for r in records:
        key = f"{r['status']} {r['state']}"
        statuses[key] = statuses.get(key, 0) + 1
    result = {
        "driver_start_n": len(latencies),
        "driver_start_p50_ms": r1(percentile(latencies, 50)),
        "driver_start_p99_ms": r1(percentile(latencies, 99)),
        "driver_start_max_ms": r1(max(latencies) if latencies else None),
        "driver_start_http_p99_ms": r1(percentile(http, 99)),
        "driver_start_outcomes": statuses,
        "driver_start_chargers": ready["connected"] if records else 0,
        "driver_start_rate_per_s": rate,
        "driver_start_warmup_max_ms": r1(max(warm_ms) if warm_ms else None),
        "driver_start_payments": payments,
        "driver_start_holds": holds_made(emails) if payments else None,
    }
    say(
        f"  driver start: {len(latencies)}/{len(records)} starts reached their charger; POST → charger "
        f"p50 {result['driver_start_p50_ms']} ms, p99 {result['driver_start_p99_ms']} ms, "
        f"max {result['driver_start_max_ms']} ms (HTTP answer p99 {result['driver_start_http_p99_ms']} ms); "
        f"answers {statuses}; the server's first 32 API reads (warm-up, not starts) took up to "
        f"{result['driver_start_warmup_max_ms']} ms"
    )
    if payments:
        say(f"  driver start: payments on (a hold at localstripe per start): {result['driver_start_holds']}")
    return result


def main() -> int:
    import os

    from benchmarks import setup
    from benchmarks.common import raise_fd_limit
    from benchmarks.phases import Ctx

    parser = argparse.ArgumentParser(prog="python -m benchmarks.driver_start")
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="starts per second, open loop (Poisson)")
    parser.add_argument("--budget", type=float, default=180)
    parser.add_argument(
        "--payments",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="card drivers: a hold at localstripe before each start (default: on)",
    )
    args = parser.parse_args()
    env = setup.bench_env()
    raise_fd_limit()
    setup.create_database(env["DATABASE_URL"])
    setup.migrate(env, timeout=300)
    setup.flush_redis(env["REDIS_URL"])
    setup.django_setup(env)
    setup.ensure_charge_points(args.chargers)
    log_dir = Path(tempfile.mkdtemp(prefix="cpo-bench-"))
    ctx = Ctx(
        env=env,
        log_dir=log_dir,
        deadline=time.monotonic() + args.budget,
        server_kind="uvicorn-sansio",
        server_env=dict(env),
    )
    try:
        figures = run(
            ctx,
            chargers=args.chargers,
            starts=args.starts,
            rate=args.rate,
            box=args.budget - 20,
            payments=args.payments,
        )
    finally:
        Child.stop_all(grace=1.0)
    figures["logs"] = str(log_dir)
    figures["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
