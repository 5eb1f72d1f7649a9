"""Requests a connection received but did not finish, and the order in which a charger's requests run.

    cpo:ocpp:draining:<identity>  set of the epochs of this charger's closed connections still finishing
                                  requests they had received (TTL: the drain bound and a margin)
    cpo:ocpp:kept:<charge point>  present while the charger may have requests kept for replay
                                  (`OcppFailedMessage` rows not replayed yet)

A closing connection marks itself draining only when it holds requests; the charger's next connection,
before its first request, waits (bounded) until no earlier connection of the charger is draining, then
replays what was kept (`replay.kept_messages_replay`). So a StopTransaction sent on the new connection
never runs before a MeterValues of the same transaction the old one had received, and the common case
(nothing queued, nothing kept) costs one Redis round trip per connection.
"""

from __future__ import annotations

import asyncio
import logging

from apps.ocpp_gateway import conf
from apps.ocpp_gateway.redis_clients import async_redis, sync_redis

logger = logging.getLogger(__name__)

DRAINING_PREFIX = "cpo:ocpp:draining:"
KEPT_PREFIX = "cpo:ocpp:kept:"
KEPT_TTL_S = 7 * 24 * 3600
POLL_S = 0.05


def _draining_ttl_s() -> int:
    return int(conf.drain_timeout_s()) + 30


async def draining_begin(identity: str, epoch: int) -> None:
    """Note that connection `epoch` of `identity` is finishing requests it had received. Best effort:
    without Redis the requests are still finished or kept, only the next connection does not wait."""
    key = DRAINING_PREFIX + identity
    try:
        async with async_redis().pipeline(transaction=True) as pipe:
            pipe.sadd(key, str(epoch))
            pipe.expire(key, _draining_ttl_s())
            await pipe.execute()
    except Exception:
        logger.warning("%s: could not note connection %s as draining", identity, epoch, exc_info=True)


async def draining_end(identity: str, epoch: int) -> None:
    """Best effort: a mark left behind lapses with its TTL."""
    try:
        await async_redis().srem(DRAINING_PREFIX + identity, str(epoch))
    except Exception:
        logger.warning("%s: could not clear the draining mark of %s", identity, epoch, exc_info=True)


def kept_note(charge_point_id: int) -> None:
    """Note that the charger has requests kept for replay (best effort: the periodic replay finds them
    without this mark)."""
    try:
        sync_redis().set(KEPT_PREFIX + str(charge_point_id), "1", ex=KEPT_TTL_S)
    except Exception:
        logger.warning("could not note kept requests of charge point %s", charge_point_id, exc_info=True)


def kept_clear(charge_point_id: int) -> None:
    sync_redis().delete(KEPT_PREFIX + str(charge_point_id))


async def before_first_request(identity: str, epoch: int, charge_point_id: int) -> bool:
    """Wait (at most the drain bound and a margin) until no earlier connection of `identity` is still
    finishing requests; True when the charger may have requests kept for replay."""
    redis = async_redis()
    draining_key, kept_key = DRAINING_PREFIX + identity, KEPT_PREFIX + str(charge_point_id)
    deadline = asyncio.get_running_loop().time() + _draining_ttl_s()
    while True:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.smembers(draining_key)
            pipe.exists(kept_key)
            draining, kept = await pipe.execute()
        earlier = [e for e in draining if int(e) < epoch]
        if not earlier:
            return bool(kept)
        if asyncio.get_running_loop().time() > deadline:
            logger.warning(
                "%s: earlier connection(s) %s still finishing requests; going on", identity, earlier
            )
            return bool(kept)
        await asyncio.sleep(POLL_S)
