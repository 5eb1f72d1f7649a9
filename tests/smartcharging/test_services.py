"""Sites, rebalancing and what chargers make of our profiles (in-process; the charger side is recorded
through the charger_control port, the gateway's payloads are checked against the OCPP schemas)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal as D
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.accounts.models import AuditRecord
from apps.charging import metering
from apps.charging.choices import SessionStatus
from apps.charging.intents import CommandOutcome, IntentOutcome, IntentSent, charger_control
from apps.charging.services import meter_values_record
from apps.ocpp_gateway import intents as gateway_intents
from apps.ocpp_gateway import protocol
from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.services import presence_flush
from apps.smartcharging import services
from apps.smartcharging.choices import ProfilePurpose, ProfileStatus
from apps.smartcharging.configuration import configuration_record
from apps.smartcharging.models import ChargingLimit, EvChargingNeeds, GridEvent, Site
from apps.stations.choices import OcppProtocol
from apps.stations.models import ChargePoint
from cpo import clock
from tests.factories import (
    ChargePointFactory,
    ChargingSessionFactory,
    ConnectorFactory,
    DeviceVariableFactory,
    EvChargingNeedsFactory,
    EvseFactory,
    ExternalChargingLimitFactory,
    LocationFactory,
    MeterSampleFactory,
    OcppCommandFactory,
    OrganisationFactory,
)

pytestmark = pytest.mark.django_db


@dataclass
class Recorder:
    """charger_control that records the limits asked for; the command ids count up."""

    sent: list[tuple[str, Any]] = field(default_factory=list)
    offline: set[str] = field(default_factory=set)

    def set_charging_limit(self, *, charge_point, limit, actor, source) -> IntentSent:
        self.sent.append((charge_point.identity, limit))
        return IntentSent(
            command_id=1000 + len(self.sent),
            action="SetChargingProfile",
            offline=charge_point.identity in self.offline,
        )


@pytest.fixture
def recorder():
    original = charger_control.provided
    recorder = charger_control.provide(Recorder())
    yield recorder
    charger_control.provide(original)


def _site(budget="64", count=4, protocol=OcppProtocol.OCPP16, max_a=32):
    org = OrganisationFactory()
    location = LocationFactory(organisation=org)
    site = Site.objects.create(organisation=org, location=location, max_current_a=D(budget), phases=3)
    sessions = []
    for n in range(count):
        cp = ChargePointFactory(
            organisation=org, location=location, identity=f"SMART-{n}", ocpp_protocol=protocol, is_online=True
        )
        ConnectorFactory(evse=EvseFactory(charge_point=cp, evse_id=1), max_current_a=max_a)
        sessions.append(
            ChargingSessionFactory(
                charge_point=cp,
                protocol=protocol,
                ocpp16_transaction_id=100 + n,
                started_at=clock.now() + timedelta(seconds=n),
            )
        )
    return site, sessions


def _limits(recorder):
    return sorted(
        (identity, limit.limit, limit.unit)
        for identity, limit in recorder.sent
        if limit.purpose == "TxProfile"
    )


def _static(recorder):
    return sorted(
        (identity, limit.purpose, limit.evse_id, limit.limit, limit.unit)
        for identity, limit in recorder.sent
        if limit.purpose != "TxProfile"
    )


def _tx():
    return ChargingLimit.objects.filter(purpose=ProfilePurpose.TX)


# --- site_set --------------------------------------------------------------------------------------------
def test_site_set_makes_the_site_prints_the_change_and_audits_it():
    location = LocationFactory()
    out = StringIO()
    call_command("site_set", str(location.pk), "--max-current-a", "64", "--phases", "3", stdout=out)
    site = Site.objects.get(location=location)
    assert (site.max_current_a, site.phases, site.organisation_id) == (D("64.0"), 3, location.organisation_id)
    assert "max_current_a: - -> 64.0" in out.getvalue()
    assert "44.2 kW" in out.getvalue()
    out = StringIO()
    call_command("site_set", str(location.pk), "--max-current-a", "80", stdout=out)
    assert "max_current_a: 64.0 -> 80.0" in out.getvalue()
    assert "phases" not in out.getvalue()
    assert (
        AuditRecord.objects.filter(action="site.budget_set", organisation=location.organisation).count() == 2
    )
    out = StringIO()
    call_command("site_set", str(location.pk), "--max-current-a", "80", stdout=out)
    assert "unchanged" in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["999999", "--max-current-a", "64"], "No location with id '999999'"),
        (["LOC", "--max-current-a", "64"], "No location with id 'LOC'"),
        (["{loc}", "--max-current-a", "lots"], "must be a number of amperes"),
        (["{loc}", "--max-current-a", "-5"], "must not be negative"),
        (["{loc}", "--max-current-a", "NaN"], "must be a number of amperes"),
    ],
)
def test_site_set_refuses_bad_input_and_stores_nothing(args, message):
    location = LocationFactory()
    Site.objects.create(organisation=location.organisation, location=location, max_current_a=D("50"))
    with pytest.raises(CommandError, match=message):
        call_command("site_set", *[a.format(loc=location.pk) for a in args], stdout=StringIO())
    assert Site.objects.get(location=location).max_current_a == D("50.0")


def test_site_set_refuses_a_phase_count_outside_one_to_three():
    location = LocationFactory()
    with pytest.raises(CommandError):
        call_command(
            "site_set", str(location.pk), "--max-current-a", "64", "--phases", "4", stderr=StringIO()
        )
    assert not Site.objects.exists()


# --- rebalancing -----------------------------------------------------------------------------------------
def test_four_32_a_chargers_on_a_64_a_site_get_16_a_each_and_nothing_is_resent_when_nothing_changed(recorder):
    site, sessions = _site()
    result = services.site_rebalance(site_id=site.pk)
    assert _limits(recorder) == [(f"SMART-{n}", D("16.0"), "A") for n in range(4)]
    assert len(result.sent) == 4 + 2 * 4  # and each charger's two static profiles
    limit = recorder.sent[0][1]
    assert (limit.purpose, limit.evse_id, limit.number_phases, limit.session) == (
        "TxProfile",
        1,
        3,
        sessions[0],
    )
    assert limit.valid_to > limit.valid_from
    rows = _tx().order_by("charge_point__identity")
    assert [(r.limit_a, r.status, r.command_id) for r in rows] == [
        (D("16.0"), ProfileStatus.SENT, 1001 + n) for n in range(4)
    ]
    # Nothing changed: nothing is sent again.
    recorder.sent.clear()
    assert services.site_rebalance(site_id=site.pk).sent == []
    assert recorder.sent == []


def test_a_stop_redistributes_only_to_the_others_and_forgets_the_stopped_ones_profile(recorder):
    site, sessions = _site()
    services.site_rebalance(site_id=site.pk)
    recorder.sent.clear()
    sessions[3].status = SessionStatus.COMPLETED
    sessions[3].save()
    services.site_rebalance(site_id=site.pk)
    assert _limits(recorder) == [(f"SMART-{n}", D("21.3"), "A") for n in range(3)]
    assert not _tx().filter(charge_point=sessions[3].charge_point).exists()


def test_a_charger_that_allows_only_watts_gets_watts(recorder):
    site, sessions = _site(count=2)
    configuration_record(
        charge_point_id=sessions[0].charge_point_id,
        keys=[{"key": "ChargingScheduleAllowedChargingRateUnit", "value": "Power", "readonly": True}],
        reported_at=clock.now(),
    )
    DeviceVariableFactory(
        charge_point=sessions[1].charge_point,
        component="SmartChargingCtrlr",
        variable="RateUnit",
        value="A,W",
    )
    services.site_rebalance(site_id=site.pk)
    # 32 A each: 32 A x 230 V x 3 phases.
    assert _limits(recorder) == [("SMART-0", D("22080.0"), "W"), ("SMART-1", D("32.0"), "A")]


def test_an_offline_charger_counts_at_its_last_limit_and_is_not_sent_anything(recorder):
    site, sessions = _site()
    services.site_rebalance(site_id=site.pk)
    for row in ChargingLimit.objects.all():
        services.charging_limit_finished(
            charge_point_id=row.charge_point_id,
            outcome=IntentOutcome(command_id=row.command_id, outcome=CommandOutcome.ACCEPTED),
        )
    cp = sessions[0].charge_point
    cp.is_online = False
    cp.save()
    sessions[3].status = SessionStatus.COMPLETED
    sessions[3].save()
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk)
    # 64 - 16 (offline, kept) = 48 for two: 24 each.
    assert _limits(recorder) == [("SMART-1", D("24.0"), "A"), ("SMART-2", D("24.0"), "A")]


def test_a_rejected_profile_flags_the_charger_its_share_counts_at_its_maximum(
    recorder, django_capture_on_commit_callbacks, monkeypatch
):
    site, sessions = _site(count=3)
    services.site_rebalance(site_id=site.pk)
    first = _tx().get(charge_point=sessions[0].charge_point)
    dispatched = []
    monkeypatch.setattr(services, "site_rebalance_dispatch", lambda *, site_id: dispatched.append(site_id))
    with django_capture_on_commit_callbacks(execute=True):
        services.charging_limit_finished(
            charge_point_id=first.charge_point_id,
            outcome=IntentOutcome(
                command_id=first.command_id, outcome=CommandOutcome.REFUSED, status="answered"
            ),
        )
    first.refresh_from_db()
    assert first.status == ProfileStatus.REJECTED
    assert dispatched == [site.pk]
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk)
    # 64 - 32 (assumed at its maximum) = 32 for two.
    assert _limits(recorder) == [("SMART-1", D("16.0"), "A"), ("SMART-2", D("16.0"), "A")]


def test_an_outcome_of_an_older_command_changes_nothing(recorder):
    site, sessions = _site(count=1)
    services.site_rebalance(site_id=site.pk)
    services.charging_limit_finished(
        charge_point_id=sessions[0].charge_point_id,
        outcome=IntentOutcome(command_id=999, outcome=CommandOutcome.REFUSED),
    )
    assert _tx().get().status == ProfileStatus.SENT


def test_a_car_drawing_less_than_its_share_leaves_the_rest_to_the_others(recorder):
    """Only readings taken under the limit in force count (SMART-1's older reading is ignored)."""
    site, sessions = _site(count=3)
    services.site_rebalance(site_id=site.pk)  # 21.3 each
    old = {
        "sampled_at": clock.now() - timedelta(minutes=1),
        "received_at": clock.now() - timedelta(minutes=1),
    }
    MeterSampleFactory(
        charge_point=sessions[1].charge_point,
        session=sessions[1],
        measurand="Current.Import",
        unit="A",
        value=D("3"),
        **old,
    )
    for row in ChargingLimit.objects.all():
        services.charging_limit_finished(
            charge_point_id=row.charge_point_id,
            outcome=IntentOutcome(command_id=row.command_id, outcome=CommandOutcome.ACCEPTED),
        )
    for phase in ("L1", "L2", "L3"):
        MeterSampleFactory(
            charge_point=sessions[0].charge_point,
            session=sessions[0],
            measurand="Current.Import",
            phase=phase,
            unit="A",
            value=D("8"),
        )
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk)
    assert _limits(recorder) == [
        ("SMART-0", D("9.0"), "A"),
        ("SMART-1", D("27.5"), "A"),
        ("SMART-2", D("27.5"), "A"),
    ]


