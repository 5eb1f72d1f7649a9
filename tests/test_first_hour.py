"""A new user's first hour: `make run DEMO_CHARGERS=10` in one terminal brings the demo network alive,
and the README's `manage.py` examples work as typed in a second terminal with nothing exported.

The project is copied to a fresh directory (a new user's checkout: no var/, the shared .venv linked in)
and the real `make run` runs there on a throwaway database (`<name>_firsthour`) and a spare Redis
database; it records its secret key and server URLs in that checkout's var/, which is all the second
terminal has. The README's examples are read from README.md, never copied here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
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
    is_running,
    redis_url_with_db,
    tail,
    wait_for_status,
)

pytestmark = pytest.mark.slow

BOOT_TIMEOUT_S = 240  # bootstrap (no-op) + migrate on an empty database + demo data + static files
LIVE_TIMEOUT_S = 150  # demo chargers booted and a car charging ("in the first minute", with room to spare)
STOP_TIMEOUT_S = 60
DEMO_CHARGERS = 10
README_PORT = "8000"  # the README's examples name make run's default PORT
# What a fresh terminal has: no DJANGO_*, DATABASE_URL, REDIS_URL or CPO_* variable.
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", "var", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"
)


@dataclass
class Run:
    checkout: Path
    port: int
    server: dict[str, Any]
    database: str
    log: Path
    proc: subprocess.Popen

    def query(self, statement: str, *params: Any) -> list[tuple]:
        with psycopg.connect(
            host=self.server["HOST"],
            port=self.server["PORT"] or 5432,
            user=self.server["USER"] or None,
            password=self.server["PASSWORD"] or None,
            dbname=self.database,
            connect_timeout=10,
        ) as conn:
            return conn.execute(statement, params).fetchall()

    def wait_until(self, what: str, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(
                    f"make run exited ({self.proc.returncode}) while waiting for {what}:\n{tail(self.log)}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout} s\n{tail(self.log)}")
            time.sleep(0.5)

    def booted(self, identities: list[str]) -> bool:
        rows = self.query(
            "SELECT count(*) FROM stations_chargepoint WHERE identity = ANY(%s) AND last_boot_at IS NOT NULL",
            identities,
        )
        return rows[0][0] == len(identities)


def _admin_connect(server: dict[str, Any]) -> psycopg.Connection:
    return psycopg.connect(
        host=server["HOST"],
        port=server["PORT"] or 5432,
        user=server["USER"] or None,
        password=server["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    )


def _drop_database(server: dict[str, Any], name: str) -> None:
    with _admin_connect(server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _spare_redis_db(url: str) -> str:
    current = int(urlsplit(url).path.strip("/") or 0)
    return redis_url_with_db(url, 12 if current == 13 else 13)


def fresh_checkout(dest: Path) -> Path:
    """The project as a new user has it before the first `make run`: the files, no var/, and the
    virtualenv (linked: installing it again is bootstrap's business, not this test's)."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())
    return dest


@pytest.fixture(scope="module")
def make_run(tmp_path_factory) -> Iterator[Run]:
    """`make run DEMO_CHARGERS=10` in a fresh checkout, served until the module's tests are done; then
    Ctrl-C, and every process it started (the demo chargers too) must be gone."""
    base = tmp_path_factory.mktemp("first-hour")
    checkout = fresh_checkout(base / "cpo")
    server = database_settings(os.environ)
    database = f"{server['NAME']}_firsthour"
    _drop_database(server, database)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "CPO_", "MAKE", "PYTEST_")) and key not in {"MFLAGS", "CACHE_URL"}
    }
    env.update(
        PORT=str(port),
        DATABASE_URL=database_url(server, name=database),
        REDIS_URL=_spare_redis_db(settings.REDIS_URL),
    )
    log = base / "make-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"DEMO_CHARGERS={DEMO_CHARGERS}"],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    run = Run(checkout=checkout, port=port, server=server, database=database, log=log, proc=proc)
    started: dict[int, str] = {}
    try:
        up = wait_for_status(
            f"http://127.0.0.1:{port}/healthz", 200, timeout=BOOT_TIMEOUT_S, alive=lambda: proc.poll() is None
        )
        assert up, f"make run did not serve /healthz within {BOOT_TIMEOUT_S} s:\n{tail(log)}"
        yield run
        started = descendants(proc.pid)
        assert any("tools.simulator.demo" in cmd for cmd in started.values()), started
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=STOP_TIMEOUT_S)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(is_running(pid) for pid in started):
            time.sleep(0.3)
        left = {pid: cmd for pid, cmd in started.items() if is_running(pid)}
        assert not left, f"still running after Ctrl-C: {left}\n{tail(log)}"
    finally:
        if proc.poll() is None:
            started.update(descendants(proc.pid))
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for pid in started:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        _drop_database(server, database)


