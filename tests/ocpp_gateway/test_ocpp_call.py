"""`manage.py ocpp_call`: the outcome as JSON on stdout, and an exit status per outcome (0 answered,
1 CALLERROR, 2 invalid input, 3 unknown charger, 4 timeout, 5 offline)."""

from __future__ import annotations

import asyncio
import json
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django import db
from django.core.management import CommandError, call_command

from apps.accounts.models import AuditRecord
from apps.ocpp_gateway.management.commands.ocpp_call import (
    EXIT_CALL_ERROR,
    EXIT_INVALID,
    EXIT_OFFLINE,
    EXIT_TIMEOUT,
    EXIT_UNKNOWN_CHARGER,
)
from apps.ocpp_gateway.models import OcppCommand
from tests.ocpp_gateway.conftest import Charger, connect


def run(*args: str) -> tuple[int, str, str]:
    """call_command as the shell runs it: (exit status, stdout, error message)."""
    out = StringIO()
    try:
        call_command("ocpp_call", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    finally:
        db.connection.close()
    return 0, out.getvalue(), ""


in_thread = sync_to_async(run, thread_sensitive=False)


@pytest.mark.django_db(transaction=True)
def test_offline_charger_prints_the_outcome_and_exits_5(charge_point):
    code, out, problem = run("CP-1", "Reset", '{"type": "Soft"}')
    assert code == EXIT_OFFLINE == 5
    outcome = json.loads(out)
    assert outcome["status"] == "charger_offline" and outcome["action"] == "Reset"
    assert problem.startswith("Reset to CP-1: charger_offline")
    assert AuditRecord.objects.get(action="ocpp.Reset").source == "cli"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "code", "problem"),
    [
        (("CP-1", "Reset", "{type: Soft}"), EXIT_INVALID, "The payload is not JSON"),
        (("CP-1", "Reset", "[1, 2]"), EXIT_INVALID, "The payload must be a JSON object."),
        (
            ("CP-1", "Reset", '{"type": "Medium"}'),
            EXIT_INVALID,
            "The Reset payload is invalid: type: 'Medium'",
        ),
        (("CP-1", "Rest", '{"type": "Soft"}'), EXIT_INVALID, "Rest is not an OCPP 1.6 command."),
        (("CP-1", "Reset", '{"type": "Soft"}', "--timeout", "0"), EXIT_INVALID, "between 0 and 3600"),
        (
            ("CP-404", "Reset", '{"type": "Soft"}'),
            EXIT_UNKNOWN_CHARGER,
            "No charge point with identity CP-404.",
        ),
    ],
)
def test_bad_input_exits_non_zero_and_sends_nothing(charge_point, args, code, problem):
    exit_code, out, message = run(*args)
    assert exit_code == code
    assert out == ""
    assert problem in message
    assert not OcppCommand.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_identity_is_matched_without_regard_to_case(charge_point):
    code, _out, _problem = run("cp-1", "ClearCache")
    assert code == EXIT_OFFLINE
    assert OcppCommand.objects.get().charge_point == charge_point


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_answered_call_prints_the_answer_and_exits_0(charge_point):
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    calling = asyncio.ensure_future(
        in_thread("CP-1", "GetConfiguration", '{"key": ["HeartbeatInterval"]}', "--timeout", "10")
    )
    call = await charger.receive()
    assert call[2] == "GetConfiguration" and call[3] == {"key": ["HeartbeatInterval"]}
    answer = {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]}
    await charger.send_raw(json.dumps([3, call[1], answer]))
    code, out, problem = await calling
    assert (code, problem) == (0, "")
    outcome = json.loads(out)
    assert outcome["status"] == "answered" and outcome["response"] == answer
    await comm.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_call_error_exits_1_and_timeout_exits_4(charge_point):
    comm, connected, _ = await connect()
    assert connected
    charger = Charger(comm)
    calling = asyncio.ensure_future(in_thread("CP-1", "UnlockConnector", '{"connectorId": 1}'))
    call = await charger.receive()
    await charger.send_raw(json.dumps([4, call[1], "NotSupported", "no lock here", {}]))
    code, out, problem = await calling
    assert code == EXIT_CALL_ERROR
    assert json.loads(out)["error_code"] == "NotSupported"
    assert problem == "UnlockConnector to CP-1: call_error (NotSupported: no lock here)"

    calling = asyncio.ensure_future(in_thread("CP-1", "ClearCache", "{}", "--timeout", "1"))
    await charger.receive()  # never answered
    code, out, problem = await calling
    assert code == EXIT_TIMEOUT
    assert json.loads(out)["status"] == "timeout"
    await comm.disconnect()
