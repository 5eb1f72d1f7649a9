"""Probe and prepare the servers named by URLs, for scripts/services.sh (runs with .venv's Python).

    servicectl.py pg URL [--wait S]     reach PostgreSQL, create the database and the postgis extension
    servicectl.py redis URL [--wait S]  PING Redis
    servicectl.py mask URL              the URL with its password replaced by ***
    servicectl.py hostport URL          "host port" of the URL (defaults filled in)

Exit status: 0 ok; 10 the server does not answer; 11 the postgis extension is not available on the server
(stdout: the server's major version); 12 the server refused the login; 13 anything else. Imports neither
Django nor the project, so it stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import urlsplit

UNREACHABLE, NO_POSTGIS, AUTH, OTHER = 10, 11, 12, 13

_UNREACHABLE_HINTS = (
    "connection refused",
    "timeout expired",
    "timed out",
    "could not translate host name",
    "no route to host",
    "network is unreachable",
    "no such file or directory",
    "server closed the connection unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
    "connection reset",
    "name or service not known",
)
_AUTH_HINTS = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "pg_hba.conf",
    "peer authentication",
)


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def mask(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return url


def _pg_conninfo(url: str, **overrides: str) -> str:
    from psycopg.conninfo import make_conninfo

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgis", "postgres", "postgresql", "pgsql"}:
        raise Failure(OTHER, f"not a PostgreSQL URL: {mask(url)}")
    params = {"connect_timeout": "5", "application_name": "cpo-services"}
    params.update(overrides)
    return make_conninfo(f"postgresql://{rest}", **params)


def _classify(exc: Exception) -> int:
    text = str(exc).lower()
    if any(hint in text for hint in _AUTH_HINTS):
        return AUTH
    if any(hint in text for hint in _UNREACHABLE_HINTS):
        return UNREACHABLE
    return OTHER


def _connect(conninfo: str):
    import psycopg

    return psycopg.connect(conninfo, autocommit=True)


def pg_ensure(url: str) -> int:
    """Create the database and the postgis extension if missing; return the server's major version."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    target = _pg_conninfo(url)
    dbname = str(conninfo_to_dict(target).get("dbname") or "")
    if not dbname:
        raise Failure(OTHER, f"the URL names no database: {mask(url)}")
    try:
        conn = _connect(target)
    except psycopg.OperationalError as exc:
        if f'database "{dbname}" does not exist' not in str(exc):
            raise Failure(_classify(exc), str(exc).strip()) from exc
        _create_database(url, dbname)
        try:
            conn = _connect(target)
        except psycopg.OperationalError as exc2:
            raise Failure(_classify(exc2), str(exc2).strip()) from exc2
    with conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone():
            return major
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone():
            print(major)
            raise Failure(NO_POSTGIS, f"PostgreSQL {major} has no postgis extension available")
        try:
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS postgis"))
        except psycopg.errors.UniqueViolation:
            pass  # created concurrently by another process
        except psycopg.errors.InsufficientPrivilege as exc:
            raise Failure(
                OTHER,
                f"this user may not create the postgis extension in {dbname!r}; as a superuser run "
                f"CREATE EXTENSION postgis; in that database ({exc})",
            ) from exc
    return major


def _create_database(url: str, dbname: str) -> None:
    import psycopg
    from psycopg import sql

    last: Exception | None = None
    for maintenance_db in ("postgres", "template1"):
        try:
            conn = _connect(_pg_conninfo(url, dbname=maintenance_db))
        except psycopg.OperationalError as exc:
            last = exc
            continue
        with conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                print(f"created database {dbname}", file=sys.stderr)
            except psycopg.errors.DuplicateDatabase:
                pass
            except psycopg.errors.InsufficientPrivilege as exc:
                raise Failure(OTHER, f"this user may not create the database {dbname!r}: {exc}") from exc
        return
    raise Failure(_classify(last) if last else OTHER, str(last).strip())


def redis_ping(url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise Failure(UNREACHABLE, str(exc).strip()) from exc
    except redis.AuthenticationError as exc:
        raise Failure(AUTH, str(exc).strip()) from exc
    except (redis.RedisError, ValueError) as exc:
        raise Failure(OTHER, str(exc).strip()) from exc


def _with_wait(action, wait_s: float):
    """Retry while the server does not answer yet (it may be starting), up to wait_s seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return action()
        except Failure as exc:
            if exc.code != UNREACHABLE or time.monotonic() >= deadline:
                raise
            time.sleep(0.3)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("action", choices=["pg", "redis", "mask", "hostport"])
    parser.add_argument("url")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)

    if args.action == "mask":
        print(mask(args.url))
        return 0
    if args.action == "hostport":
        try:
            parts = urlsplit(args.url)
            default_port = 6379 if parts.scheme.startswith("redis") else 5432
            print(parts.hostname or "localhost", parts.port or default_port)
        except ValueError as exc:
            print(f"malformed URL: {exc}", file=sys.stderr)
            return OTHER
        return 0
    try:
        if args.action == "pg":
            _with_wait(lambda: pg_ensure(args.url), args.wait)
        else:
            _with_wait(lambda: redis_ping(args.url), args.wait)
    except Failure as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return OTHER
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
