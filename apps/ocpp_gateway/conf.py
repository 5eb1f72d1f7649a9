"""Gateway settings, read once from Django settings with their defaults."""

from __future__ import annotations

from django.conf import settings


def get(name: str, default):
    return getattr(settings, name, default)


def heartbeat_interval_s() -> int:
    return int(get("CPO_OCPP_HEARTBEAT_INTERVAL_S", 300))


def presence_ttl_s() -> int:
    """A charger silent for this long is offline: two heartbeats plus a minute of slack."""
    return int(get("CPO_OCPP_PRESENCE_TTL_S", heartbeat_interval_s() * 2 + 60))


def presence_touch_every_s() -> float:
    """Refresh the presence record at most this often per connection (not on every frame)."""
    return float(get("CPO_OCPP_PRESENCE_TOUCH_S", 30))


def unauthenticated_takeover_after_s() -> float:
    """A connection without credentials may replace the charger's current one only when that one has
    sent nothing for this long (default: a heartbeat interval and a minute); before, it is refused."""
    return float(get("CPO_OCPP_UNAUTHENTICATED_TAKEOVER_AFTER_S", heartbeat_interval_s() + 60))


def allow_profile_0() -> bool:
    return bool(get("CPO_OCPP_ALLOW_PROFILE_0", False))


def unknown_chargers() -> str:
    return str(get("CPO_OCPP_UNKNOWN_CHARGERS", "reject"))


def auto_register_organisation() -> str:
    return str(get("CPO_OCPP_AUTO_REGISTER_ORGANISATION", ""))


def command_timeout_s() -> float:
    return float(get("CPO_OCPP_COMMAND_TIMEOUT_S", 30))


def max_frame_bytes() -> int:
    return int(get("CPO_OCPP_MAX_FRAME_BYTES", 1024 * 1024))


def max_json_depth() -> int:
    """Deepest nesting of arrays/objects accepted in a frame (the deepest OCPP 2.0.1 message needs 14)."""
    return int(get("CPO_OCPP_MAX_JSON_DEPTH", 32))


def message_log_enabled() -> bool:
    return bool(get("CPO_OCPP_MESSAGE_LOG", True))


def message_log_retention_days() -> int:
    """Days the message log is kept (whole monthly partitions dropped after it); 0 keeps it forever."""
    return int(get("CPO_OCPP_MESSAGE_LOG_DAYS", 30))


def auth_failure_limit() -> tuple[int, int, int]:
    """(failures per identity and address, failures per address, window in seconds) before handshakes
    from that address are refused (429). Chargers behind one carrier-grade NAT share an address: the
    per-address figure must leave room for their occasional failures."""
    return (
        int(get("CPO_OCPP_AUTH_FAILURES_PER_IDENTITY_ADDRESS", 10)),
        int(get("CPO_OCPP_AUTH_FAILURES_PER_ADDRESS", 50)),
        int(get("CPO_OCPP_AUTH_FAILURE_WINDOW_S", 300)),
    )


def drain_timeout_s() -> float:
    """How long a closing connection goes on handling the requests it had received before it keeps the
    rest for replay (the charger's next connection waits for it, so keep it short)."""
    return float(get("CPO_OCPP_DRAIN_TIMEOUT_S", 10))


def replay_after_s() -> float:
    """Requests kept for replay that no new connection of their charger has replayed after this long are
    replayed by the periodic task (`ocpp_gateway.kept_messages_replay`)."""
    return float(get("CPO_OCPP_REPLAY_AFTER_S", 120))


def db_workers() -> int:
    """Threads of the gateway's database pool (dbwork): CPO_OCPP_DB_WORKERS, else the database connection
    pool's size less two connections left for the process's other users (HTTP requests, the message log);
    without a connection pool (DB_POOL_MAX_SIZE=0, e.g. behind PgBouncer) 8."""
    explicit = get("CPO_OCPP_DB_WORKERS", None)
    if explicit:
        return max(1, int(explicit))
    pool = (settings.DATABASES["default"].get("OPTIONS") or {}).get("pool")
    if isinstance(pool, dict) and pool.get("max_size"):
        return max(1, int(pool["max_size"]) - 2)
    return 8


def group_commit_window_s() -> float:
    """How long the first data-carrying message of a batch waits for others to share its commit
    (CPO_OCPP_GROUP_COMMIT_MS, default 0: no wait; a batch is what queued while the group commits in
    flight were busy)."""
    return float(get("CPO_OCPP_GROUP_COMMIT_MS", 0)) / 1000


def group_commit_max() -> int:
    """The most messages in one group commit (CPO_OCPP_GROUP_COMMIT_MAX; 1 turns group commit off)."""
    return int(get("CPO_OCPP_GROUP_COMMIT_MAX", 1))


def group_commit_in_flight() -> int:
    """How many group commits of one process may run at once, each on a database thread
    (CPO_OCPP_GROUP_COMMIT_IN_FLIGHT; 0: half the database threads, leaving the rest to other work)."""
    explicit = int(get("CPO_OCPP_GROUP_COMMIT_IN_FLIGHT", 0))
    return explicit if explicit > 0 else max(1, db_workers() // 2)


def auth_refusal_cache_s() -> float:
    """How long a refused handshake is answered again from memory, for the same identity, address and
    credentials (0: never)."""
    return float(get("CPO_OCPP_AUTH_REFUSAL_CACHE_S", 5))