def test_starts_and_stops_at_a_site_queue_one_coalesced_rebalance(
    django_capture_on_commit_callbacks, monkeypatch
):
    site, sessions = _site(count=3)
    queued = []
    monkeypatch.setattr(
        services.current_app, "send_task", lambda name, args, countdown: queued.append((name, args))
    )
    services._redis().delete(f"{services.COALESCE_KEY}{site.pk}")
    with django_capture_on_commit_callbacks(execute=True):
        for session in sessions:
            services.session_started(
                session=session,
                charge_point=session.charge_point,
                token_group_id="",
                customer_account_id=None,
            )
    assert queued == [("smartcharging.site_rebalance", (site.pk,))]
    # The run clears the mark: the next change queues another run.
    services.site_rebalance_claim(site_id=site.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.session_stopped(session=sessions[0], reason="Local")
    assert queued == [("smartcharging.site_rebalance", (site.pk,))] * 2
    services._redis().delete(f"{services.COALESCE_KEY}{site.pk}")


def test_a_charger_outside_every_site_queues_nothing(django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr(services.current_app, "send_task", lambda *a, **k: queued.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        ChargingSessionFactory()  # emits nothing itself; call the receiver as charging would
        services.charge_point_changed(charge_point_id=ChargePointFactory().pk)
    assert queued == []


# --- the gateway's side ----------------------------------------------------------------------------------
SCHEMA_VERSIONS = {OcppProtocol.OCPP16: "1.6", OcppProtocol.OCPP201: "2.0.1", OcppProtocol.OCPP21: "2.1"}


@pytest.mark.parametrize("subprotocol", list(SCHEMA_VERSIONS))
@pytest.mark.parametrize("purpose", list(ProfilePurpose))
def test_each_version_sends_our_profile_in_its_own_schema(subprotocol, purpose, recorder):
    site, sessions = _site(count=1, protocol=subprotocol)
    services.site_rebalance(site_id=site.pk)
    limit = recorder.sent[0][1]
    from dataclasses import replace

    limit = replace(limit, purpose=purpose.value, limit=D("12.8"))
    version = SCHEMA_VERSIONS[subprotocol]
    action, payload = gateway_intents.payloads_for(subprotocol).set_charging_limit(limit=limit)
    assert action == "SetChargingProfile"
    protocol.validate(action, payload, version, protocol.ErrorCodes(version))
    if version == "1.6":
        profile = payload["csChargingProfiles"]
        assert payload["connectorId"] == 1
        assert profile["chargingProfilePurpose"] == purpose.value
        assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [
            {"startPeriod": 0, "limit": 12.8, "numberPhases": 3}
        ]
    else:
        profile = payload["chargingProfile"]
        assert payload["evseId"] == 1
        assert profile["chargingProfilePurpose"] == (
            "ChargingStationMaxProfile" if purpose == ProfilePurpose.CHARGER_MAX else purpose.value
        )
    if purpose == ProfilePurpose.TX:
        assert profile["transactionId"] == (
            sessions[0].ocpp16_transaction_id if version == "1.6" else sessions[0].transaction_ref
        )
    assert profile["validTo"].endswith("Z")
    assert profile["stackLevel"] == services.STACK_LEVEL


def test_the_gateway_tells_smart_charging_the_outcome_of_its_profile(recorder):
    site, _sessions = _site(count=2)
    services.site_rebalance(site_id=site.pk)
    rows = list(_tx().order_by("charge_point__identity"))
    accepted = OcppCommandFactory(
        charge_point=rows[0].charge_point, action="SetChargingProfile", response={"status": "Accepted"}
    )
    rejected = OcppCommandFactory(
        charge_point=rows[1].charge_point, action="SetChargingProfile", response={"status": "Rejected"}
    )
    ChargingLimit.objects.filter(pk=rows[0].pk).update(command_id=accepted.pk)
    ChargingLimit.objects.filter(pk=rows[1].pk).update(command_id=rejected.pk)
    from apps.ocpp_gateway import outcomes

    outcomes.command_finished(command=accepted)
    outcomes.command_finished(command=rejected)
    assert [r.status for r in _tx().order_by("charge_point__identity")] == [
        ProfileStatus.ACCEPTED,
        ProfileStatus.REJECTED,
    ]
    timed_out = OcppCommandFactory(
        charge_point=rows[0].charge_point,
        action="SetChargingProfile",
        status=CommandStatus.TIMEOUT,
        response=None,
    )
    ChargingLimit.objects.filter(pk=rows[0].pk).update(command_id=timed_out.pk, status=ProfileStatus.SENT)
    outcomes.command_finished(command=timed_out)
    assert ChargingLimit.objects.get(pk=rows[0].pk).status == ProfileStatus.FAILED


def test_a_get_configuration_answer_is_stored_for_the_rate_unit():
    cp = ChargePointFactory()
    command = OcppCommandFactory(
        charge_point=cp,
        action="GetConfiguration",
        payload={},
        response={
            "configurationKey": [
                {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"}
            ]
        },
    )
    from apps.ocpp_gateway import outcomes

    outcomes.command_answered(command=command)
    assert services.charge_point_rate_units(charge_point_id=cp.pk) == {"A"}


# --- grid events ------------------------------------------------------------------------------------------
def test_a_grid_event_cuts_the_budget_for_its_window_the_deepest_cut_wins(recorder, monkeypatch):
    monkeypatch.setattr(services.current_app, "send_task", lambda *a, **k: None)
    site, _sessions = _site()
    now = clock.now()
    services.grid_event_declare(
        sites=[site], reduce_percent=D("20"), starts_at=now, ends_at=now + timedelta(minutes=30)
    )
    services.grid_event_declare(
        sites=[site],
        reduce_percent=D("50"),
        starts_at=now + timedelta(minutes=10),
        ends_at=now + timedelta(hours=1),
    )
    assert services.site_budget_a(site=site, now=now + timedelta(minutes=1)) == D("51.2")
    assert services.site_budget_a(site=site, now=now + timedelta(minutes=20)) == D("32.0")
    assert services.site_budget_a(site=site, now=now + timedelta(hours=2)) == D("64.0")
    services.site_rebalance(site_id=site.pk, now=now + timedelta(minutes=1))
    assert _limits(recorder) == [(f"SMART-{n}", D("12.8"), "A") for n in range(4)]
    assert AuditRecord.objects.filter(action="gridevent.declare").count() == 2


def test_ending_a_grid_event_restores_the_budget_and_rebalances(
    recorder, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services.current_app, "send_task", lambda *a, **k: None)
    dispatched = []
    monkeypatch.setattr(services, "site_rebalance_dispatch", lambda *, site_id: dispatched.append(site_id))
    site, _sessions = _site()
    now = clock.now()
    with django_capture_on_commit_callbacks(execute=True):
        event = services.grid_event_declare(sites=[site], starts_at=now, ends_at=now + timedelta(minutes=30))
    assert dispatched == [site.pk]
    services.site_rebalance(site_id=site.pk)
    assert {limit for _identity, limit, _unit in _limits(recorder)} == {D("12.8")}
    with django_capture_on_commit_callbacks(execute=True):
        services.grid_event_end(event=event)
    assert dispatched == [site.pk, site.pk]
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk)
    assert _limits(recorder) == [(f"SMART-{n}", D("16.0"), "A") for n in range(4)]


def test_grid_event_command_declares_for_the_locations_sites(monkeypatch):
    monkeypatch.setattr(services.current_app, "send_task", lambda *a, **k: None)
    location = LocationFactory()
    call_command("site_set", str(location.pk), "--max-current-a", "64", stdout=StringIO())
    out = StringIO()
    call_command(
        "grid_event", "--location", str(location.pk), "--reduce-percent", "20", "--minutes", "30", stdout=out
    )
    assert "64.0 A -> 51.2 A per phase" in out.getvalue()
    site = Site.objects.get(location=location)
    assert services.site_budget_a(site=site) == D("51.2")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reduce-percent", "0", "--minutes", "30"], "percentage above 0"),
        (["--reduce-percent", "120", "--minutes", "30"], "percentage above 0"),
        (["--reduce-percent", "x", "--minutes", "30"], "must be a number"),
        (["--minutes", "0"], "--minutes must be positive"),
    ],
)
def test_grid_event_command_refuses_bad_input_and_stores_nothing(args, message, monkeypatch):
    monkeypatch.setattr(services.current_app, "send_task", lambda *a, **k: None)
    location = LocationFactory()
    call_command("site_set", str(location.pk), "--max-current-a", "64", stdout=StringIO())
    with pytest.raises(CommandError, match=message):
        call_command("grid_event", "--location", str(location.pk), *args, stdout=StringIO())
    assert not GridEvent.objects.exists()


def test_grid_event_command_needs_a_site():
    with pytest.raises(CommandError, match="has no site"):
        call_command(
            "grid_event", "--location", str(LocationFactory().pk), "--minutes", "5", stdout=StringIO()
        )


def test_a_charger_going_offline_or_coming_back_rebalances_its_site(
    monkeypatch, django_capture_on_commit_callbacks
):
    site, sessions = _site(count=2)
    dispatched = []
    monkeypatch.setattr(services, "site_rebalance_dispatch", lambda *, site_id: dispatched.append(site_id))
    # No presence record in Redis for either charger, last seen longer ago than presence lives (a Redis
    # that lost its data): both lapse; a charger of no site changes nothing.
    long_ago = clock.now() - timedelta(hours=1)
    ChargePointFactory(is_online=True, last_seen_at=long_ago)
    ChargePoint.objects.filter(pk__in=[s.charge_point_id for s in sessions]).update(last_seen_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert presence_flush()["went_offline"] == 3
    assert dispatched == [site.pk, site.pk]
    sessions[0].charge_point.refresh_from_db()
    assert sessions[0].charge_point.is_online is False


# --- static profiles ---------------------------------------------------------------------------------------
def test_each_online_charger_gets_the_fail_safe_default_and_the_static_cap_once(recorder):
    site, _sessions = _site(count=2)
    site.fallback_limit_a = D("10")
    site.save()
    offline = ChargePointFactory(organisation=site.organisation, location=site.location, is_online=False)
    services.site_rebalance(site_id=site.pk)
    assert _static(recorder) == [
        (identity, purpose, 0, limit, "A")
        for identity in ("SMART-0", "SMART-1")
        for purpose, limit in (("ChargePointMaxProfile", D("64.0")), ("TxDefaultProfile", D("10.0")))
    ]
    assert not ChargingLimit.objects.filter(charge_point=offline).exists()
    tx_default = next(limit for _i, limit in recorder.sent if limit.purpose == "TxDefaultProfile")
    assert tx_default.session is None and tx_default.valid_to - tx_default.valid_from == timedelta(days=7)
    assert tx_default.profile_id == services.profile_id_for(evse_id=0, purpose="TxDefaultProfile")
    # Nothing changed: nothing is sent again; a new fallback limit goes out as a new default only.
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk)
    assert recorder.sent == []
    site.fallback_limit_a = D("8")
    site.save()
    services.site_rebalance(site_id=site.pk)
    assert _static(recorder) == [
        (identity, "TxDefaultProfile", 0, D("8.0"), "A") for identity in ("SMART-0", "SMART-1")
    ]
    assert _limits(recorder) == []


def test_without_a_fallback_limit_the_default_is_the_minimum_and_watts_where_only_watts(recorder):
    site, sessions = _site(count=1)
    configuration_record(
        charge_point_id=sessions[0].charge_point_id,
        keys=[{"key": "ChargingScheduleAllowedChargingRateUnit", "value": "Power"}],
        reported_at=clock.now(),
    )
    services.site_rebalance(site_id=site.pk)
    # 6 A and 64 A on 3 phases at 230 V.
    assert _static(recorder) == [
        ("SMART-0", "ChargePointMaxProfile", 0, D("44160.0"), "W"),
        ("SMART-0", "TxDefaultProfile", 0, D("4140.0"), "W"),
    ]


def test_a_rejected_static_profile_is_offered_again_after_a_while(recorder, settings):
    settings.CPO_SMART_REJECT_RETRY_S = 300
    site, _sessions = _site(count=1)
    services.site_rebalance(site_id=site.pk)
    row = ChargingLimit.objects.get(purpose=ProfilePurpose.TX_DEFAULT)
    services.charging_limit_finished(
        charge_point_id=row.charge_point_id,
        outcome=IntentOutcome(command_id=row.command_id, outcome=CommandOutcome.REFUSED),
    )
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk)
    assert _static(recorder) == []
    services.site_rebalance(site_id=site.pk, now=clock.now() + timedelta(seconds=301))
    assert _static(recorder) == [("SMART-0", "TxDefaultProfile", 0, D("6.0"), "A")]