def readme_examples() -> list[str]:
    """The shell commands in README.md's ```sh blocks that run manage.py or the charger simulator
    (backslash continuations joined), in README order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        joined = re.sub(r"\\\n\s*", "", block)
        commands += [
            line.strip()
            for line in joined.splitlines()
            if line.startswith((".venv/bin/python manage.py ", ".venv/bin/python -m tools.simulator "))
        ]
    return commands


def second_terminal(command: str, checkout: Path, home: Path, **popen: Any) -> subprocess.Popen:
    """`command` as typed in a fresh terminal in the checkout: bash, nothing exported but PATH and HOME."""
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=checkout,
        env={"PATH": CLEAN_PATH, "HOME": str(home)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_readme_names_the_examples_a_new_user_needs():
    commands = readme_examples()

    assert any(" manage.py ocpp_call " in c for c in commands), commands
    assert any(" manage.py idtoken_add " in c and "--type Central" in c for c in commands), commands
    assert any(" -m tools.simulator " in c for c in commands), commands


def test_demo_chargers_connect_and_charge(make_run):
    """make run DEMO_CHARGERS=10: ten demo charge points boot with their demo keys, and cars charge
    with the demo cards (an ACTIVE session the product accepted, its connector Charging)."""
    identities = [
        row[0]
        for row in make_run.query(
            "SELECT identity FROM stations_chargepoint WHERE registration_status = 'Accepted' "
            "AND availability = 'Operative' ORDER BY id LIMIT %s",
            DEMO_CHARGERS,
        )
    ]
    assert len(identities) == DEMO_CHARGERS

    make_run.wait_until("the demo chargers boot", lambda: make_run.booted(identities), LIVE_TIMEOUT_S)

    def charging() -> list[tuple]:
        return make_run.query(
            "SELECT cp.identity, t.uid FROM charging_chargingsession s "
            "JOIN stations_chargepoint cp ON cp.id = s.charge_point_id "
            "JOIN accounts_idtoken t ON t.id = s.id_token_id "
            "WHERE s.status = 'ACTIVE' AND s.auth_status = 'Accepted' AND cp.identity = ANY(%s)",
            identities,
        )

    make_run.wait_until("a demo car charges", lambda: bool(charging()), LIVE_TIMEOUT_S)
    make_run.wait_until(
        "a demo connector reports Charging",
        lambda: bool(
            make_run.query(
                "SELECT 1 FROM stations_connector c JOIN stations_evse e ON e.id = c.evse_id "
                "JOIN stations_chargepoint cp ON cp.id = e.charge_point_id "
                "WHERE c.status = 'Charging' AND cp.identity = ANY(%s)",
                identities,
            )
        ),
        LIVE_TIMEOUT_S,
    )


def test_readme_examples_work_in_a_second_terminal_with_nothing_exported(make_run, tmp_path):
    """Each README example, typed as written in a fresh shell in the checkout while make run serves, exits 0
    and does what it says. Only the port differs: make run serves on a free port here, not 8000."""
    home = tmp_path / "home"
    home.mkdir()
    make_run.wait_until("VOL-BER-001 boots", lambda: make_run.booted(["VOL-BER-001"]), LIVE_TIMEOUT_S)
    for command in readme_examples():
        typed = command.replace(f"127.0.0.1:{README_PORT}/", f"127.0.0.1:{make_run.port}/")
        if " -m tools.simulator " in typed:
            _run_simulator_example(make_run, typed, home)
            continue
        proc = second_terminal(typed, make_run.checkout, home)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\nstdout: {out}\nstderr: {err}"
        if " idtoken_add " in typed:
            assert out.strip() in {"created", "unchanged"}, (command, out)

    assert make_run.query("SELECT type FROM accounts_idtoken WHERE uid = 'MYCARD'") == [("Central",)]
    outcome = make_run.query(
        "SELECT c.status FROM ocpp_gateway_ocppcommand c "
        "JOIN stations_chargepoint cp ON cp.id = c.charge_point_id "
        "WHERE cp.identity = 'VOL-BER-001' AND c.action = 'Reset'"
    )
    resets = [c for c in readme_examples() if " ocpp_call VOL-BER-001 Reset " in c]
    assert resets and outcome == [("answered",)] * len(resets), outcome


def _run_simulator_example(make_run: Run, command: str, home: Path) -> None:
    """The simulator example registers and runs its chargers until --duration: wait until all of them
    booted at the server, then Ctrl-C it (it prints its summary and exits 0)."""
    args = shlex.split(command)
    count = int(args[args.index("--count") + 1])
    prefix = args[args.index("--prefix") + 1] if "--prefix" in args else "SIM-"
    identities = [f"{prefix}{n:05d}" for n in range(1, count + 1)]
    proc = second_terminal(command, make_run.checkout, home, start_new_session=True)
    try:
        deadline = time.monotonic() + LIVE_TIMEOUT_S
        while not make_run.booted(identities):
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"{command}\nexit {proc.returncode}\nstdout: {out}\nstderr: {err}")
            assert time.monotonic() < deadline, (
                f"{command}: its chargers did not boot within {LIVE_TIMEOUT_S} s"
            )
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\nstdout: {out}\nstderr: {err}"
    assert f"registered {count} charge points" in err
    assert f"chargers={count} connected={count} " in out
