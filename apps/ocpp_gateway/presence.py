"""Which connection holds which charger, kept in Redis only (never a database write per frame).

    cpo:ocpp:presence:<identity>  hash {channel, epoch, server, connected_at, last_frame_at, address,
                                  authenticated, boot_vendor, boot_model, boot_serial, booted_at}, TTL
    cpo:ocpp:epoch:<identity>     counter; every accepted connection takes the next epoch
    cpo:ocpp:presence-seen        sorted set: identity -> time of its last recorded frame (0 once its
                                  connection ended), so that the flush to PostgreSQL reads only what
                                  changed since the last flush and what lapsed (O(changes), not O(chargers))

A new connection claims presence only after it has authenticated; the old connection is told to close.
Touch and release compare the epoch, so a replaced socket's late traffic or disconnect never affects
the connection that replaced it. A record whose TTL lapses means the charger is offline.

A connection without credentials (profile 0, a Pending charger without a key) never replaces a live one
from another address (`claim(..., unless_alive_since=...)`): whoever knows an identity could otherwise
take a Pending charger's place and receive its key when the operator accepts it. From the live
connection's own address it may: that is the charger itself reconnecting after a reboot or a network
drop, before the server has noticed that the old TCP connection is dead (refusing it would keep a
keyless charger out for up to a heartbeat interval and a minute, and many firmwares then back off for
long). The operator's accept page shows the
connection's address and what its own BootNotification said (`note_boot`), and the key is bound to
that connection's epoch.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from redis.exceptions import WatchError

from apps.ocpp_gateway import conf
from apps.ocpp_gateway.redis_clients import async_redis, sync_redis

PREFIX = "cpo:ocpp:presence:"
SEEN_KEY = "cpo:ocpp:presence-seen"
EPOCH_PREFIX = "cpo:ocpp:epoch:"
SERVER_ID = f"{socket.gethostname()}:{os.getpid()}"

_TOUCH = """
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'last_frame_at', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
  return 1