def test_a_charger_that_rejected_its_profile_is_offered_its_maximum_after_a_while_then_its_share(
    recorder, settings
):
    settings.CPO_SMART_REJECT_RETRY_S = 300
    site, sessions = _site(count=3)
    services.site_rebalance(site_id=site.pk)
    first = _tx().get(charge_point=sessions[0].charge_point)
    services.charging_limit_finished(
        charge_point_id=first.charge_point_id,
        outcome=IntentOutcome(command_id=first.command_id, outcome=CommandOutcome.REFUSED),
    )
    later = clock.now() + timedelta(seconds=301)
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk, now=later)
    # Offered a profile at the maximum it is counted at (safe whatever it answers); the others share the
    # rest: (64 - 32) / 2.
    assert _limits(recorder) == [
        ("SMART-0", D("32.0"), "A"),
        ("SMART-1", D("16.0"), "A"),
        ("SMART-2", D("16.0"), "A"),
    ]
    first.refresh_from_db()
    assert first.status == ProfileStatus.SENT
    services.charging_limit_finished(
        charge_point_id=first.charge_point_id,
        outcome=IntentOutcome(command_id=first.command_id, outcome=CommandOutcome.ACCEPTED),
    )
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk, now=later)
    # It accepts profiles again: its fair share.
    assert _limits(recorder) == [
        ("SMART-0", D("21.3"), "A"),
        ("SMART-1", D("21.3"), "A"),
        ("SMART-2", D("21.3"), "A"),
    ]


