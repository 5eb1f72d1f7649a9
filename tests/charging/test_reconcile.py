"""Reconciliation of sessions whose stop was lost (apps.charging.reconcile), in-process: what counts as a
sign of life and as evidence, when the charger is asked and when the session is closed, at which reading
and why; the charger's answers; the card accepted again; a late stop linked without a second CDR; the
operator's force close and review, audited. The same flows over real WebSockets with simulated chargers:
tests/e2e/test_reconcile.py."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse

from apps.accounts.choices import Role
from apps.accounts.models import AuditRecord, IdToken
from apps.charging import charts, live, reconcile, tasks
from apps.charging.choices import (
    AuthorizationStatus,
    ClosedBy,
    DriverSessionStatus,
    ProbeOutcome,
    ReviewReason,
    SessionStatus,
)
from apps.charging.intents import IntentSent, ProbeAnswer, charger_control
from apps.charging.metering import ENERGY_REGISTER, Sample
from apps.charging.models import ChargingSession, DriverSession, OrphanStop
from apps.charging.services import (
    idtoken_authorize,
    meter_values_record,
    session_start,
    session_stop,
    transaction_event_record,
)
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.intents import probe_answer, probe_command_finished
from apps.ocpp_gateway.models import OcppCommand
from apps.stations.choices import OcppProtocol
from apps.stations.models import ChargePoint
from apps.stations.services import connector_status_record
from apps.tariffs import services as tariffs_services
from apps.tariffs.models import ChargeDetailRecord
from cpo import clock
from tests.factories import (
    ChargePointFactory,
    ConnectorFactory,
    DriverFactory,
    EvseFactory,
    IdTokenFactory,
    LocationFactory,
    OcppCommandFactory,
    OrganisationFactory,
    StaffUserFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)

pytestmark = pytest.mark.django_db

M = timedelta(minutes=1)
TAG = "04AA11BB22CC"


@pytest.fixture(autouse=True)
def limits(settings):
    settings.CPO_SESSION_IDLE_MINUTES = 60
    settings.CPO_SESSION_PROBE_WAIT_MINUTES = 5
    settings.CPO_SESSION_OFFLINE_CLOSE_MINUTES = 1440


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    from apps.tariffs import tasks

    monkeypatch.setattr(tasks.cdr_issue_task, "delay", lambda session_id: None)


@pytest.fixture
def org():
    return OrganisationFactory(slug="recon-org", country="DE")


@pytest.fixture
def cp(org):
    charge_point = ChargePointFactory(
        organisation=org,
        identity="CP-RECON",
        ocpp_protocol=OcppProtocol.OCPP16,
        location=LocationFactory(organisation=org, country="DE"),
    )
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1))
    IdTokenFactory(uid=TAG)
    return charge_point


def _start(cp, *, protocol=OcppProtocol.OCPP16, at=None, transaction_ref=None) -> ChargingSession:
    at = at or clock.now()
    return session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag=TAG,
        meter_start_wh=10_000,
        started_at_charger=at,
        received_at=at,
        protocol=protocol,
        transaction_ref=transaction_ref,
    ).session


def _meter(session, *, wh, at):
    """A meter reading taken at `at` (the charger's clock), received now."""
    meter_values_record(
        charge_point_id=session.charge_point_id,
        evse_id=1,
        transaction_ref=session.transaction_ref,
        samples=[Sample(sampled_at=at, measurand=ENERGY_REGISTER, unit="Wh", value=D(wh))],
        received_at=clock.now(),
    )


def _fresh(session) -> ChargingSession:
    return ChargingSession.objects.get(pk=session.pk)


def _answer(session, **kwargs) -> None:
    session = _fresh(session)
    reconcile.session_probe_finished(
        answer=ProbeAnswer(
            command_id=session.probe_command_id, charge_point_id=session.charge_point_id, **kwargs
        )
    )


def test_a_session_with_recent_signs_of_life_is_left_alone(cp):
    t0 = clock.now()
    session = _start(cp, at=t0)
    _meter(session, wh=10_500, at=t0 + 30 * M)
    assert reconcile.sessions_reconcile(now=clock.now() + 59 * M) == {"open": 1, "asked": 0, "closed": 0}
    assert _fresh(session).probe_sent_at is None
    assert not OcppCommand.objects.exists()


def test_silence_asks_the_charger_and_an_unanswered_question_waits_for_the_long_timeout(cp):
    t0 = clock.now()
    session = _start(cp, at=t0)
    _meter(session, wh=12_345, at=t0 + 10 * M)
    assert idtoken_authorize(uid=TAG, charge_point=cp).status == AuthorizationStatus.CONCURRENT_TX

    assert reconcile.sessions_reconcile(now=t0 + 71 * M) == {"open": 0, "asked": 1, "closed": 0}
    # 1.6: the connector's MeterValues and StatusNotification are triggered; the charger is offline here.
    commands = list(OcppCommand.objects.order_by("pk").values_list("action", "payload", "status", "source"))
    assert commands == [
        (
            "TriggerMessage",
            {"requestedMessage": "MeterValues", "connectorId": 1},
            "charger_offline",
            "reconcile",
        ),
        (
            "TriggerMessage",
            {"requestedMessage": "StatusNotification", "connectorId": 1},
            "charger_offline",
            "reconcile",
        ),
    ]
    session = _fresh(session)
    assert (session.status, session.probe_outcome) == (SessionStatus.ACTIVE, ProbeOutcome.UNANSWERED)
    assert session.probe_command_id == OcppCommand.objects.order_by("pk").first().pk

    # Past the answer wait, but a charger that could not be asked gets the long timeout.
    assert reconcile.sessions_reconcile(now=t0 + 200 * M)["open"] == 1
    assert reconcile.sessions_reconcile(now=t0 + 10 * M + 1440 * M)["closed"] == 1
    session = _fresh(session)
    assert (session.status, session.stop_reason, session.review_reason) == (
        SessionStatus.COMPLETED,
        ClosedBy.TIMEOUT,
        ReviewReason.RECONCILED,
    )
    # Ended at the last known meter reading and its time.
    assert (session.meter_stop_wh, session.stopped_at_charger) == (12_345, t0 + 10 * M)
    assert session.energy_wh == 2_345
    record = AuditRecord.objects.get(action="chargingsession.reconcile")
    assert (record.target_id, record.source, record.detail["reason"], record.detail["meter_stop_wh"]) == (
        str(session.pk),
        "reconcile",
        "reconciled_timeout",
        12_345,
    )
    assert idtoken_authorize(uid=TAG, charge_point=cp).status == AuthorizationStatus.ACCEPTED
    # Nothing more to do: a closed session is not asked about again.
    assert reconcile.sessions_reconcile(now=t0 + 3000 * M) == {"open": 0, "asked": 0, "closed": 0}


def test_an_answered_question_without_a_meter_value_closes_after_the_wait(cp):
    t0 = clock.now()
    session = _start(cp, at=t0)
    reconcile.sessions_reconcile(now=t0 + 61 * M)
    _answer(session, answered=True)  # 1.6 TriggerMessage Accepted, and no meter value of the transaction
    assert _fresh(session).probe_outcome == ProbeOutcome.ANSWERED
    assert reconcile.sessions_reconcile(now=t0 + 67 * M)["closed"] == 1
    session = _fresh(session)
    # No meter value at all: ended at the start's reading and time.
    assert (session.stop_reason, session.meter_stop_wh, session.stopped_at) == (ClosedBy.TIMEOUT, 10_000, t0)


def test_a_meter_value_after_the_question_keeps_the_session_open(cp):
    t0 = clock.now()
    session = _start(cp, at=t0)
    reconcile.sessions_reconcile(now=t0 + 61 * M)
    _answer(session, answered=True)
    _meter(session, wh=11_000, at=clock.now())  # the triggered MeterValues of the running transaction
    assert reconcile.session_reconcile(session_id=session.pk, now=t0 + 67 * M) == "asked"  # asks again
    assert _fresh(session).status == SessionStatus.ACTIVE


def test_a_charging_status_after_the_question_keeps_the_session_open(cp):
    t0 = clock.now()
    session = _start(cp, at=t0)
    reconcile.sessions_reconcile(now=t0 + 61 * M)
    _answer(session, answered=True)
    # A charger whose triggered MeterValues lack the transactionId still says Charging when asked.
    connector_status_record(
        charge_point_id=cp.pk, evse_id=1, connector_id=1, status="Charging", received_at=clock.now()
    )
    assert reconcile.session_reconcile(session_id=session.pk, now=clock.now() + 6 * M) == "open"
    assert _fresh(session).status == SessionStatus.ACTIVE


def test_the_drivers_session_completes_and_is_published(
    cp, org, monkeypatch, django_capture_on_commit_callbacks
):
    IdToken.objects.filter(uid=TAG).update(owner=DriverFactory())
    published: list[int] = []
    monkeypatch.setattr(live, "session_publish", published.append)
    session = _start(cp)
    driver_session = DriverSession.objects.get(charging_session=session)
    with django_capture_on_commit_callbacks(execute=True):
        reconcile.session_force_close(session=session, actor=None)
    driver_session.refresh_from_db()
    assert driver_session.status == DriverSessionStatus.COMPLETED
    assert driver_session.transitions.last().detail == {"reason": "force_closed"}
    assert published == [driver_session.pk]


def test_connector_free_after_the_last_sign_of_life_is_charger_idle(cp):
    t0 = clock.now()
    session = _start(cp, at=t0)
    assert reconcile.session_reconcile(session_id=session.pk, now=clock.now()) == "open"
    connector_status_record(
        charge_point_id=cp.pk, evse_id=1, connector_id=1, status="Available", received_at=clock.now()
    )
    # No waiting for the idle time: the connector says the transaction is over; the charger is asked.
    assert reconcile.session_reconcile(session_id=session.pk, now=clock.now()) == "asked"
    _answer(session, answered=True)
    assert reconcile.session_reconcile(session_id=session.pk, now=clock.now() + 2 * M) == "open"  # the wait
    assert reconcile.session_reconcile(session_id=session.pk, now=clock.now() + 6 * M) == "closed"
    assert _fresh(session).stop_reason == ClosedBy.CHARGER_IDLE


def test_a_status_from_before_the_last_sign_of_life_is_no_evidence(cp):
    t0 = clock.now()
    connector_status_record(
        charge_point_id=cp.pk, evse_id=1, connector_id=1, status="Finishing", received_at=t0
    )
    session = _start(cp, at=t0 + timedelta(seconds=1))
    assert reconcile.session_reconcile(session_id=session.pk, now=t0 + 2 * M) == "open"


def test_a_boot_after_the_last_sign_of_life_is_a_reboot(cp):
    t0 = clock.now()
    session = _start(cp, at=t0)
    ChargePoint.objects.filter(pk=cp.pk).update(last_boot_at=clock.now() + timedelta(seconds=1))
    assert reconcile.session_reconcile(session_id=session.pk, now=clock.now() + 2 * M) == "asked"
    _answer(session, answered=True)
    assert reconcile.session_reconcile(session_id=session.pk, now=clock.now() + 8 * M) == "closed"
    assert _fresh(session).stop_reason == ClosedBy.REBOOT


def test_a_201_charger_saying_the_transaction_runs_keeps_it_and_saying_it_ended_closes_it(cp):
    cp.ocpp_protocol = OcppProtocol.OCPP201
    cp.save()
    t0 = clock.now()
    running = _start(cp, protocol=OcppProtocol.OCPP201, at=t0, transaction_ref="TX-RUN")
    assert reconcile.session_reconcile(session_id=running.pk, now=t0 + 61 * M) == "asked"
    command = OcppCommand.objects.get(pk=_fresh(running).probe_command_id)
    assert (command.action, command.payload) == ("GetTransactionStatus", {"transactionId": "TX-RUN"})
    _answer(running, answered=True, ongoing=True)
    assert _fresh(running).alive_confirmed_at is not None
    assert reconcile.session_reconcile(session_id=running.pk, now=clock.now() + 6 * M) == "open"
    assert _fresh(running).status == SessionStatus.ACTIVE

    # Messages of the transaction still queued at the charger: they may hold the stop; wait for them.
    queued = _start(cp, protocol=OcppProtocol.OCPP201, at=t0, transaction_ref="TX-QUEUED")
    reconcile.session_reconcile(session_id=queued.pk, now=t0 + 61 * M)
    _answer(queued, answered=True, ongoing=False, queued=True)
    assert _fresh(queued).status == SessionStatus.ACTIVE

    ended = _start(cp, protocol=OcppProtocol.OCPP201, at=t0, transaction_ref="TX-ENDED")
    _meter(ended, wh=15_000, at=t0 + 5 * M)
    reconcile.session_reconcile(session_id=ended.pk, now=t0 + 66 * M)
    _answer(ended, answered=True, ongoing=False)  # closed at once, no waiting
    ended = _fresh(ended)
    assert (ended.status, ended.stop_reason, ended.meter_stop_wh) == (
        SessionStatus.COMPLETED,
        ClosedBy.TIMEOUT,
        15_000,
    )


def test_the_gateway_reads_the_chargers_answers():
    def command(action, status, response):
        return OcppCommand(pk=7, charge_point_id=3, action=action, status=status, response=response)

    answered = CommandStatus.ANSWERED
    assert probe_answer(command("GetTransactionStatus", answered, {"messagesInQueue": False})) == ProbeAnswer(
        command_id=7, charge_point_id=3, answered=True, ongoing=None, queued=False
    )
    got = probe_answer(
        command("GetTransactionStatus", answered, {"messagesInQueue": True, "ongoingIndicator": False})
    )
    assert (got.answered, got.ongoing, got.queued) == (True, False, True)
    assert probe_answer(command("TriggerMessage", answered, {"status": "Accepted"})).answered is True
    assert probe_answer(command("TriggerMessage", answered, {"status": "Rejected"})).answered is False
    assert probe_answer(command("TriggerMessage", CommandStatus.TIMEOUT, None)).answered is False


def test_a_trigger_message_that_is_no_question_changes_nothing(cp):
    session = _start(cp)
    reconcile.session_reconcile(session_id=session.pk, now=clock.now() + 61 * M)
    before = _fresh(session)
    other = OcppCommandFactory(charge_point=cp, action="TriggerMessage", payload={})
    probe_command_finished(command=other)
    after = _fresh(session)
    assert (after.probe_outcome, after.alive_confirmed_at) == (
        before.probe_outcome,
        before.alive_confirmed_at,
    )


def _tariff(org):
    tariff = TariffFactory(organisation=org, name="Energy only")
    TariffElementFactory(tariff=tariff, position=0, energy_price=D("0.30"), flat_price=D("1.00"))
    TariffAssignmentFactory(tariff=tariff, organisation=org)
    return tariff


def test_a_late_stop_is_linked_flagged_and_makes_no_second_cdr(cp, org):
    _tariff(org)
    t0 = clock.now()
    session = _start(cp, at=t0)
    _meter(session, wh=13_000, at=t0 + 5 * M)
    reconcile.sessions_reconcile(now=t0 + 70 * M)
    reconcile.sessions_reconcile(now=t0 + 1500 * M)
    assert _fresh(session).stop_reason == ClosedBy.TIMEOUT
    cdr = tariffs_services.cdr_issue(session_id=session.pk)
    assert cdr is not None

    raw = {"meterStop": 14_000, "transactionId": session.ocpp16_transaction_id, "reason": "Local"}
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=14_000,
        stopped_at_charger=t0 + 20 * M,
        received_at=clock.now(),
        reason="Local",
        raw=raw,
    )
    session = _fresh(session)
    # The session keeps what reconciliation closed it with; the charger's word is kept beside it.
    assert (session.meter_stop_wh, session.stop_reason, session.review_reason) == (
        13_000,
        ClosedBy.TIMEOUT,
        ReviewReason.LATE_STOP,
    )
    late = OrphanStop.objects.get()
    assert (late.session_id, late.transaction_ref, late.payload, late.resolved) == (
        session.pk,
        session.transaction_ref,
        raw,
        False,
    )
    assert tariffs_services.cdr_issue(session_id=session.pk) == cdr
    assert ChargeDetailRecord.objects.filter(session=session).count() == 1
    # The same stop repeated records nothing more.
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=14_000,
        stopped_at_charger=t0 + 20 * M,
        received_at=clock.now(),
        raw=raw,
    )
    assert OrphanStop.objects.count() == 1


