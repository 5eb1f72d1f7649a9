"""Hand a command to the connection that holds the charger, from sync code in any process.

The message goes onto the connection's own channel in the channel layer, exactly as
`channel_layer.send()` would put it there; the consumer receives it through Channels as usual.

With channels-redis (`RedisChannelLayer`, a host given by address) the send is one Redis round trip made
by the calling thread: a script does what the layer's `send()` does in four (drop expired messages, check
capacity, add, set expiry), with the layer's own key, serializer and settings. The general path (any
other layer) runs `send()` on one long-lived event loop per process. A command caller (an admin or API
request, a Celery task) then pays neither a thread hop nor four round trips (measured under load: p50
3.4 ms / p99 18 ms for the hop and the four round trips, and worse behind busy threads of the same
process, which the loop thread must win the GIL from after every reply).

The script relies on channels-redis internals (4.3): key naming, the serializer, the sorted set scored by
time, the expiry and capacity rules. tests/ocpp_gateway/test_delivery.py (`test_contract_*`) fails when a
channels-redis release changes any of them: then compare the script with the new `send()`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from cpo.live import layer_sender

# Same steps as channels_redis.core.RedisChannelLayer.send(), atomically. KEYS[1] the channel's key;
# ARGV: expired-before score, capacity, score, serialized message, expiry in seconds.
_SEND_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class _RedisSender:
    """One sync Redis client per host of a RedisChannelLayer (per process), and the send script."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[int, int, int], Any] = {}

    def script(self, layer: Any, index: int, timeout_s: float) -> Any:
        """The send script bound to a client of the layer's host `index` (None: not reachable directly)."""
        key = (os.getpid(), id(layer), index)
        client = self._clients.get(key, False)
        if client is False:
            with self._lock:
                client = self._clients.get(key, False)
                if client is False:
                    client = self._connect(layer.hosts[index], timeout_s)
                    self._clients[key] = client = (
                        None if client is None else client.register_script(_SEND_SCRIPT)
                    )
        return client

    @staticmethod
    def _connect(host: Any, timeout_s: float) -> redis.Redis | None:
        if not isinstance(host, dict) or "address" not in host:
            return None  # e.g. Sentinel hosts: the general path
        options = {k: v for k, v in host.items() if k in ("username", "password", "ssl_cert_reqs")}
        return redis.Redis.from_url(
            host["address"], socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **options
        )

    def send(self, layer: Any, channel: str, message: dict[str, Any], timeout_s: float) -> bool:
        """False when this layer or host is not one it can reach directly."""
        index = layer.consistent_hash(channel)
        script = self.script(layer, index, timeout_s)
        if script is None:
            return False
        message = {**message, "__asgi_channel__": channel}
        now = time.time()
        added = script(
            keys=[layer.prefix + layer.non_local_name(channel)],
            args=[
                int(now) - int(layer.expiry),
                layer.get_capacity(channel),
                repr(now),
                layer.serialize(message),
                int(layer.expiry),
            ],
        )
        if not added:
            raise ChannelFull(channel)
        return True


_redis_sender = _RedisSender()


def _is_redis_layer(layer: Any) -> bool:
    return isinstance(layer, RedisChannelLayer)


def send_to_channel(channel: str, message: dict[str, Any], timeout_s: float = 5.0) -> None:
    """Put `message` on `channel` (a connection's own channel, `specific.<client>!<local>`). Raises
    ChannelFull when the channel is at capacity, redis errors or TimeoutError when the layer is
    unreachable."""
    layer = get_channel_layer()
    if "!" in channel and _is_redis_layer(layer) and _redis_sender.send(layer, channel, message, timeout_s):
        return
    layer_sender.send(channel, message, timeout_s, layer=layer)
