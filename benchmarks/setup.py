"""The bench's own database and Redis: `cpo_bench` (migrated) and Redis db 8, never the main ones.

Charge points BENCH-00000... are created in bulk with security profile 1 (HTTP Basic, key hashed with
apps.stations.keys.hash_key) under one Organisation, and left Accepted.
"""

from __future__ import annotations

import os
import subprocess
import time
from urllib.parse import urlsplit

from benchmarks.common import PY, ROOT, require_loopback_url

DEFAULT_DATABASE_URL = "postgis://postgres@127.0.0.1:5432/cpo_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"
ORG_SLUG = "bench"


def bench_env() -> dict[str, str]:
    """The environment of the bench and of every server it starts (BENCH_DATABASE_URL / BENCH_REDIS_URL
    override the loopback defaults; DATABASE_URL / REDIS_URL of the caller are deliberately ignored)."""
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    require_loopback_url("BENCH_DATABASE_URL", database_url)
    require_loopback_url("BENCH_REDIS_URL", redis_url)
    if urlsplit(database_url).path.strip("/") in ("cpo", ""):
        raise SystemExit("benchmarks: refusing to use the main `cpo` database")
    env = dict(os.environ)
    for name in ("CACHE_URL", "CPO_OCPP_ALLOW_PROFILE_0", "DJANGO_DEBUG"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY")
            or "bench-only-secret-key-not-for-production-0123456789",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def create_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.strip("/")
    conninfo = dict(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname="postgres",
        connect_timeout=5,
    )
    with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(
            **{**{k: v for k, v in conninfo.items() if v is not None}, "dbname": name}, autocommit=True
        ) as db:
            db.execute("CREATE EXTENSION IF NOT EXISTS postgis")


def migrate(env: dict[str, str], timeout: float) -> float:
    started = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.monotonic() - started


def django_setup(env: dict[str, str]) -> None:
    for name in ("DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        os.environ[name] = env[name]
    os.environ.pop("CACHE_URL", None)
    import django

    django.setup()


def ensure_charge_points(count: int) -> dict[str, int]:
    """BENCH-00000..count-1, profile 1, Accepted, with keys hashed by keys.hash_key (created in bulk)."""
    from django.db import connection

    from apps.accounts.models import Organisation
    from apps.stations import keys
    from apps.stations.models import ChargePoint
    from benchmarks.clients import identity_for, key_for

    org, _ = Organisation.objects.get_or_create(
        slug=ORG_SLUG, defaults={"name": "Bench operator", "country": "DE", "invoice_prefix": "BENCH"}
    )
    wanted = [identity_for(n) for n in range(count)]
    existing = dict(ChargePoint.objects.filter(identity__in=wanted).values_list("identity", "auth_key_hash"))
    stale = [i for i, h in existing.items() if not keys.verify_key(key_for(i), h)]
    missing = [i for i in wanted if i not in existing]
    ChargePoint.objects.bulk_create(
        [
            ChargePoint(
                organisation=org,
                identity=i,
                security_profile=1,
                registration_status="Accepted",
                auth_key_hash=keys.hash_key(key_for(i)),
            )
            for i in missing
        ],
        batch_size=2000,
    )
    for identity in stale:
        ChargePoint.objects.filter(identity=identity).update(auth_key_hash=keys.hash_key(key_for(identity)))
    ChargePoint.objects.filter(identity__in=wanted).update(
        security_profile=1, registration_status="Accepted", is_online=False
    )
    # Keep the bench database small between runs: the message log and commands of earlier runs go.
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE ocpp_gateway_ocppmessage")
    return {"created": len(missing), "rehashed": len(stale), "total": count}


def flush_redis(redis_url: str) -> None:
    import redis

    require_loopback_url("BENCH_REDIS_URL", redis_url)
    redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()