def test_a_stop_repeated_for_a_session_the_charger_stopped_itself_is_no_late_stop(cp):
    session = _start(cp)
    for _ in range(2):
        session_stop(
            charge_point_id=cp.pk,
            transaction_ref=session.transaction_ref,
            meter_stop_wh=11_000,
            stopped_at_charger=clock.now(),
            received_at=clock.now(),
        )
    assert not OrphanStop.objects.exists()
    assert _fresh(session).review_reason == ReviewReason.NONE


def test_a_late_201_ended_event_is_linked(cp):
    t0 = clock.now()
    session = _start(cp, protocol=OcppProtocol.OCPP201, at=t0, transaction_ref="TX-LATE")
    reconcile.session_force_close(session=session, actor=None)
    payload = {"eventType": "Ended", "seqNo": 5, "transactionInfo": {"transactionId": "TX-LATE"}}
    transaction_event_record(
        charge_point_id=cp.pk,
        transaction_ref="TX-LATE",
        seq_no=5,
        event_type="Ended",
        trigger_reason="EVCommunicationLost",
        timestamp=t0 + 3 * M,
        received_at=clock.now(),
        stopped_reason="EVDisconnected",
        payload=payload,
    )
    session = _fresh(session)
    assert (session.stop_reason, session.review_reason) == (ClosedBy.OPERATOR, ReviewReason.LATE_STOP)
    assert OrphanStop.objects.get().payload == payload


