"""Redis clients for the gateway: one async client per event loop, one shared sync client."""

from __future__ import annotations

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio as aioredis
from django.conf import settings

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def async_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # A bounded pool that makes a burst wait for a free connection: with an unbounded one, 300
        # chargers connecting at once opened 873 Redis connections (a TCP connect and a HELLO each, about
        # a quarter of the event loop's time in the burst) for commands that take a fraction of a
        # millisecond. The gateway sends no blocking command through this client (the channel layer has
        # its own connections).
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=int(getattr(settings, "CPO_OCPP_REDIS_MAX_CONNECTIONS", 64)),
            timeout=15,
            socket_timeout=15,
            socket_connect_timeout=5,
            decode_responses=True,
        )
        client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client


@cache
def sync_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=15, socket_connect_timeout=5, decode_responses=True
    )