# --- what chargers report: external limits, the car's needs -------------------------------------------------
def test_an_external_limit_caps_that_chargers_share_and_the_rest_goes_to_the_others(recorder):
    site, sessions = _site(count=3)
    ExternalChargingLimitFactory(charge_point=sessions[0].charge_point, evse_id=1, limit_a=D("12"))
    # A looser limit on the whole charger changes nothing; the lowest wins.
    ExternalChargingLimitFactory(
        charge_point=sessions[0].charge_point, evse_id=0, source="SO", limit_a=D("20")
    )
    services.site_rebalance(site_id=site.pk)
    assert _limits(recorder) == [
        ("SMART-0", D("12.0"), "A"),
        ("SMART-1", D("26.0"), "A"),
        ("SMART-2", D("26.0"), "A"),
    ]


def test_an_external_limit_on_the_whole_charger_applies_to_its_evse():
    site, sessions = _site(count=1)
    ExternalChargingLimitFactory(charge_point=sessions[0].charge_point, evse_id=0, limit_a=D("7.5"))
    demands, _context = services._demands(site, [sessions[0].charge_point], now=clock.now())
    assert demands[0].max_a == 7.5


def test_the_cars_needs_set_its_priority_when_the_minimums_do_not_all_fit(recorder):
    """A 10 A site, two 6 A minimums: only one fits. The older session would win; the car that must
    leave soon with energy to get wins instead."""
    site, sessions = _site(budget="10", count=2)
    services.site_rebalance(site_id=site.pk)
    assert _limits(recorder) == [("SMART-0", D("10.0"), "A"), ("SMART-1", D("0.0"), "A")]
    EvChargingNeedsFactory(
        charge_point=sessions[1].charge_point,
        evse_id=1,
        energy_amount_wh=20_000,
        departure_at=clock.now() + timedelta(hours=2),
        ev_max_current_a=20,
        reported_at=sessions[1].started_at + timedelta(seconds=1),
    )
    recorder.sent.clear()
    services.site_rebalance(site_id=site.pk)
    assert _limits(recorder) == [("SMART-0", D("0.0"), "A"), ("SMART-1", D("10.0"), "A")]


