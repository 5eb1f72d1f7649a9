"""The gateway's database pool and group commit (apps/ocpp_gateway/dbwork.py), and handshake refusals
remembered in the process."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django import db
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from apps.charging.models import MeterSample
from apps.ocpp_gateway import auth, conf, dbwork, redis_clients
from apps.stations.models import ChargePoint, Connector, Evse
from tests.factories import ChargePointFactory, OrganisationFactory
from tests.ocpp_gateway.conftest import KEY, Charger, basic, connect

pytestmark = [pytest.mark.django_db(transaction=True)]


def in_thread(fn):
    """`fn` on a thread of its own with its own connection: it sees only what was committed."""

    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            db.connection.close()

    return sync_to_async(run, thread_sensitive=False)


def _txid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        return cursor.fetchone()[0]


# --- the pool ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_db_work_runs_calls_side_by_side_up_to_the_pool_size(transactional_db):
    """Every worker of the pool runs at once (Channels' database_sync_to_async ran one at a time: the
    barrier would never open), each on its own connection, given back after its unit of work."""
    workers = conf.db_workers()
    assert workers == dbwork.executor()._max_workers
    barrier = threading.Barrier(workers, timeout=30)

    def meet():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        barrier.wait()  # raises BrokenBarrierError unless all `workers` calls run at the same time
        return pid, connection

    results = await asyncio.gather(*(dbwork.db_work(meet)() for _ in range(workers)))
    assert len({pid for pid, _wrapper in results}) == workers
    # After the unit of work each thread's connection was closed (returned to the connection pool).
    assert all(wrapper.connection is None for _pid, wrapper in results)


def test_db_workers_follow_the_connection_pool():
    with override_settings(CPO_OCPP_DB_WORKERS=0):
        pool = db.connections.settings["default"]["OPTIONS"]["pool"]
        assert conf.db_workers() == max(1, pool["max_size"] - 2)
    with override_settings(CPO_OCPP_DB_WORKERS=3):
        assert conf.db_workers() == 3


# --- group commit ----------------------------------------------------------------------------------


@pytest.fixture
def committer():
    # One transaction at a time: what is submitted together is one batch.
    return dbwork.GroupCommit(window_s=0.05, max_batch=50, max_in_flight=1)


@pytest.mark.asyncio
async def test_calls_submitted_together_share_one_transaction(committer, transactional_db):
    cp = await in_thread(ChargePointFactory)(identity="GC-1")

    def write(n: int) -> int:
        Evse.objects.create(charge_point_id=cp.pk, evse_id=n)
        return _txid()

    futures = [committer.submit(lambda n=n: write(n)) for n in range(1, 11)]
    txids = await asyncio.gather(*futures)
    assert len(set(txids)) == 1 and committer.batches == 1
    evses = await in_thread(
        lambda: sorted(Evse.objects.filter(charge_point=cp).values_list("evse_id", flat=True))
    )()
    assert evses == list(range(1, 11))


@pytest.mark.asyncio
async def test_a_failing_call_rolls_back_alone(committer, transactional_db):
    """A call that raises loses its own writes and gets its exception; the others of its batch commit."""
    cp = await in_thread(ChargePointFactory)(identity="GC-2")

    @transaction.atomic  # as the services are: tried again alone, it owns its transaction
    def write(n: int) -> int:
        Evse.objects.create(charge_point_id=cp.pk, evse_id=n)
        if n == 3:
            raise ValueError("bad message 3")
        if n == 4:
            Evse.objects.create(charge_point_id=cp.pk, evse_id=1)  # unique (charge point, evse id): taken
        return n

    futures = [committer.submit(lambda n=n: write(n)) for n in range(1, 7)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[:2] == [1, 2] and results[4:] == [5, 6]
    assert isinstance(results[2], ValueError) and str(results[2]) == "bad message 3"
    assert isinstance(results[3], IntegrityError)  # tried again alone, failed again
    evses = await in_thread(
        lambda: sorted(Evse.objects.filter(charge_point=cp).values_list("evse_id", flat=True))
    )()
    assert evses == [1, 2, 5, 6]


@pytest.mark.asyncio
async def test_a_batch_that_cannot_commit_runs_one_by_one(committer, transactional_db):
    """A violation found only at COMMIT (PostgreSQL checks foreign keys at the end of the transaction)
    fails the batch's transaction: its calls run again one by one, and only the bad one fails."""
    cp = await in_thread(ChargePointFactory)(identity="GC-3")
    missing_cp = cp.pk + 1_000_000

    def write(n: int) -> int:
        Evse.objects.create(charge_point_id=missing_cp if n == 2 else cp.pk, evse_id=n)
        return _txid()

    futures = [committer.submit(lambda n=n: write(n)) for n in range(1, 5)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(results[1], IntegrityError)
    good = [results[0], results[2], results[3]]
    assert all(isinstance(txid, int) for txid in good) and len(set(good)) == 3  # each its own transaction
    evses = await in_thread(
        lambda: sorted(Evse.objects.filter(charge_point=cp).values_list("evse_id", flat=True))
    )()
    assert evses == [1, 3, 4]


@pytest.mark.asyncio
async def test_commit_hooks_run_after_the_commit_and_fail_only_their_call(committer, transactional_db):
    cp = await in_thread(ChargePointFactory)(identity="GC-4")
    seen: list[tuple[int, bool]] = []

    def visible(n: int) -> bool:
        # Read on another connection: true only once the batch is committed.
        result: list[bool] = []
        thread = threading.Thread(
            target=lambda: (
                result.append(Evse.objects.filter(charge_point_id=cp.pk, evse_id=n).exists()),
                db.connection.close(),
            )
        )
        thread.start()
        thread.join()
        return result[0]

    def hook(n: int) -> None:
        seen.append((n, visible(n)))
        if n == 2:
            raise RuntimeError("hook of call 2")

    def write(n: int) -> int:
        Evse.objects.create(charge_point_id=cp.pk, evse_id=n)
        transaction.on_commit(lambda: hook(n))
        return n

    futures = [committer.submit(lambda n=n: write(n)) for n in range(1, 4)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], RuntimeError)
    assert seen == [(1, True), (2, True), (3, True)]


