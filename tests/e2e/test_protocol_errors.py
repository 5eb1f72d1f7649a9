"""The OCPP 1.6 protocol error table, row by row, over a real server with raw OCPP-J frames; the
"failure inside the product" row in-process, where a service can be made to fail."""

import json

import pytest
import pytest_asyncio
from channels.testing import WebsocketCommunicator

from apps.ocpp_gateway.models import OcppFailedMessage
from tests.e2e.conftest import KEY, RawCharger, assert_call_error, basic_auth, orm
from tests.factories import ChargePointFactory, OrganisationFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

BOOT = {"chargePointVendor": "ACME", "chargePointModel": "AC22"}
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
START = {"connectorId": 1, "idTag": "04A1B2C3", "meterStart": 1000, "timestamp": "2025-01-15T10:00:00Z"}


@pytest_asyncio.fixture
async def charger(server):
    await orm(
        lambda: ChargePointFactory(identity="ERR-1", organisation=OrganisationFactory(slug="err-org"))
    )()
    charger = await RawCharger.open(server, "ERR-1")
    await charger.boot()
    yield charger
    await charger.close()


ROWS = [
    pytest.param("FooBarBaz", {}, "NotImplemented", id="unknown-action"),
    pytest.param("Reset", {"type": "Hard"}, "NotSupported", id="csms-action-sent-by-charger"),
    pytest.param("RemoteStartTransaction", {"idTag": "X"}, "NotSupported", id="csms-action-remote-start"),
    pytest.param(
        "BootNotification",
        {"chargePointVendor": "ACME"},
        "OccurenceConstraintViolation",
        id="required-field-missing",
    ),
    pytest.param(
        "StartTransaction",
        {k: v for k, v in START.items() if k != "meterStart"},
        "OccurenceConstraintViolation",
        id="required-field-missing-start",
    ),
    pytest.param(
        "StatusNotification", {**STATUS, "connectorId": "1"}, "TypeConstraintViolation", id="wrong-json-type"
    ),
    pytest.param(
        "StartTransaction",
        {**START, "meterStart": 1000.5},
        "TypeConstraintViolation",
        id="wrong-json-type-number",
    ),
    pytest.param(
        "StatusNotification",
        {**STATUS, "status": "Sleeping"},
        "PropertyConstraintViolation",
        id="enum-violation",
    ),
    pytest.param(
        "BootNotification",
        {**BOOT, "chargePointVendor": "V" * 21},
        "PropertyConstraintViolation",
        id="length-violation",
    ),
    pytest.param(
        "StartTransaction",
        {**START, "timestamp": "yesterday at noon"},
        "PropertyConstraintViolation",
        id="format-violation",
    ),
    pytest.param("Heartbeat", [], "FormationViolation", id="payload-not-an-object"),
    pytest.param("Heartbeat", "ping", "FormationViolation", id="payload-a-string"),
    pytest.param("Heartbeat", {"extra": 1}, "FormationViolation", id="extra-property"),
    pytest.param(
        "BootNotification", {**BOOT, "colour": "red"}, "FormationViolation", id="extra-property-boot"
    ),
]


@pytest.mark.parametrize(("action", "payload", "code"), ROWS)
async def test_error_table_row(charger, action, payload, code):
    answer = await charger.call(action, payload, unique_id="row-1")
    assert_call_error(answer, "row-1", code)
    # The connection is kept: the next request is answered normally.
    assert "currentTime" in await charger.result("Heartbeat", {})


async def test_malformed_call_structure_is_a_formation_violation(charger):
    await charger.send(json.dumps([2, "short-1", "Heartbeat"]))
    assert_call_error(await charger.recv(), "short-1", "FormationViolation")


@pytest.mark.parametrize(
    "frame",
    [
        "this is not json",
        '{"not": "an array"}',
        "[2]",
        '[2, 17, "Heartbeat", {}]',
        json.dumps([7, "unknown-type-1", "Heartbeat", {}]),
        json.dumps([9, "unknown-type-2"]),
    ],
    ids=["not-json", "object", "no-id", "numeric-id", "type-7", "type-9"],
)
async def test_unparsable_frame_or_unknown_type_gets_no_answer_and_the_connection_stays(charger, frame):
    await charger.send(frame)
    # A connection handles its frames in order: an answer to the bad frame would arrive before the
    # Heartbeat's, and call() checks that the next frame answers the Heartbeat.
    assert "currentTime" in await charger.result("Heartbeat", {})


