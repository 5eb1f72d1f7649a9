"""Driver sessions over the API: start (idempotent), list, read, stop, live stream, receipt, export.
The charger side is played by the charging services, as the OCPP handlers call them."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import AsyncClient, AsyncRequestFactory
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from apps.charging.choices import DriverSessionStatus
from apps.charging.metering import Sample
from apps.charging.models import DriverSession
from apps.charging.services import meter_values_record, session_start, session_stop
from apps.ocpp_gateway import presence
from apps.ocpp_gateway.models import OcppCommand
from apps.ocpp_gateway.redis_clients import sync_redis
from apps.stations.choices import ConnectorStatus, OcppProtocol
from cpo import clock
from tests.factories import ChargePointFactory, ConnectorFactory, DriverFactory, EvseFactory

S = DriverSessionStatus


@pytest.fixture(autouse=True)
def clean():
    cache.clear()
    r = sync_redis()
    for key in r.scan_iter(match="cpo:ocpp:*", count=1000):
        r.delete(key)
    yield


def online(cp) -> None:
    sync_redis().hset(
        presence.PREFIX + cp.identity,
        mapping={
            "channel": "specific.x!y",
            "epoch": 1,
            "server": "t",
            "connected_at": time.time(),
            "last_frame_at": time.time(),
        },
    )


@pytest.fixture
def cp(db):
    charge_point = ChargePointFactory(ocpp_protocol=OcppProtocol.OCPP16)
    for n in (1, 2):
        ConnectorFactory(
            evse=EvseFactory(charge_point=charge_point, evse_id=n), status=ConnectorStatus.AVAILABLE
        )
    online(charge_point)
    return charge_point


@pytest.fixture
def driver(db):
    return DriverFactory(email="driver@example.com")


@pytest.fixture
def api(driver):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(driver)}")
    return client


def start(api, cp, connector=1, key="k-1"):
    return api.post(
        "/api/v1/sessions",
        {"charge_point": cp.pk, "connector": connector},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def charger_starts(cp, session_id, meter_start=10_000, at=None):
    session = DriverSession.objects.get(pk=session_id)
    at = at or clock.now()
    return session_start(
        charge_point_id=cp.pk,
        evse_id=session.evse_id,
        id_tag=session.id_tag,
        meter_start_wh=meter_start,
        started_at_charger=at,
        received_at=at,
        protocol=OcppProtocol.OCPP16,
    ).session


def meter(cp, charging, wh, watts=None, at=None):
    at = at or clock.now()
    samples = [Sample(sampled_at=at, measurand="Energy.Active.Import.Register", value=Decimal(wh), unit="Wh")]
    if watts is not None:
        samples.append(Sample(sampled_at=at, measurand="Power.Active.Import", value=Decimal(watts), unit="W"))
    meter_values_record(
        charge_point_id=cp.pk,
        evse_id=charging.evse_id,
        transaction_ref=charging.transaction_ref,
        samples=samples,
        received_at=at,
    )


class TestStart:
    def test_start_and_replay(self, api, cp):
        first = start(api, cp)
        assert first.status_code == 201, first.content
        body = first.json()
        assert body["status"] == "STARTING" and body["connector"] == 1 and body["charge_point"]["id"] == cp.pk
        assert [t["to_status"] for t in body["transitions"]] == ["INITIATED", "AUTHORISING", "STARTING"]
        again = start(api, cp)
        assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == body["id"]
        assert DriverSession.objects.count() == 1 and OcppCommand.objects.count() == 1

    def test_offline_charger_is_409_and_replays_the_same(self, api, cp):
        sync_redis().delete(presence.PREFIX + cp.identity)
        response = start(api, cp)
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "charger_offline" and body["session"]["status"] == "FAILED"
        assert body["session"]["failure_reason"] == "charger_offline"
        again = start(api, cp)
        assert again.status_code == 409 and again.json()["session"]["id"] == body["session"]["id"]

    @pytest.mark.parametrize(
        "payload,field",
        [
            ({"charge_point": "x", "connector": 1}, "charge_point"),
            ({"charge_point": 1}, "connector"),
            ({"charge_point": 1, "connector": 0}, "connector"),
        ],
    )
    def test_bad_input(self, api, cp, payload, field):
        response = api.post("/api/v1/sessions", payload, format="json", HTTP_IDEMPOTENCY_KEY="k")
        assert response.status_code == 400 and field in response.json()["fields"]
        assert not DriverSession.objects.exists()

    def test_errors_with_codes(self, api, cp):
        response = api.post("/api/v1/sessions", {"charge_point": cp.pk, "connector": 1}, format="json")
        assert (response.status_code, response.json()["code"]) == (400, "idempotency_key_required")
        response = api.post(
            "/api/v1/sessions",
            {"charge_point": 999999, "connector": 1},
            format="json",
            HTTP_IDEMPOTENCY_KEY="k",
        )
        assert (response.status_code, response.json()["code"]) == (404, "charger_not_found")
        response = start(api, cp, connector=7)
        assert (response.status_code, response.json()["code"]) == (404, "connector_not_found")
        start(api, cp, key="one")
        response = start(api, cp, connector=2, key="one")
        assert (response.status_code, response.json()["code"]) == (409, "idempotency_key_reused")
        response = start(api, cp, connector=1, key="two")
        assert (response.status_code, response.json()["code"]) == (409, "connector_occupied")

    def test_start_is_rate_limited_per_user(self, api, cp):
        from cpo.api import _ScopedRateThrottle

        saved = _ScopedRateThrottle.THROTTLE_RATES
        _ScopedRateThrottle.THROTTLE_RATES = {**saved, "start-user": "2/min"}
        try:
            start(api, cp, key="a")
            start(api, cp, connector=2, key="b")
            response = start(api, cp, key="c")
            assert (response.status_code, response.json()["code"]) == (429, "throttled")
            assert api.get("/api/v1/sessions").status_code == 200  # reading is not limited
        finally:
            _ScopedRateThrottle.THROTTLE_RATES = saved


class TestReadAndStop:
    def test_live_figures_then_stop_then_final(self, api, cp):
        session_id = start(api, cp).json()["id"]
        t0 = clock.now()
        charging = charger_starts(cp, session_id, meter_start=10_000, at=t0)
        meter(cp, charging, 13_500, watts=7400)
        body = api.get(f"/api/v1/sessions/{session_id}").json()
        assert body["status"] == "ACTIVE" and body["energy_wh"] == 3500 and body["power_w"] == 7400
        assert body["started_at"] is not None and body["stopped_at"] is None
        stopping = api.post(f"/api/v1/sessions/{session_id}/stop")
        assert stopping.status_code == 202 and stopping.json()["status"] == "STOPPING"
        assert api.delete(f"/api/v1/sessions/{session_id}").status_code == 202  # same thing, harmless
        assert OcppCommand.objects.filter(action="RemoteStopTransaction").count() == 1
        session_stop(
            charge_point_id=cp.pk,
            transaction_ref=charging.transaction_ref,
            meter_stop_wh=15_000,
            stopped_at_charger=clock.now(),
            received_at=clock.now(),
            reason="Remote",
        )
        done = api.post(f"/api/v1/sessions/{session_id}/stop")
        assert done.status_code == 200
        assert done.json()["status"] == "COMPLETED" and done.json()["energy_wh"] == 5000
        assert done.json()["final"] is True and done.json()["power_w"] is None

    def test_list_is_mine_newest_first_with_a_cursor(self, api, cp, driver):
        other = DriverFactory()
        other_api = APIClient()
        other_api.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(other)}")
        start(other_api, cp, connector=2, key="theirs")
        sync_redis().delete(presence.PREFIX + cp.identity)
        ids = [start(api, cp, key=f"k{n}").json()["session"]["id"] for n in range(3)]  # offline: FAILED
        page = api.get("/api/v1/sessions", {"page_size": 2}).json()
        assert [s["id"] for s in page["results"]] == [ids[2], ids[1]]
        rest = api.get(page["next"]).json()
        assert [s["id"] for s in rest["results"]] == [ids[0]] and rest["next"] is None

    def test_another_drivers_session_is_404_everywhere(self, api, cp):
        theirs = DriverSession.objects.create(
            driver=DriverFactory(), organisation=cp.organisation, charge_point=cp, evse_id=2, status=S.ACTIVE
        )
        for method, url in [
            ("get", f"/api/v1/sessions/{theirs.pk}"),
            ("post", f"/api/v1/sessions/{theirs.pk}/stop"),
            ("delete", f"/api/v1/sessions/{theirs.pk}"),
            ("get", f"/api/v1/sessions/{theirs.pk}/receipt"),
        ]:
            response = getattr(api, method)(url)
            assert (response.status_code, response.json()["code"]) == (404, "session_not_found"), url
        theirs.refresh_from_db()
        assert theirs.status == S.ACTIVE and not OcppCommand.objects.exists()

    def test_stop_before_the_charger_started_is_409(self, api, cp):
        session_id = start(api, cp).json()["id"]
        response = api.post(f"/api/v1/sessions/{session_id}/stop")
        assert (response.status_code, response.json()["code"]) == (409, "session_starting")

    def test_a_charge_started_with_the_card_shows_and_stops_from_the_app(self, api, cp, driver):
        from tests.factories import IdTokenFactory

        card = IdTokenFactory(owner=driver)
        at = clock.now()
        session_start(
            charge_point_id=cp.pk,
            evse_id=2,
            id_tag=card.uid,
            meter_start_wh=0,
            started_at_charger=at,
            received_at=at,
            protocol=OcppProtocol.OCPP16,
        )
        listed = api.get("/api/v1/sessions").json()["results"]
        assert [(s["source"], s["status"], s["connector"]) for s in listed] == [("charger", "ACTIVE", 2)]
        assert api.post(f"/api/v1/sessions/{listed[0]['id']}/stop").status_code == 202

    def test_receipt_not_ready_while_running(self, api, cp):
        session_id = start(api, cp).json()["id"]
        response = api.get(f"/api/v1/sessions/{session_id}/receipt")
        assert (response.status_code, response.json()["code"]) == (409, "receipt_not_ready")
        assert api.get(f"/api/v1/sessions/{session_id}/receipt", {"format": "doc"}).status_code in (400, 409)


class TestAccountRules:
    def test_export_has_my_sessions_and_tokens(self, api, cp, driver):
        session_id = start(api, cp).json()["id"]
        response = api.get("/api/v1/me/export")
        assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
        data = response.json()
        assert data["account"]["email"] == "driver@example.com"
        assert [s["id"] for s in data["sessions"]] == [session_id]
        assert [t["to"] for t in data["sessions"][0]["transitions"]] == [
            "INITIATED",
            "AUTHORISING",
            "STARTING",
        ]
        assert [t["type"] for t in data["tokens"]] == ["Central"]

    def test_no_deletion_while_charging_and_history_kept_after(self, api, cp, driver):
        session_id = start(api, cp).json()["id"]
        response = api.delete("/api/v1/me")
        assert (response.status_code, response.json()["code"]) == (409, "session_active")
        driver.refresh_from_db()
        assert driver.is_active
        DriverSession.objects.filter(pk=session_id).update(status=S.FAILED)
        assert api.delete("/api/v1/me").status_code == 204
        assert DriverSession.objects.filter(pk=session_id, driver=driver).exists()


# --- live stream ----------------------------------------------------------------------------------------


async def _events(response, count: int, timeout: float = 10) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    buffer = b""
    iterator = response.streaming_content.__aiter__()
    async with asyncio.timeout(timeout):
        while len(events) < count:
            try:
                buffer += await iterator.__anext__()
            except StopAsyncIteration:
                break
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                lines = dict(
                    line.split(": ", 1) for line in block.decode().splitlines() if not line.startswith(":")
                )
                if "event" in lines:
                    events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_live_stream_follows_the_session_to_its_end():
    cp = await sync_to_async(lambda: ChargePointFactory(ocpp_protocol=OcppProtocol.OCPP16))()
    await sync_to_async(
        lambda: ConnectorFactory(
            evse=EvseFactory(charge_point=cp, evse_id=1), status=ConnectorStatus.AVAILABLE
        )
    )()
    online(cp)
    driver = await sync_to_async(DriverFactory)()
    token = str(AccessToken.for_user(driver))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    session_id = (await sync_to_async(start)(api, cp)).json()["id"]
    response = await AsyncClient().get(
        f"/api/v1/sessions/{session_id}/live", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream", response.content
    first = await _events(response, 1)
    assert first[0][0] == "session" and first[0][1]["status"] == "STARTING"
    charging = await sync_to_async(charger_starts)(cp, session_id, meter_start=0)
    active = await _events(response, 1)
    assert active[0][1]["status"] == "ACTIVE"
    await sync_to_async(meter)(cp, charging, 1200, watts=11000)
    metered = await _events(response, 1)
    assert (metered[0][1]["energy_wh"], metered[0][1]["power_w"]) == (1200, 11000)
    await sync_to_async(session_stop)(
        charge_point_id=cp.pk,
        transaction_ref=charging.transaction_ref,
        meter_stop_wh=2000,
        stopped_at_charger=clock.now(),
        received_at=clock.now(),
    )
    last = await _events(response, 2)
    assert [e[0] for e in last] == ["session", "end"]
    assert last[0][1]["status"] == "COMPLETED" and last[0][1]["energy_wh"] == 2000


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_live_stream_needs_my_token_and_my_session():
    cp = await sync_to_async(ChargePointFactory)()
    theirs = await sync_to_async(
        lambda: DriverSession.objects.create(
            driver=DriverFactory(), organisation=cp.organisation, charge_point=cp, evse_id=1, status=S.ACTIVE
        )
    )()
    response = await AsyncClient().get(f"/api/v1/sessions/{theirs.pk}/live")
    assert response.status_code == 401 and json.loads(response.content)["code"] == "not_authenticated"
    me = await sync_to_async(DriverFactory)()
    response = await AsyncClient().get(
        f"/api/v1/sessions/{theirs.pk}/live", headers={"Authorization": f"Bearer {AccessToken.for_user(me)}"}
    )
    assert response.status_code == 404 and json.loads(response.content)["code"] == "session_not_found"
    bad = await AsyncClient().get(
        f"/api/v1/sessions/{theirs.pk}/live", headers={"Authorization": "Bearer nonsense"}
    )
    assert bad.status_code == 401


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_live_streams_per_process_are_capped_with_429(settings):
    settings.CPO_DRIVER_LIVE_MAX_PER_PROCESS = 1
    cp = await sync_to_async(ChargePointFactory)()
    sessions = await sync_to_async(
        lambda: [
            DriverSession.objects.create(
                driver=DriverFactory(),
                organisation=cp.organisation,
                charge_point=cp,
                evse_id=n,
                status=S.ACTIVE,
            )
            for n in (1, 2)
        ]
    )()
    tokens = [str(await sync_to_async(AccessToken.for_user)(s.driver)) for s in sessions]

    def get(n):
        return AsyncClient().get(
            f"/api/v1/sessions/{sessions[n].pk}/live", headers={"Authorization": f"Bearer {tokens[n]}"}
        )

    first = await get(0)
    assert first.status_code == 200
    refused = await get(1)
    assert refused.status_code == 429
    body = json.loads(refused.content)
    assert body["code"] == "too_many_streams" and body["fields"] == {} and body["detail"]
    await sync_to_async(first.close)()  # a stream that never started gives its place back when closed
    second = await get(1)
    assert second.status_code == 200
    assert (await _events(second, 1))[0][0] == "session"
    await second.streaming_content.aclose()  # a stream that ran gives it back when it ends
    await sync_to_async(second.close)()
    third = await get(0)
    assert third.status_code == 200
    await sync_to_async(third.close)()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_live_response_dropped_unsent_and_unclosed_gives_its_process_slot_back(settings):
    """A request cancelled after the view returned but before the response was sent: Django neither
    closes the response nor starts the stream. Its process slot comes back when the response goes."""
    from apps.charging.api import views as live_views

    settings.CPO_DRIVER_LIVE_MAX_PER_PROCESS = 1
    cp = await sync_to_async(ChargePointFactory)()
    sessions = await sync_to_async(
        lambda: [
            DriverSession.objects.create(
                driver=DriverFactory(),
                organisation=cp.organisation,
                charge_point=cp,
                evse_id=n,
                status=S.ACTIVE,
            )
            for n in (1, 2)
        ]
    )()
    tokens = [str(await sync_to_async(AccessToken.for_user)(s.driver)) for s in sessions]

    def get(n):
        return AsyncClient().get(
            f"/api/v1/sessions/{sessions[n].pk}/live", headers={"Authorization": f"Bearer {tokens[n]}"}
        )

    before = live_views._open_streams
    # The view called as the handler calls it; the response then goes without being sent or closed.
    request = AsyncRequestFactory().get(
        f"/api/v1/sessions/{sessions[0].pk}/live", headers={"Authorization": f"Bearer {tokens[0]}"}
    )
    dropped = await live_views.session_live(request, sessions[0].pk)
    assert dropped.status_code == 200 and live_views._open_streams == before + 1
    del dropped
    gc.collect()
    assert live_views._open_streams == before
    other = await get(1)  # the process has room again
    assert other.status_code == 200
    await sync_to_async(other.close)()
    assert live_views._open_streams == before


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_changes_are_published_with_the_session_body_while_a_stream_watches():
    from channels.layers import get_channel_layer

    from apps.charging import live as driver_live
    from cpo.live import layer_sender

    cp = await sync_to_async(lambda: ChargePointFactory(ocpp_protocol=OcppProtocol.OCPP16))()
    await sync_to_async(
        lambda: ConnectorFactory(
            evse=EvseFactory(charge_point=cp, evse_id=1), status=ConnectorStatus.AVAILABLE
        )
    )()
    online(cp)
    driver = await sync_to_async(DriverFactory)()
    token = str(AccessToken.for_user(driver))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    session_id = (await sync_to_async(start)(api, cp)).json()["id"]

    def publish_counting_queries() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            driver_live.session_publish(session_id)
        return len(queries)

    assert await sync_to_async(publish_counting_queries)() == 0  # nobody watches: nothing read, nothing sent
    response = await AsyncClient().get(
        f"/api/v1/sessions/{session_id}/live", headers={"Authorization": f"Bearer {token}"}
    )
    assert (await _events(response, 1))[0][1]["status"] == "STARTING"
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(driver_live.group_name(session_id), channel)
    # the charger starts: the message carries what the stream shows, so no stream reads the database for it
    await sync_to_async(charger_starts)(cp, session_id, meter_start=0)
    message = await asyncio.wait_for(layer.receive(channel), timeout=10)
    assert message["type"] == "session.update"
    assert (message["session"]["id"], message["session"]["status"], message["session"]["transitions"]) == (
        session_id,
        "ACTIVE",
        [],
    )
    assert (await _events(response, 1))[0][1] == message["session"]
    # a message without the body (as a process of the previous release sends it): the stream re-reads
    await sync_to_async(DriverSession.objects.filter(pk=session_id).update)(status=S.STOPPING)
    await sync_to_async(layer_sender.group_send)(
        driver_live.group_name(session_id), {"type": "session.update"}
    )
    assert (await _events(response, 1))[0][1]["status"] == "STOPPING"
    await layer.group_discard(driver_live.group_name(session_id), channel)
    await sync_to_async(response.close)()


class TestReceipt:
    def test_receipt_of_a_priced_session(self, api, cp):
        from apps.tariffs.services import cdr_issue
        from tests.factories import TariffAssignmentFactory, TariffElementFactory, TariffFactory

        tariff = TariffFactory(organisation=cp.organisation)
        TariffElementFactory(
            tariff=tariff,
            energy_price=Decimal("0.30"),
            flat_price=Decimal("1.00"),
            energy_vat=Decimal("19"),
            flat_vat=Decimal("19"),
        )
        TariffAssignmentFactory(tariff=tariff)
        session_id = start(api, cp).json()["id"]
        charging = charger_starts(cp, session_id, meter_start=100_000)
        meter(cp, charging, 110_000)
        running = api.get(f"/api/v1/sessions/{session_id}").json()
        # so far: 1.00 + 10 kWh * 0.30 = 4.00 net, 4.76 gross; not final yet
        assert running["cost"] == {"currency": "EUR", "net": "4.00", "gross": "4.76", "final": False}
        session_stop(
            charge_point_id=cp.pk,
            transaction_ref=charging.transaction_ref,
            meter_stop_wh=131_400,
            stopped_at_charger=clock.now(),
            received_at=clock.now(),
            reason="Local",
        )
        cdr_issue(session_id=charging.pk)
        # 1.00 + 31.4 kWh * 0.30 = 10.42 net; VAT 19 % = 1.98; 12.40 gross
        final = api.get(f"/api/v1/sessions/{session_id}").json()
        assert final["cost"] == {"currency": "EUR", "net": "10.42", "gross": "12.40", "final": True}
        html = api.get(f"/api/v1/sessions/{session_id}/receipt")
        assert html.status_code == 200 and html["Content-Type"].startswith("text/html")
        text = html.content.decode()
        assert "31.4 kWh" in text and '<span class="gross">12.40</span> EUR' in text and "9.42" in text
        pdf = api.get(f"/api/v1/sessions/{session_id}/receipt", {"format": "pdf"})
        assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        by_accept = api.get(f"/api/v1/sessions/{session_id}/receipt", HTTP_ACCEPT="application/pdf")
        assert by_accept.content.startswith(b"%PDF")
        bad = api.get(f"/api/v1/sessions/{session_id}/receipt", {"format": "doc"})
        assert (bad.status_code, bad.json()["code"]) == (400, "validation_failed")
        cdr = cdr_issue(session_id=charging.pk)
        number = f"{cp.organisation.invoice_prefix}-{cdr.issued_at.year}-000001"
        assert cdr.number == number and f"Receipt {number}" in text
        assert f"-{cdr.pk:08d}" not in text  # never the global record id

    def test_receipt_of_a_session_without_tariff_says_it_is_free(self, api, cp):
        from apps.tariffs.services import cdr_issue

        session_id = start(api, cp).json()["id"]
        charging = charger_starts(cp, session_id, meter_start=100_000)
        session_stop(
            charge_point_id=cp.pk,
            transaction_ref=charging.transaction_ref,
            meter_stop_wh=112_500,
            stopped_at_charger=clock.now(),
            received_at=clock.now(),
            reason="Local",
        )
        cdr_issue(session_id=charging.pk)

        final = api.get(f"/api/v1/sessions/{session_id}").json()
        assert final["cost"] == {"currency": "EUR", "net": "0.00", "gross": "0.00", "final": True}
        html = api.get(f"/api/v1/sessions/{session_id}/receipt")
        assert html.status_code == 200, html.content
        text = html.content.decode()
        assert "Free: no tariff in force at this charge point." in text
        assert "12.5 kWh" in text and '<span class="gross">0.00</span> EUR' in text
        pdf = api.get(f"/api/v1/sessions/{session_id}/receipt", {"format": "pdf"})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_stop_is_rate_limited_per_user(api, cp):
    from cpo.api import _ScopedRateThrottle

    session_id = start(api, cp).json()["id"]
    charger_starts(cp, session_id)
    saved = _ScopedRateThrottle.THROTTLE_RATES
    _ScopedRateThrottle.THROTTLE_RATES = {**saved, "stop-user": "2/min"}
    try:
        assert api.post(f"/api/v1/sessions/{session_id}/stop").status_code == 202
        assert api.delete(f"/api/v1/sessions/{session_id}").status_code == 202
        response = api.post(f"/api/v1/sessions/{session_id}/stop")
        assert (response.status_code, response.json()["code"]) == (429, "throttled")
        assert api.get(f"/api/v1/sessions/{session_id}").status_code == 200
    finally:
        _ScopedRateThrottle.THROTTLE_RATES = saved
