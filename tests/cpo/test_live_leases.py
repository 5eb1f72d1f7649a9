"""Live stream leases (cpo.live): many streams ending at once share a few Redis connections."""

from __future__ import annotations

import asyncio
import uuid

from django.test import override_settings

from cpo import live


@override_settings(CPO_LIVE_REDIS_CONNECTIONS=4)
def test_a_burst_of_leases_queues_for_a_bounded_pool_of_connections() -> None:
    """300 streams take and give back their leases all at once: every call completes, the caps hold,
    and the process opened at most the configured number of Redis connections (the storm of new
    connections stood the event loop still when 2,000 streams closed together)."""
    capped = f"test-burst-{uuid.uuid4().hex}"

    async def burst() -> tuple[list[bool], int, int, int]:
        leases = [live.StreamLease(capped_key=capped, cap=250, ttl_s=60) for _ in range(300)]
        taken = await asyncio.gather(*(lease.acquire() for lease in leases))
        counted = await live.lease_count(capped)
        await asyncio.gather(*(lease.release() for lease in leases))
        left = await live.lease_count(capped)
        pool = live._async_redis().connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        await live._async_redis().aclose()
        return taken, counted, left, opened

    taken, counted, left, opened = asyncio.run(burst())
    assert taken.count(True) == 250 and taken.count(False) == 50
    assert counted == 250
    assert left == 0
    assert 1 <= opened <= 4


@override_settings(CPO_LIVE_REDIS_CONNECTIONS=1)
def test_one_connection_is_enough_for_concurrent_refreshes() -> None:
    """Even a single connection serves concurrent callers in turn (they wait; none fails)."""
    capped = f"test-one-{uuid.uuid4().hex}"

    async def run() -> tuple[int, int]:
        leases = [live.StreamLease(capped_key=capped, cap=-1, ttl_s=60) for _ in range(50)]
        await asyncio.gather(*(lease.acquire() for lease in leases))
        await asyncio.gather(*(lease.refresh() for lease in leases))
        counted = await live.lease_count(capped)
        await asyncio.gather(*(lease.release() for lease in leases))
        pool = live._async_redis().connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        await live._async_redis().aclose()
        return counted, opened

    counted, opened = asyncio.run(run())
    assert counted == 50
    assert opened == 1