def test_force_close_and_mark_reviewed_from_the_admin_are_audited_and_scoped(cp, org, client):
    t0 = clock.now()
    session = _start(cp, at=t0)
    _meter(session, wh=10_700, at=t0 + M)
    elsewhere = ChargePointFactory(identity="CP-ELSEWHERE")
    foreign = session_start(
        charge_point_id=elsewhere.pk,
        evse_id=1,
        id_tag="",
        meter_start_wh=0,
        started_at_charger=t0,
        received_at=t0,
        protocol=OcppProtocol.OCPP16,
    ).session
    url = reverse("admin:charging_chargingsession_changelist")
    technician = StaffUserFactory(organisation=org, role=Role.TECHNICIAN)
    client.force_login(technician)
    client.post(url, {"action": "force_close", "_selected_action": [session.pk]})
    assert _fresh(session).status == SessionStatus.ACTIVE  # not a technician's to close

    support = StaffUserFactory(organisation=org, role=Role.SUPPORT)
    client.force_login(support)
    response = client.post(url, {"action": "force_close", "_selected_action": [session.pk, foreign.pk]})
    assert response.status_code == 302
    session = _fresh(session)
    assert (session.status, session.stop_reason, session.meter_stop_wh, session.review_reason) == (
        SessionStatus.COMPLETED,
        ClosedBy.OPERATOR,
        10_700,
        ReviewReason.NONE,
    )
    assert _fresh(foreign).status == SessionStatus.ACTIVE  # another operator's session
    record = AuditRecord.objects.get(action="chargingsession.force_close")
    assert (record.actor_id, record.target_id, record.source, record.organisation_id) == (
        support.pk,
        str(session.pk),
        "admin",
        org.pk,
    )

    flagged = _start(cp, at=t0 + M)
    ChargingSession.objects.filter(pk=flagged.pk).update(review_reason=ReviewReason.RECONCILED)
    response = client.get(url, {"closed_by": "any"})
    assert list(response.context["cl"].queryset) == [session]
    client.post(url, {"action": "mark_reviewed", "_selected_action": [flagged.pk]})
    assert _fresh(flagged).review_reason == ReviewReason.NONE
    assert AuditRecord.objects.get(action="chargingsession.review_done").detail == {
        "review_reason": "reconciled"
    }


