"""`python -m tools.simulator` (its `main`) against a real server."""

import logging
from io import StringIO

import pytest

from apps.accounts.models import IdToken
from apps.charging.choices import SessionStatus
from apps.charging.models import ChargingSession
from apps.stations.models import ChargePoint, Connector
from tests.e2e.conftest import KEY
from tests.factories import OrganisationFactory
from tools.simulator.cli import main

pytestmark = [pytest.mark.slow]


def run(*args: str, status: int = 0) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    assert main(list(args), stdout=out, stderr=err) == status, err.getvalue()
    return out.getvalue(), err.getvalue()


def summary_fields(line: str) -> dict[str, int]:
    return {name: int(value) for name, value in (item.split("=") for item in line.split())}


def test_register_then_run_sessions_and_print_a_summary(server, caplog):
    caplog.set_level(logging.WARNING, logger="ocpp")
    OrganisationFactory(slug="cmd-org")
    out, err = run(
        "--url",
        server.url,
        "--count",
        "3",
        "--protocol",
        "ocpp1.6",
        "--prefix",
        "CMD-",
        "--key",
        KEY,
        "--connectors",
        "2",
        "--register",
        "--organisation",
        "cmd-org",
        "--sessions",
        "--idle-seconds",
        "0.4",
        "--session-seconds",
        "1",
        "--meter-interval",
        "1",
        "--duration",
        "6",
    )

    assert "registered 3 charge points (3 new) in cmd-org" in err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    fields = summary_fields(lines[0])
    assert fields["chargers"] == 3 and fields["boots_accepted"] == 3 and fields["errors"] == 0
    assert fields["sessions"] >= 1

    identities = sorted(
        ChargePoint.objects.filter(identity__startswith="CMD-").values_list("identity", flat=True)
    )
    assert identities == ["CMD-00001", "CMD-00002", "CMD-00003"]
    assert Connector.objects.filter(evse__charge_point__identity__startswith="CMD-").count() == 6
    completed = ChargingSession.objects.filter(
        charge_point__identity__startswith="CMD-", status=SessionStatus.COMPLETED
    )
    assert completed.exists()
    # Every connector has its own registered driver tag: no ConcurrentTx, every session accepted.
    assert set(completed.values_list("auth_status", flat=True)) == {"Accepted"}
    assert set(completed.values_list("id_tag", flat=True)) <= {
        f"04A1{n:06X}{c:02X}" for n in (1, 2, 3) for c in (1, 2)
    }
    assert IdToken.objects.filter(uid__startswith="04A1").count() == 6

    # Registering again changes nothing.
    _, err = run(
        "--url",
        server.url,
        "--count",
        "3",
        "--prefix",
        "CMD-",
        "--key",
        KEY,
        "--register",
        "--organisation",
        "cmd-org",
        "--duration",
        "0.1",
    )
    assert "registered 3 charge points (0 new)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "ocpp2.1"], "not simulated yet"),
        (["--protocol", "ocpp1.2"], "Unknown --protocol"),
        (["--count", "0"], "--count"),
        (["--id-tag-prefix", "XYZ"], "--id-tag-prefix"),
    ],
)
def test_bad_arguments_are_refused_clearly(args, message):
    _, err = run("--url", "ws://127.0.0.1:9/ocpp", *args, status=2)
    assert err.startswith("error: ") and message in err


def test_url_must_be_a_websocket_url():
    _, err = run("--url", "http://127.0.0.1:8000/ocpp", status=2)
    assert "ws://" in err
