"""The charger simulator is a tool, not part of the product: it imports nothing from the product and runs
without Django settings; `--register` reaches the product only through its management commands."""

import ast
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings

from tools.simulator import Charger, ChargingStation
from tools.simulator.base import SimulatedCharger, SimulatedConnection
from tools.simulator.cli import main

TOOLS = Path(settings.BASE_DIR) / "tools"
PRODUCT_PACKAGES = ("apps", "cpo", "config")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_tools_import_nothing_from_the_product():
    offending = {
        f"{path.relative_to(TOOLS.parent)}: {name}"
        for path in TOOLS.rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[0] in PRODUCT_PACKAGES
    }
    assert not offending


def test_the_product_does_not_import_the_tools():
    root = Path(settings.BASE_DIR)
    offending = {
        f"{path.relative_to(root)}: {name}"
        for package in PRODUCT_PACKAGES
        for path in (root / package).rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[0] == "tools"
    }
    assert not offending


def test_both_versions_share_one_base():
    assert issubclass(Charger, SimulatedCharger) and issubclass(ChargingStation, SimulatedCharger)
    assert not issubclass(ChargingStation, Charger)
    for charger in (Charger, ChargingStation):
        assert issubclass(charger.connection_class, SimulatedConnection)


def test_runs_without_django_settings_and_loads_no_product_module():
    """A fleet against a port nobody listens on: every connection fails, the summary says so, and neither
    Django settings nor any product module was needed."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    script = (
        "import sys\n"
        "from tools.simulator.cli import main\n"
        "status = main(['--url', 'ws://127.0.0.1:9/ocpp', '--count', '2', '--duration', '0.5'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('apps', 'cpo', 'config'))\n"
        "print('product modules:', loaded)\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary, loaded = done.stdout.strip().splitlines()
    assert summary.startswith("chargers=2 connected=0 boots_accepted=0 ")
    assert loaded == "product modules: []"


@pytest.mark.django_db
def test_register_refused_by_the_product_is_exit_status_1():
    out, err = StringIO(), StringIO()
    status = main(
        ["--url", "ws://127.0.0.1:9/ocpp", "--register", "--organisation", "no-such-org", "--duration", "0"],
        stdout=out,
        stderr=err,
    )
    assert status == 1
    assert err.getvalue() == "error: No organisation with slug 'no-such-org'.\n"
    assert out.getvalue() == ""
