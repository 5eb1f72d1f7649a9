"""The presence flush (Redis -> PostgreSQL) costs what changed since the last flush, not the number of
chargers: a sorted set of last frames tells it who was heard and who went silent."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.ocpp_gateway import presence, services
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.stations.models import ChargePoint
from cpo import clock
from tests.factories import ChargePointFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys(monkeypatch):
    """This test's own sorted set and flush mark (Redis is shared by the whole run)."""
    tag = uuid.uuid4().hex[:8]
    monkeypatch.setattr(presence, "SEEN_KEY", f"test:presence-seen:{tag}")
    monkeypatch.setattr(services, "PRESENCE_FLUSHED_KEY", f"test:presence-flushed:{tag}")
    monkeypatch.setattr(presence, "PREFIX", f"test:presence:{tag}:")
    yield tag
    redis = sync_redis()
    redis.delete(presence.SEEN_KEY, services.PRESENCE_FLUSHED_KEY)
    for chunk in _chunks(list(redis.scan_iter(match=presence.PREFIX + "*", count=5000)), 5000):
        redis.delete(*chunk)


def _chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record(identities: list[str], at: float) -> None:
    """Presence records as connections leave them (hash with TTL + the sorted set), in bulk."""
    redis = sync_redis()
    for chunk in _chunks(identities, 5000):
        pipe = redis.pipeline(transaction=False)
        for identity in chunk:
            pipe.hset(
                presence.PREFIX + identity,
                mapping={"channel": "c", "epoch": 1, "server": "s", "connected_at": at, "last_frame_at": at},
            )
            pipe.expire(presence.PREFIX + identity, 3600)
        pipe.zadd(presence.SEEN_KEY, dict.fromkeys(chunk, at))
        pipe.execute()


def _claim_and_touch(identity: str) -> int:
    async def run() -> int:
        epoch, _previous = await presence.claim(identity, "channel-x")
        assert await presence.touch(identity, epoch)
        return epoch

    return asyncio.run(run())


def test_one_flush_among_100000_records_touches_only_what_changed(keys):
    """100,000 chargers with presence; after a flush, ten are heard again: the next flush reads and
    writes those ten and nothing else (no query carries more than ten identities)."""
    everyone = [f"P{keys}-{n:06d}" for n in range(100_000)]
    _record(everyone, time.time() - 20)
    sync_redis().set(services.PRESENCE_FLUSHED_KEY, repr(time.time()))  # a flush has read them all
    heard = ChargePointFactory.create_batch(10, is_online=False)
    for charge_point in heard:
        _claim_and_touch(charge_point.identity)
    with CaptureQueriesContext(connection) as queries:
        flushed = services.presence_flush()

    assert flushed == {"online": 10, "went_offline": 0, "seen": 10, "checked": 0}
    assert queries.captured_queries
    for query in queries.captured_queries:
        assert "P" + keys not in query["sql"], "a charger that did not change reached the database"
    assert ChargePoint.objects.filter(pk__in=[c.pk for c in heard], is_online=True).count() == 10
    assert sync_redis().zcard(presence.SEEN_KEY) == 100_010


def test_a_released_connection_goes_offline_at_the_next_flush_and_leaves_the_set(keys):
    charge_point = ChargePointFactory(is_online=False)
    epoch = _claim_and_touch(charge_point.identity)
    assert services.presence_flush()["online"] == 1
    charge_point.refresh_from_db()
    assert charge_point.is_online and charge_point.last_seen_at is not None

    asyncio.run(presence.release(charge_point.identity, epoch))
    flushed = services.presence_flush()
    assert flushed["went_offline"] == 1
    charge_point.refresh_from_db()
    assert charge_point.is_online is False
    assert sync_redis().zscore(presence.SEEN_KEY, charge_point.identity) is None


def test_a_lapsed_record_goes_offline_and_a_live_one_stays(keys, settings):
    settings.CPO_OCPP_PRESENCE_TTL_S = 120
    lapsed, live = ChargePointFactory(is_online=True), ChargePointFactory(is_online=True)
    _record([lapsed.identity, live.identity], time.time() - 600)  # both last heard 10 minutes ago
    sync_redis().delete(presence.PREFIX + lapsed.identity)  # its TTL ran out; the other's did not yet
    flushed = services.presence_flush()
    assert flushed["went_offline"] == 1 and flushed["checked"] == 2
    lapsed.refresh_from_db()
    live.refresh_from_db()
    assert (lapsed.is_online, live.is_online) == (False, True)
    assert sync_redis().zscore(presence.SEEN_KEY, lapsed.identity) is None
    assert sync_redis().zscore(presence.SEEN_KEY, live.identity) is not None  # checked again next time


def test_a_redis_that_lost_its_data_still_lets_stale_chargers_go_offline(keys):
    """Online in PostgreSQL, silent for longer than presence lives, and unknown to Redis altogether."""
    stale = ChargePointFactory(is_online=True, last_seen_at=clock.now() - timedelta(hours=2))
    recent = ChargePointFactory(is_online=True, last_seen_at=clock.now())
    assert services.presence_flush()["went_offline"] == 1
    stale.refresh_from_db()
    recent.refresh_from_db()
    assert (stale.is_online, recent.is_online) == (False, True)


def test_forget_keeps_a_charger_that_came_back_meanwhile(keys):
    back, gone = f"B{keys}", f"G{keys}"
    _record([back, gone], 1.0)
    sync_redis().delete(presence.PREFIX + gone)
    assert presence.forget([back, gone]) == 1
    assert presence.silent_since(time.time()) == [back]