def test_needs_reported_before_the_session_started_are_not_its_own():
    site, sessions = _site(count=1)
    EvChargingNeedsFactory(
        charge_point=sessions[0].charge_point,
        evse_id=1,
        ev_max_current_a=10,
        reported_at=sessions[0].started_at - timedelta(minutes=5),
    )
    demands, _context = services._demands(site, [sessions[0].charge_point], now=clock.now())
    assert (demands[0].max_a, demands[0].priority) == (32.0, 0)


def test_the_cars_current_range_bounds_its_share():
    site, sessions = _site(count=1)
    EvChargingNeedsFactory(
        charge_point=sessions[0].charge_point,
        evse_id=1,
        ev_min_current_a=10,
        ev_max_current_a=16,
        reported_at=sessions[0].started_at + timedelta(seconds=1),
    )
    demands, _context = services._demands(site, [sessions[0].charge_point], now=clock.now())
    assert (demands[0].min_a, demands[0].max_a) == (10.0, 16.0)


@pytest.mark.parametrize(
    ("energy_wh", "hours", "priority"),
    [
        (None, 2, 0),  # no energy asked for: no priority
        (20_000, 2, 15),  # 20 kWh in 2 h on 3 x 230 V: 14.5 A, rounded up
        (20_000, -1, services.MAX_PRIORITY),  # due to leave already
        (10**9, 1, services.MAX_PRIORITY),  # more than anything could deliver
        (100, 10, 1),
    ],
)
def test_priority_is_the_average_current_the_car_needs_by_its_departure(energy_wh, hours, priority):
    now = clock.now()
    needs = EvChargingNeeds(energy_amount_wh=energy_wh, departure_at=now + timedelta(hours=hours))
    assert services.needs_priority(needs=needs, now=now, voltage_v=230, phases=3) == priority


