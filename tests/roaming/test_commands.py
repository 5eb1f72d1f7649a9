"""Commands receiver: answered at once, bad requests with specific answers, the charger command recorded
through the command service, the result sent to response_url once the charger's outcome is final."""

from __future__ import annotations

from apps.ocpp_gateway.models import OcppCommand
from apps.roaming import pushes
from apps.roaming.commands import remote_command_finished
from apps.roaming.models import RemoteCommand
from tests.roaming import ocpi_spec


def _start(site, emsp, **extra):
    return {
        "response_url": f"{emsp.base}/results/r1",
        "token": emsp.token("04CAFE0001"),
        "location_id": str(site.location.pk),
        "evse_uid": str(site.evse.pk),
        **extra,
    }


def test_a_start_for_an_offline_charger_is_rejected_at_once(registered, site, emsp, ocpi):
    status, body, _ = ocpi(
        "POST", "/ocpi/2.2.1/commands/START_SESSION", token=emsp.cpo_token, body=_start(site, emsp)
    )
    assert status == 200
    answer = ocpi_spec.validate(body["data"], "CommandResponse")
    assert answer["result"] == "REJECTED" and answer["message"][0]["text"] == "the charger is offline"
    command = OcppCommand.objects.get()
    assert (command.action, command.payload, command.source) == (
        "RemoteStartTransaction",
        {"connectorId": 1, "idTag": "04CAFE0001"},
        "ocpi",
    )
    remote = RemoteCommand.objects.get()
    assert (remote.command_id, remote.result) == (command.pk, "FAILED")
    assert remote.token.uid == "04CAFE0001"


def test_bad_commands_get_specific_answers(registered, site, emsp, ocpi):
    path = "/ocpi/2.2.1/commands/"
    status, body, _ = ocpi(
        "POST", path + "START_SESSION", token=emsp.cpo_token, body=_start(site, emsp, location_id="999")
    )
    assert (status, body["status_code"]) == (404, 2003)
    status, body, _ = ocpi("POST", path + "START_SESSION", token=emsp.cpo_token, body={"token": {}})
    assert (status, body["status_code"]) == (400, 2001) and "response_url" in body["status_message"]
    status, body, _ = ocpi(
        "POST",
        path + "STOP_SESSION",
        token=emsp.cpo_token,
        body={"response_url": f"{emsp.base}/results/r2", "session_id": "42"},
    )
    assert body["data"]["result"] == "UNKNOWN_SESSION"
    status, body, _ = ocpi(
        "POST",
        path + "RESERVE_NOW",
        token=emsp.cpo_token,
        body={"response_url": f"{emsp.base}/results/r3"},
    )
    assert body["data"]["result"] == "NOT_SUPPORTED"
    status, body, _ = ocpi(
        "POST", path + "FLY_TO_MOON", token=emsp.cpo_token, body={"response_url": "http://x/y"}
    )
    assert (status, body["status_code"]) == (404, 2001)
    assert not OcppCommand.objects.exists()


def test_the_result_follows_the_chargers_outcome_once(registered, site, emsp):
    remote = RemoteCommand.objects.create(
        party=registered,
        command="UNLOCK_CONNECTOR",
        request={},
        response_url=f"{emsp.base}/results/u1",
        charge_point=site.charge_point,
        evse_id=1,
        command_id=777,
    )
    assert remote_command_finished(command_id=777, accepted=False, answered=False, status="timeout")
    assert not remote_command_finished(command_id=777, accepted=True, answered=True, status="answered")
    assert not remote_command_finished(command_id=778, accepted=True, answered=True, status="answered")
    assert pushes.pushes_send_due() == 1
    assert emsp.results["u1"] == {"result": "TIMEOUT", "message": [{"language": "en", "text": "timeout"}]}
    remote.refresh_from_db()
    assert remote.result == "TIMEOUT" and remote.finished_at is not None


def test_unlock_goes_to_the_charger_as_unlock_connector(registered, site, emsp, ocpi):
    body = {
        "response_url": f"{emsp.base}/results/u2",
        "location_id": str(site.location.pk),
        "evse_uid": str(site.evse.pk),
        "connector_id": "1",
    }
    _status, answer, _ = ocpi(
        "POST",
        "/ocpi/2.2.1/commands/UNLOCK_CONNECTOR",
        token=emsp.cpo_token,
        body=ocpi_spec.validate(body, "UnlockConnector"),
    )
    assert (
        answer["data"]["result"] == "REJECTED"
    )  # offline here; the command went through the command service
    command = OcppCommand.objects.get()
    assert (command.action, command.payload, command.source) == (
        "UnlockConnector",
        {"connectorId": 1},
        "ocpi",
    )


def test_stopping_a_session_that_ended_is_rejected(registered, site, emsp, ocpi):
    from tests.factories import ChargingSessionFactory, RoamingSessionFactory

    roaming = RoamingSessionFactory(
        party=registered,
        session=ChargingSessionFactory(charge_point=site.charge_point, status="COMPLETED"),
        status="COMPLETED",
    )
    body = {"response_url": f"{emsp.base}/results/s1", "session_id": roaming.ocpi_id}
    _status, answer, _ = ocpi(
        "POST",
        "/ocpi/2.2.1/commands/STOP_SESSION",
        token=emsp.cpo_token,
        body=ocpi_spec.validate(body, "StopSession"),
    )
    assert answer["data"] == {
        "result": "REJECTED",
        "timeout": 60,
        "message": [{"language": "en", "text": "the session has ended"}],
    }
    assert not OcppCommand.objects.exists()