def test_force_close_of_a_completed_session_changes_nothing(cp):
    session = _start(cp)
    assert reconcile.session_force_close(session=session, actor=None) is True
    assert reconcile.session_force_close(session=session, actor=None) is False
    assert AuditRecord.objects.filter(action="chargingsession.force_close").count() == 1


def test_the_task_is_on_the_beat_schedule_and_reconciles(settings, cp):
    entry = settings.CELERY_BEAT_SCHEDULE["charging-sessions-reconcile"]
    assert entry["task"] == tasks.sessions_reconcile_task.name == "charging.sessions_reconcile"
    session = _start(cp, at=clock.now() - 61 * M)
    assert tasks.sessions_reconcile_task() == {"open": 0, "asked": 1, "closed": 0}
    assert _fresh(session).probe_sent_at is not None


def test_the_session_page_charts_power_and_energy_and_escapes_nothing_it_should_not(cp, org, client):
    t0 = clock.now() - 30 * M
    session = _start(cp, at=t0)
    for minute, wh, watts in ((1, 10_500, 11_000), (2, 11_000, 10_800), (3, 11_400, 7_200)):
        meter_values_record(
            charge_point_id=cp.pk,
            evse_id=1,
            transaction_ref=session.transaction_ref,
            samples=[
                Sample(sampled_at=t0 + minute * M, measurand=ENERGY_REGISTER, unit="Wh", value=D(wh)),
                Sample(sampled_at=t0 + minute * M, measurand="Power.Active.Import", unit="W", value=D(watts)),
            ],
            received_at=clock.now(),
        )
    series = {s.unit: s for s in charts.session_series(_fresh(session))}
    assert [float(v) for _at, v in series["kWh"].points] == [0.5, 1.0, 1.4]  # from the session's start
    assert [float(v) for _at, v in series["kW"].points] == [11.0, 10.8, 7.2]
    client.force_login(StaffUserFactory(organisation=org, role=Role.SUPPORT))
    page = client.get(reverse("admin:charging_chargingsession_change", args=[session.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "<svg" in body and "<polyline" in body and "max 1.40 kWh" in body and "max 11.00 kW" in body
    empty = _start(cp, at=t0 + 40 * M)
    assert "No energy or power values" in charts.session_chart_svg(empty)


def test_remote_stop_goes_through_the_command_service_and_a_location_filter_scopes_the_list(
    cp, org, client, monkeypatch
):
    sent = []

    class Control:
        def stop_transaction(self, *, session, actor, source):
            sent.append((session.pk, actor.pk, source))
            return IntentSent(command_id=len(sent), action="RemoteStopTransaction", offline=len(sent) > 1)

    monkeypatch.setattr(charger_control, "_impl", Control())
    session = _start(cp)
    done = _start(cp, at=clock.now() - 90 * M)
    ChargingSession.objects.filter(pk=done.pk).update(status=SessionStatus.COMPLETED)
    support = StaffUserFactory(organisation=org, role=Role.SUPPORT)
    client.force_login(support)
    url = reverse("admin:charging_chargingsession_changelist")
    response = client.post(
        url, {"action": "remote_stop", "_selected_action": [session.pk, done.pk]}, follow=True
    )
    assert sent == [(session.pk, support.pk, "admin")]  # the completed one is not asked again
    assert "Stop sent to 1 charger" in response.content.decode()

    listed = client.get(url, {"location": str(cp.location_id)})
    assert set(listed.context["cl"].queryset) == {session, done}
    other = LocationFactory(organisation=org)
    assert list(client.get(url, {"location": str(other.pk)}).context["cl"].queryset) == []