# --- triggers ---------------------------------------------------------------------------------------------
def _current(value, at):
    return metering.Sample(sampled_at=at, measurand="Current.Import", unit="A", value=D(value), phase="L1")


def test_a_change_in_draw_rebalances_the_site_small_changes_do_not(
    monkeypatch, django_capture_on_commit_callbacks, settings
):
    settings.CPO_SMART_DRAW_CHANGE_A = 2.0
    site, sessions = _site(count=1)
    session = sessions[0]
    services._redis().delete(f"{services.DRAW_KEY}{session.charge_point_id}:1")
    dispatched = []
    monkeypatch.setattr(services, "site_rebalance_dispatch", lambda *, site_id: dispatched.append(site_id))
    now = clock.now()

    def reading(value, seconds):
        with django_capture_on_commit_callbacks(execute=True):
            meter_values_record(
                charge_point_id=session.charge_point_id,
                evse_id=1,
                transaction_ref=session.transaction_ref,
                samples=[_current(value, now + timedelta(seconds=seconds))],
                received_at=now + timedelta(seconds=seconds),
            )

    reading("16", 0)  # the first reading of the EVSE
    assert dispatched == [site.pk]
    reading("15", 10)  # less than 2 A from the last: nothing
    reading("14.5", 20)
    assert dispatched == [site.pk]
    reading("8", 30)  # the car takes less
    assert dispatched == [site.pk, site.pk]
    # Energy readings alone say nothing about the draw.
    with django_capture_on_commit_callbacks(execute=True):
        meter_values_record(
            charge_point_id=session.charge_point_id,
            evse_id=1,
            transaction_ref=session.transaction_ref,
            samples=[
                metering.Sample(
                    sampled_at=now + timedelta(seconds=40),
                    measurand="Energy.Active.Import.Register",
                    unit="Wh",
                    value=D("1000"),
                )
            ],
            received_at=now + timedelta(seconds=40),
        )
    assert dispatched == [site.pk, site.pk]
    services._redis().delete(f"{services.DRAW_KEY}{session.charge_point_id}:1")