async def test_valid_requests_get_schema_valid_answers(charger):
    # The raw client checks every CALLRESULT against the library's schema for its action.
    await charger.result("StatusNotification", {**STATUS, "connectorId": 0})
    await charger.result("Authorize", {"idTag": "UNKNOWN-TAG"})
    await charger.result("DataTransfer", {"vendorId": "com.example", "messageId": "x", "data": "y"})
    await charger.result("FirmwareStatusNotification", {"status": "Idle"})
    await charger.result("DiagnosticsStatusNotification", {"status": "Idle"})


# --- failure inside the product (in-process: a service made to fail) ------------------------------------
async def test_failure_inside_the_product_is_an_internal_error_and_the_message_is_kept(
    transactional_db, monkeypatch
):
    from config.asgi import application

    charge_point = await orm(lambda: ChargePointFactory(identity="ERR-2"))()

    def broken_session_start(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("apps.ocpp_gateway.v16.handlers.session_start", broken_session_start)
    communicator = WebsocketCommunicator(
        application,
        "/ocpp/ERR-2",
        subprotocols=["ocpp1.6"],
        headers=[(b"authorization", basic_auth("ERR-2", KEY).encode())],
    )
    connected, subprotocol = await communicator.connect(timeout=10)
    assert connected and subprotocol == "ocpp1.6"
    try:
        await communicator.send_to(text_data=json.dumps([2, "start-1", "StartTransaction", START]))
        assert_call_error(json.loads(await communicator.receive_from(timeout=10)), "start-1", "InternalError")

        kept = await orm(lambda: list(OcppFailedMessage.objects.filter(charge_point=charge_point)))()
        assert len(kept) == 1
        assert (kept[0].action, kept[0].unique_id, kept[0].protocol) == (
            "StartTransaction",
            "start-1",
            "ocpp1.6",
        )
        assert kept[0].payload == START
        assert "database on fire" in kept[0].error

        await communicator.send_to(text_data=json.dumps([2, "hb-1", "Heartbeat", {}]))
        answer = json.loads(await communicator.receive_from(timeout=10))
        assert answer[:2] == [3, "hb-1"]
    finally:
        await communicator.disconnect()


def _deep_call(unique_id: str, action: str, levels: int) -> str:
    return f'[2, "{unique_id}", "{action}", {{"vendorId": "V", "data": ' + "[" * levels + "]" * levels + "}]"


@pytest.mark.parametrize("levels", [100, 200_000])
async def test_deeply_nested_json_is_a_formation_violation_and_the_connection_stays(charger, levels):
    await charger.send(_deep_call("deep-1", "DataTransfer", levels))
    assert_call_error(await charger.recv(), "deep-1", "FormationViolation")
    assert "currentTime" in await charger.result("Heartbeat", {})


async def test_deeply_nested_json_in_201_is_a_format_violation(server):
    """OCPP 2.0.1 part 4, table 8 names the code FormatViolation (1.6's FormationViolation, renamed)."""
    await orm(
        lambda: ChargePointFactory(
            identity="ERR-2", organisation=OrganisationFactory(slug="err-2"), ocpp_protocol="ocpp2.0.1"
        )
    )()
    charger = await RawCharger.open(server, "ERR-2", subprotocols=("ocpp2.0.1",))
    try:
        await charger.send(_deep_call("deep-2", "DataTransfer", 200_000))
        answer = await charger.recv()
        assert answer[:3] == [4, "deep-2", "FormatViolation"], answer
        await charger.send(json.dumps([2, "hb", "Heartbeat", {}]))
        answer = await charger.recv()
        assert answer[:2] == [3, "hb"] and "currentTime" in answer[2]  # the connection is still there
    finally:
        await charger.close()
