"""Smoke test of `make run`: it boots uvicorn (the web/OCPP server), a Celery worker and Celery beat,
serves /healthz and the admin login, and a Ctrl-C (SIGINT to its process group) stops every process it
started.

It runs against a throwaway database (`<name>_smoke`, dropped first, created by scripts/services.sh) on
the same PostgreSQL as the tests, a spare Redis database number, and its own var/ directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from config.settings.services import database_settings
from tests.processes import (
    ROOT,
    database_url,
    descendants,
    free_port,
    http_get,
    is_running,
    redis_url_with_db,
    tail,
    wait_for_status,
)

pytestmark = pytest.mark.slow

BOOT_TIMEOUT_S = 180  # bootstrap (no-op here) + migrate on an empty database + demo data + static files
STOP_TIMEOUT_S = 60


def _smoke_database() -> tuple[dict, str]:
    """Settings of the server the tests use, and the name of a throwaway database on it."""
    server = database_settings(os.environ)
    return server, f"{server['NAME']}_smoke"


def _drop_database(server: dict, name: str) -> None:
    with psycopg.connect(
        host=server["HOST"],
        port=server["PORT"] or 5432,
        user=server["USER"] or None,
        password=server["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _spare_redis_db(url: str) -> str:
    current = int(urlsplit(url).path.strip("/") or 0)
    return redis_url_with_db(url, 14 if current == 15 else 15)


def _status_for_declared_body(port: int, path: str, size: int) -> int:
    """The status of a POST that declares a body of `size` bytes and sends none of it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        return int(sock.recv(100).split(b" ")[1])


def test_make_run_serves_and_stops_everything_on_ctrl_c(tmp_path):
    server, smoke_db = _smoke_database()
    _drop_database(server, smoke_db)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "DJANGO_SECRET_KEY"}
        and not key.startswith("STRIPE_")
    }
    env.update(
        PORT=str(port),
        DATABASE_URL=database_url(server, name=smoke_db),
        REDIS_URL=_spare_redis_db(settings.REDIS_URL),
        CPO_VAR_DIR=str(tmp_path / "var"),
        LOCALSTRIPE_PORT=str(free_port()),  # no STRIPE_SECRET_KEY: the demo payment backend
    )
    env.pop("CACHE_URL", None)
    command = ["make", "--no-print-directory", "run"] if shutil.which("make") else ["scripts/run.sh"]
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, as a terminal's Ctrl-C would address it
        )
    started: dict[int, str] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        up = wait_for_status(
            f"{base}/healthz", 200, timeout=BOOT_TIMEOUT_S, alive=lambda: proc.poll() is None
        )
        assert up, f"make run did not serve /healthz within {BOOT_TIMEOUT_S} s:\n{tail(log)}"
        assert http_get(f"{base}/admin/login/")[0] == 200
        assert http_get(f"{base}/readyz")[0] == 200
        # the served application refuses a body over its route's limit before reading it (cpo.asgi_limits)
        assert _status_for_declared_body(port, "/api/v1/auth/token", 1024**3) == 413
        # Payments: localstripe on loopback, named in the banner; the demo drivers got the test card.
        text = log.read_text(errors="replace")
        assert (
            f"localstripe (demo payment backend, no real payments) on http://127.0.0.1:{env['LOCALSTRIPE_PORT']}"
            in text
        )
        assert "lena.fischer@demo.cpo: test card visa •••• 4242" in text, tail(log)

        # Every process make run started, with its command line.
        deadline = time.monotonic() + 30
        while True:
            started = descendants(proc.pid)
            commands = list(started.values())
            found = {
                "web": any("uvicorn" in c and "config.asgi:application" in c for c in commands),
                "worker": any("celery" in c and " worker" in c for c in commands),
                "beat": any("celery" in c and " beat" in c for c in commands),
                "localstripe": any("tools.localstripe_server" in c for c in commands),
            }
            if all(found.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert all(found.values()), f"missing processes {found}: {commands}\n{tail(log)}"

        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run did not exit within {STOP_TIMEOUT_S} s of SIGINT:\n{tail(log)}")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(is_running(pid) for pid in started):
            time.sleep(0.3)
        left = {pid: cmd for pid, cmd in started.items() if is_running(pid)}
        assert not left, f"still running after Ctrl-C: {left}\n{tail(log)}"
        with pytest.raises(OSError):
            http_get(f"{base}/livez", timeout=2)
    finally:
        if proc.poll() is None:
            started.update(descendants(proc.pid))
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        for pid in started:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