@pytest.mark.asyncio
async def test_many_chargers_data_lands_and_is_durable_when_answered(transactional_db):
    """Many simulated chargers send StatusNotification and MeterValues at once: every row lands, they
    share commits, and each answer comes only once its data can be read from another connection."""
    org = await in_thread(OrganisationFactory)(slug="gc-org")
    count = 20
    identities = [f"GC-CP-{n:02d}" for n in range(count)]
    for identity in identities:
        await in_thread(ChargePointFactory)(identity=identity, organisation=org)
    chargers = []
    for identity in identities:
        comm, connected, _ = await connect(identity=identity, key=KEY)
        assert connected
        chargers.append((identity, comm, Charger(comm)))

    def status_of(identity: str) -> str | None:
        row = Connector.objects.filter(evse__charge_point__identity=identity, evse__evse_id=1).first()
        return row.status if row else None

    def samples_of(identity: str) -> int:
        return MeterSample.objects.filter(charge_point__identity=identity).count()

    async def run(identity: str, cp: Charger, n: int) -> None:
        answer = await cp.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
        )
        assert answer[0] == 3
        assert await in_thread(status_of)(identity) == "Charging"  # durable when answered
        answer = await cp.call(
            "MeterValues",
            {
                "connectorId": 1,
                "meterValue": [
                    {"timestamp": "2026-12-03T10:00:00Z", "sampledValue": [{"value": str(1000 + n)}]}
                ],
            },
        )
        assert answer[0] == 3
        assert await in_thread(samples_of)(identity) == 1

    with override_settings(
        CPO_OCPP_GROUP_COMMIT_IN_FLIGHT=1, CPO_OCPP_GROUP_COMMIT_MAX=200
    ):  # queue behind one
        committer = dbwork.group_commit()
        await asyncio.gather(*(run(identity, cp, n) for n, (identity, _comm, cp) in enumerate(chargers)))
    # 40 messages, fewer commits: they were grouped.
    assert committer.batches < 2 * count
    values = await in_thread(lambda: sorted(MeterSample.objects.values_list("value", flat=True)))()
    assert [int(v) for v in values] == [1000 + n for n in range(count)]
    for _identity, comm, _cp in chargers:
        await comm.disconnect()


