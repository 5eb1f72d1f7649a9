"""Helpers for tests that start real server processes (daphne, `make run`) on loopback."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback TCP port nobody listens on (also usable as a 'server is down' address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are answers too, connection errors raise OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    status, body = http_get(url, timeout)
    return status, json.loads(body)


def wait_for_status(url: str, status: int, *, timeout: float, alive=lambda: True) -> bool:
    """Poll url until it answers `status`; False after `timeout` s or once alive() turns False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            if http_get(url, timeout=5)[0] == status:
                return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def database_url(
    settings_dict: Mapping[str, Any], *, name: str | None = None, port: int | None = None
) -> str:
    """A postgis:// URL for Django database settings (optionally another database name or port)."""
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = port or settings_dict.get("PORT") or 5432
    return f"postgis://{auth}{host}:{port}/{quote(name or settings_dict['NAME'], safe='')}"


def redis_url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


def process_table() -> dict[int, tuple[int, str, str]]:
    """{pid: (ppid, state, cmdline)} from /proc."""
    table: dict[int, tuple[int, str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields follow the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), fields[0], cmdline.strip())
    return table


def descendants(pid: int) -> dict[int, str]:
    """{pid: cmdline} of every living descendant of pid."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _state, _cmd) in table.items():
        children.setdefault(parent, []).append(child)
    found: dict[int, str] = {}
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        if child in found:
            continue
        found[child] = table[child][2]
        stack.extend(children.get(child, []))
    return found


def is_running(pid: int) -> bool:
    """True while pid exists and is not a zombie (an exited process waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