def test_the_site_of_a_charge_point_is_found_in_one_query(django_assert_num_queries):
    site, sessions = _site(count=1)
    grouped_location = LocationFactory(organisation=site.organisation)
    named_cp = ChargePointFactory(organisation=site.organisation, location=grouped_location)
    other_cp = ChargePointFactory(organisation=site.organisation, location=grouped_location)
    group = Site.objects.create(
        organisation=site.organisation, location=grouped_location, name="Hall", max_current_a=D("32")
    )
    group.charge_points.set([named_cp])
    with django_assert_num_queries(1):
        assert services.site_for_charge_point(charge_point_id=sessions[0].charge_point_id) == site
    with django_assert_num_queries(1):
        assert services.site_for_charge_point(charge_point_id=named_cp.pk) == group
    # The location has a site, but a grouped one that does not name this charger: none.
    assert services.site_for_charge_point(charge_point_id=other_cp.pk) is None
    assert services.site_for_charge_point(charge_point_id=ChargePointFactory().pk) is None


def test_a_queued_run_waits_until_the_changes_are_quiet_but_not_past_the_coalescing_window(
    monkeypatch, settings
):
    settings.CPO_SMART_COALESCE_S = 1.0
    settings.CPO_SMART_QUIET_S = 0.3
    queued = []
    monkeypatch.setattr(
        services.current_app, "send_task", lambda name, args, countdown: queued.append((args, countdown))
    )
    site_id = 987_654
    services.site_rebalance_claim(site_id=site_id)
    assert services.site_rebalance_wait(site_id=site_id) == 0.0  # nothing marked: run now
    clock_at = [1000.0]
    monkeypatch.setattr(services.time, "time", lambda: clock_at[0])
    assert services.site_rebalance_dispatch(site_id=site_id) is True
    assert queued == [((site_id,), 0.3)]
    clock_at[0] = 1000.2
    assert services.site_rebalance_dispatch(site_id=site_id) is False  # coalesced into the queued run
    assert services.site_rebalance_wait(site_id=site_id, now=1000.3) == pytest.approx(0.2)
    assert services.site_rebalance_wait(site_id=site_id, now=1000.5) == 0.0  # quiet for 0.3 s
    clock_at[0] = 1000.8
    services.site_rebalance_dispatch(site_id=site_id)
    # Changes keep coming, but the first was a second ago: run now.
    assert services.site_rebalance_wait(site_id=site_id, now=1000.9) == pytest.approx(0.1)
    assert services.site_rebalance_wait(site_id=site_id, now=1001.0) == 0.0
    services.site_rebalance_claim(site_id=site_id)
    assert services.site_rebalance_wait(site_id=site_id, now=1000.9) == 0.0
    assert len(queued) == 1