@pytest.mark.asyncio
async def test_with_batches_of_one_each_message_commits_alone(charge_point):
    with override_settings(CPO_OCPP_GROUP_COMMIT_MAX=1):
        comm, connected, _ = await connect()
        assert connected
        answer = await Charger(comm).call(
            "StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"}
        )
        assert answer[0] == 3
        cp = await in_thread(ChargePoint.objects.get)(pk=charge_point.pk)
        assert cp.status == "Available"
        await comm.disconnect()


# --- refusals remembered ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_repeated_refusal_skips_the_database_but_is_still_counted(charge_point, monkeypatch):
    calls: list[str] = []
    real = auth.authenticate

    def counting(**kwargs):
        calls.append(kwargs["identity"])
        return real(**kwargs)

    monkeypatch.setattr(auth, "authenticate", counting)
    with override_settings(CPO_OCPP_AUTH_REFUSAL_CACHE_S=60, CPO_OCPP_AUTH_FAILURES_PER_IDENTITY_ADDRESS=3):
        statuses = []
        for _ in range(5):
            comm, connected, _ = await connect(key="wrong-key-wrong-key", address="203.0.113.9")
            assert not connected
            key = auth.RefusalCache.key("CP-1", "203.0.113.9", _header("CP-1", "wrong-key-wrong-key"), False)
            statuses.append(auth.refusals.get(key))
        assert calls == ["CP-1"]  # decided once; the repeats were answered from memory
        assert auth.refusals.hits >= 4
        # Still counted: over the limit the repeats get 429, as without the memory.
        decision = await auth.refused_again(identity="CP-1", address="203.0.113.9", cached=statuses[-1])
        assert (decision.allowed, decision.status) == (False, 429)
        # Another key (the right one) from the same address is decided afresh and gets in.
        comm, connected, _ = await connect(address="203.0.113.9")
        assert connected and calls == ["CP-1", "CP-1"]
        await comm.disconnect()


def _header(identity: str, key: str) -> str:
    return basic(identity, key)[1].decode()


def test_refusal_memory_expires_and_keeps_only_refusals(settings, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    settings.CPO_OCPP_AUTH_REFUSAL_CACHE_S = 60
    cache = auth.RefusalCache(max_keys=2)
    allowed = auth.Decision(True, 200, "", 1, 1, "Accepted")
    refused = auth.Decision(False, 401, auth.REFUSED_BODY, log_reason="x", refusal="x")
    uncounted = auth.Decision(False, 429, auth.THROTTLED_BODY, log_reason="y")
    cache.add("a", allowed)
    cache.add("b", uncounted)
    assert cache.get("a") is None and cache.get("b") is None
    for key in ("c", "d", "e"):
        cache.add(key, refused)
    assert cache.get("c") is None and cache.get("e") == refused  # the oldest forgotten first
    now[0] += 61
    assert cache.get("e") is None  # expired
    settings.CPO_OCPP_AUTH_REFUSAL_CACHE_S = 0
    cache.add("f", refused)
    assert cache.get("f") is None
    # TLS or not, and the credentials, are part of the key (a right key over TLS is not refused for
    # having been refused without TLS).
    keys = {
        auth.RefusalCache.key("CP-1", "192.0.2.1", _header("CP-1", KEY), False),
        auth.RefusalCache.key("CP-1", "192.0.2.1", _header("CP-1", KEY), True),
        auth.RefusalCache.key("CP-1", "192.0.2.1", _header("CP-1", "other-key-other-key"), False),
        auth.RefusalCache.key("CP-1", "192.0.2.2", _header("CP-1", KEY), False),
    }
    assert len(keys) == 4


@pytest.mark.asyncio
async def test_a_burst_of_redis_commands_waits_for_the_bounded_pool(settings):
    """The gateway's async Redis client opens at most CPO_OCPP_REDIS_MAX_CONNECTIONS connections: a burst
    (here 300 commands at once) waits for free ones instead of opening one per command."""
    settings.CPO_OCPP_REDIS_MAX_CONNECTIONS = 4
    redis_clients._async_clients.clear()  # a client built with this setting for this loop
    client = redis_clients.async_redis()
    pool = client.connection_pool
    answers = await asyncio.gather(*(client.incr("cpo:ocpp:test:burst") for _ in range(300)))
    assert sorted(answers) == list(range(1, 301))
    opened = len(pool._available_connections) + len(pool._in_use_connections)
    assert 1 <= opened <= 4
    await client.delete("cpo:ocpp:test:burst")
    await client.aclose()
    redis_clients._async_clients.clear()