end
return 0
"""
_NOTE_BOOT = """
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'boot_vendor', ARGV[2], 'boot_model', ARGV[3], 'boot_serial', ARGV[4],
             'booted_at', ARGV[5])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'epoch') == ARGV[1] then
  redis.call('ZADD', KEYS[2], 0, ARGV[2])
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Removes members (ARGV) whose presence record (KEYS[i + 1]) is gone, atomically with the check.
_FORGET = """
local removed = 0
for i = 1, #ARGV do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


@dataclass(frozen=True, slots=True)
class Presence:
    identity: str
    channel: str
    epoch: int
    server: str
    connected_at: float
    last_frame_at: float
    address: str = ""
    authenticated: bool = True
    boot_vendor: str = ""
    boot_model: str = ""
    boot_serial: str = ""
    booted_at: float = 0.0


def _parse(identity: str, data: dict[str, str]) -> Presence | None:
    if not data or "channel" not in data:
        return None
    return Presence(
        identity=identity,
        channel=data["channel"],
        epoch=int(data["epoch"]),
        server=data.get("server", ""),
        connected_at=float(data.get("connected_at", 0)),
        last_frame_at=float(data.get("last_frame_at", 0)),
        address=data.get("address", ""),
        authenticated=data.get("authenticated", "1") == "1",
        boot_vendor=data.get("boot_vendor", ""),
        boot_model=data.get("boot_model", ""),
        boot_serial=data.get("boot_serial", ""),
        booted_at=float(data.get("booted_at") or 0),
    )


class Held(Exception):
    """A live connection holds the identity and the newcomer may not replace it."""


async def claim(
    identity: str,
    channel: str,
    *,
    address: str = "",
    authenticated: bool = True,
    unless_alive_since: float | None = None,
) -> tuple[int, Presence | None]:
    """Take over presence for `identity`; returns (our epoch, the presence we replaced). With
    `unless_alive_since`, raises Held instead when the current holder sent a frame since then and was
    recorded with another address than `address` (the same address: the charger itself reconnecting)."""
    r = async_redis()
    key = PREFIX + identity
    now = time.time()
    epoch = int(await r.incr(EPOCH_PREFIX + identity))  # unique even if this claim is refused
    mapping = {
        "channel": channel,
        "epoch": epoch,
        "server": SERVER_ID,
        "connected_at": now,
        "last_frame_at": now,
        "address": address,
        "authenticated": "1" if authenticated else "0",
    }
    # The check and the new record in one transaction (WATCH): no other claim slips in between.
    async with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key)
                data = await pipe.hgetall(key)
                previous = _parse(identity, data)
                if (
                    unless_alive_since is not None
                    and previous is not None
                    and previous.last_frame_at >= unless_alive_since
                    and not (address and previous.address == address)
                ):
                    await pipe.reset()
                    raise Held(identity)
                pipe.multi()
                pipe.delete(key)
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, conf.presence_ttl_s())
                pipe.zadd(SEEN_KEY, {identity: now})
                await pipe.execute()
                break
            except WatchError:
                continue
    return epoch, previous


async def note_boot(identity: str, epoch: int, *, vendor: str, model: str, serial: str) -> None:
    """What this connection's BootNotification said, for the operator's accept page."""
    await async_redis().eval(
        _NOTE_BOOT, 1, PREFIX + identity, str(epoch), vendor[:50], model[:50], serial[:50], str(time.time())
    )


async def touch(identity: str, epoch: int) -> bool:
    """Refresh last frame time and TTL; False when another connection has taken over."""
    r = async_redis()
    result = await r.eval(
        _TOUCH,
        2,
        PREFIX + identity,
        SEEN_KEY,
        str(epoch),
        str(time.time()),
        str(conf.presence_ttl_s()),
        identity,
    )
    return bool(result)


async def release(identity: str, epoch: int) -> None:
    await async_redis().eval(_RELEASE, 2, PREFIX + identity, SEEN_KEY, str(epoch), identity)


def lookup(identity: str) -> Presence | None:
    """The current connection of `identity`, or None when it is offline (sync; any process)."""
    return _parse(identity, sync_redis().hgetall(PREFIX + identity))


def seen_since(since: float) -> dict[str, float]:
    """Identities with a frame recorded after `since` (epoch seconds), with that frame's time."""
    pairs: list[tuple[str | bytes, float]] = sync_redis().zrangebyscore(  # type: ignore[assignment]
        SEEN_KEY, f"({since}", "+inf", withscores=True
    )
    return {_text(identity): float(score) for identity, score in pairs}


def silent_since(before: float) -> list[str]:
    """Identities whose last recorded frame is older than `before` (or whose connection ended): the
    candidates for offline. The flush checks each against its presence record."""
    found: list[str | bytes] = sync_redis().zrangebyscore(  # type: ignore[assignment]
        SEEN_KEY, "-inf", f"({before}"
    )
    return [_text(identity) for identity in found]


def forget(identities: list[str]) -> int:
    """Drop identities that are offline from the sorted set, unless a frame was recorded for them
    meanwhile (a charger that came back between the check and this call keeps its place)."""
    if not identities:
        return 0
    keys = [SEEN_KEY, *(PREFIX + identity for identity in identities)]
    return int(sync_redis().eval(_FORGET, len(keys), *keys, *identities))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def online(identities: list[str]) -> set[str]:
    """Which of `identities` a connection holds right now (one Redis round trip)."""
    if not identities:
        return set()
    pipe = sync_redis().pipeline(transaction=False)
    for identity in identities:
        pipe.exists(PREFIX + identity)
    return {identity for identity, found in zip(identities, pipe.execute(), strict=True) if found}


def lookup_many(identities: list[str]) -> dict[str, Presence]:
    """The current connections of `identities` that have one (one Redis round trip per 500)."""
    found: dict[str, Presence] = {}
    r = sync_redis()
    for start in range(0, len(identities), 500):
        chunk = identities[start : start + 500]
        pipe = r.pipeline(transaction=False)
        for identity in chunk:
            pipe.hgetall(PREFIX + identity)
        for identity, data in zip(chunk, pipe.execute(), strict=True):
            record = _parse(identity, data)
            if record is not None:
                found[identity] = record
    return found