def test_the_task_puts_a_run_off_while_changes_come_and_runs_it_once_they_are_quiet(monkeypatch, recorder):
    from apps.smartcharging import tasks

    site, _sessions = _site(count=2)
    queued = []
    monkeypatch.setattr(
        tasks.current_app, "send_task", lambda name, args, countdown: queued.append(countdown)
    )
    monkeypatch.setattr(services, "site_rebalance_wait", lambda *, site_id: 0.25)
    assert tasks.site_rebalance_task(site.pk) == []
    assert queued == [0.25] and recorder.sent == []
    monkeypatch.setattr(services, "site_rebalance_wait", lambda *, site_id: 0.0)
    assert len(tasks.site_rebalance_task(site.pk)) == 2 + 2 * 2
    assert len(_limits(recorder)) == 2


def test_a_grid_events_effect_is_audited_when_it_begins_and_when_it_ends(recorder, monkeypatch):
    monkeypatch.setattr(services.current_app, "send_task", lambda *a, **k: None)
    site, _sessions = _site()
    services.site_rebalance(site_id=site.pk)
    now = clock.now()
    event = services.grid_event_declare(sites=[site], starts_at=now, ends_at=now + timedelta(minutes=30))
    services.site_rebalance(site_id=site.pk)
    services.site_rebalance(site_id=site.pk)  # nothing changed: no second record
    services.grid_event_end(event=event)
    services.site_rebalance(site_id=site.pk)
    records = AuditRecord.objects.filter(action="site.budget_applied", target_id=str(site.pk)).order_by("pk")
    assert [(r.detail["budget_a"], r.detail["grid_events"], r.detail["allocated_a"]) for r in records] == [
        ([None, "64.0"], [], "64.0"),
        (["64.0", "51.2"], [event.pk], "51.2"),
        (["51.2", "64.0"], [], "64.0"),
    ]
    site.refresh_from_db()
    assert site.budget_applied_a == D("64.0")
