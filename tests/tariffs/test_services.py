"""Tariffs with the database: snapshot at session start, assignment, VAT by date, parking recorded from
OCPP 1.6 status reports and 2.0.1 transaction events, CDRs (issue, immutability, credit, sweep), and the
selectors the driver API uses."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal as D

import pytest
from django.db import IntegrityError, InternalError, ProgrammingError, connection, transaction

from apps.charging.services import session_start, session_stop, transaction_event_record
from apps.stations.services import connector_status_record
from apps.tariffs import services
from apps.tariffs.choices import ActivityState, CdrKind, PricingNote
from apps.tariffs.models import ChargeDetailRecord, ReceiptCounter, SessionActivity, SessionTariff, VatRate
from apps.tariffs.selectors import PriceSummary, cdr_for_session, price_summary_for_connectors, session_cost
from cpo.exceptions import Conflict
from tests.factories import (
    ChargeDetailRecordFactory,
    ChargePointFactory,
    ConnectorFactory,
    CustomerAccountFactory,
    EvseFactory,
    IdTokenFactory,
    LocationFactory,
    OrganisationFactory,
    TariffAssignmentFactory,
    TariffElementFactory,
    TariffFactory,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 5, 6, 8, 0, tzinfo=UTC)  # 10:00 in Berlin
M = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """CDR tasks are dispatched on commit; here they are recorded instead of sent to the broker."""
    sent: list[int] = []
    from apps.tariffs import tasks

    monkeypatch.setattr(tasks.cdr_issue_task, "delay", lambda session_id: sent.append(session_id))
    return sent


@pytest.fixture
def org():
    return OrganisationFactory(name="Alpha", slug="alpha-t", country="DE")


@pytest.fixture
def cp(org):
    charge_point = ChargePointFactory(
        organisation=org, identity="CP-T", location=LocationFactory(organisation=org, country="DE")
    )
    ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=1))
    return charge_point


def issue_example_tariff(org, **kwargs):
    """1.00 flat, 0.30/kWh, parking 3.00/h after the first 2 hours; VAT from the table (DE 19 %)."""
    tariff = TariffFactory(organisation=org, name=kwargs.pop("name", "Standard"), **kwargs)
    TariffElementFactory(
        tariff=tariff, position=0, energy_price=None, parking_price=D("3.00"), min_duration_s=7200
    )
    TariffElementFactory(tariff=tariff, position=1, energy_price=D("0.30"), flat_price=D("1.00"))
    return tariff


def start16(cp, *, at=T0, id_tag="", meter=1000):
    return session_start(
        charge_point_id=cp.pk,
        evse_id=1,
        id_tag=id_tag,
        meter_start_wh=meter,
        started_at_charger=at,
        received_at=at,
        protocol="ocpp1.6",
    ).session


def status(cp, value, at):
    connector_status_record(
        charge_point_id=cp.pk, evse_id=1, connector_id=1, status=value, received_at=at, charger_at=at
    )


def test_vat_table_has_the_standard_rates_by_date():
    from apps.tariffs.selectors import vat_rate_for

    assert vat_rate_for(country="DE", on=date(2025, 1, 1)) == D("19.00")
    assert vat_rate_for(country="DE", on=date(2020, 8, 1)) == D("16.00")  # the 2020 reduction
    assert vat_rate_for(country="FR", on=date(2025, 1, 1)) == D("20.00")
    assert vat_rate_for(country="ZZ", on=date(2025, 1, 1)) == D(0)


def test_session_snapshots_the_tariff_at_start_and_ignores_later_changes(
    cp, org, django_assert_max_num_queries
):
    tariff = issue_example_tariff(org)
    TariffAssignmentFactory(tariff=tariff)
    # The start itself, the tariff snapshot (location, assignments, elements, VAT, insert) and smart
    # charging's site lookup (a site naming the charge point, else its location's).
    with django_assert_max_num_queries(15):
        session = start16(cp)
    snapshot = SessionTariff.objects.get(session=session)
    assert snapshot.tariff == tariff and snapshot.currency == "EUR" and snapshot.prices_parking
    assert snapshot.spec["vat"] == "19"
    assert [e["energy"] for e in snapshot.spec["elements"]] == [
        None,
        {"price": "0.3", "vat": "19", "step_size": 0},
    ]

    tariff.elements.filter(position=1).update(energy_price=D("0.99"))  # a later price change
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=1000 + 31400,
        stopped_at_charger=T0 + 60 * M,
        received_at=T0 + 60 * M,
        reason="EVDisconnected",
    )
    session.refresh_from_db()
    assert str(session_cost(session=session).net) == "10.42"  # 1.00 + 31.4 x 0.30, not 0.99
    new = start16(cp, at=T0 + 3 * 60 * M)
    assert SessionTariff.objects.get(session=new).spec["elements"][1]["energy"]["price"] == "0.99"


def test_no_tariff_no_snapshot_and_no_cost(cp):
    session = start16(cp)
    assert not SessionTariff.objects.filter(session=session).exists()
    assert session_cost(session=session) is None
    assert (
        price_summary_for_connectors(connector_ids=[c.pk for c in ConnectorFactory._meta.model.objects.all()])
        == {}
    )


def test_most_specific_assignment_wins_and_drivers_override(cp, org):
    connector = cp.evses.get().connectors.get()
    names = {}
    for name, place in [
        ("default", {}),
        ("location", {"location": cp.location}),
        ("cp", {"charge_point": cp}),
        ("connector", {"connector": connector}),
    ]:
        tariff = TariffFactory(organisation=org, name=name)
        TariffElementFactory(tariff=tariff)
        TariffAssignmentFactory(tariff=tariff, **place)
        names[tariff.pk] = name

    def tariff_name(**token):
        return names[
            start16(
                cp, at=T0 + timedelta(hours=len(SessionTariff.objects.all())), **token
            ).tariff_snapshot.tariff_id
        ]

    assert tariff_name() == "connector"
    fleet = CustomerAccountFactory(organisation=org)
    for name, kwargs in [("group", {"token_group_id": "STAFF"}), ("fleet", {"customer_account": fleet})]:
        tariff = TariffFactory(organisation=org, name=name)
        TariffElementFactory(tariff=tariff)
        TariffAssignmentFactory(tariff=tariff, **kwargs)
        names[tariff.pk] = name
    IdTokenFactory(uid="0000AAAA", group_id="STAFF")
    IdTokenFactory(uid="0000BBBB", customer_account=fleet)
    IdTokenFactory(uid="0000CCCC")
    assert tariff_name(id_tag="0000AAAA") == "group"
    assert tariff_name(id_tag="0000BBBB") == "fleet"
    assert tariff_name(id_tag="0000CCCC") == "connector"


def test_expired_or_future_tariffs_are_skipped(cp, org):
    old = TariffFactory(organisation=org, name="old", valid_until=T0 - M)
    TariffElementFactory(tariff=old)
    TariffAssignmentFactory(tariff=old, charge_point=cp)
    later = TariffFactory(organisation=org, name="later", valid_from=T0 + M)
    TariffElementFactory(tariff=later)
    TariffAssignmentFactory(tariff=later, charge_point=cp)
    default = TariffFactory(organisation=org, name="default")
    TariffElementFactory(tariff=default)
    TariffAssignmentFactory(tariff=default)
    assert start16(cp).tariff_snapshot.tariff == default


def test_ocpp16_parking_from_status_reports_continues_after_the_stop(
    cp, org, no_broker, django_capture_on_commit_callbacks
):
    """The issue's example on a 1.6 charger: SuspendedEV at 1 h 50, StopTransaction at 2 h 10 (the car
    stays), Finishing, Available at 2 h 35 → 12.17 net, 14.48 gross."""
    TariffAssignmentFactory(tariff=issue_example_tariff(org))
    session = start16(cp)
    status(cp, "Charging", T0 + M)
    status(cp, "SuspendedEV", T0 + 110 * M)
    status(cp, "SuspendedEV", T0 + 111 * M)  # repeated: nothing new
    with django_capture_on_commit_callbacks(execute=True):
        session_stop(
            charge_point_id=cp.pk,
            transaction_ref=session.transaction_ref,
            meter_stop_wh=1000 + 31400,
            stopped_at_charger=T0 + 130 * M,
            received_at=T0 + 130 * M,
            reason="Local",
        )
    assert no_broker == []  # the car is still there: no CDR yet
    status(cp, "Finishing", T0 + 130 * M)
    assert services.cdr_issue(session_id=session.pk, now=T0 + 140 * M) is None  # parking still open
    with django_capture_on_commit_callbacks(execute=True):
        status(cp, "Available", T0 + 155 * M)
    assert no_broker == [session.pk]

    assert list(SessionActivity.objects.filter(session=session).values_list("state", flat=True)) == [
        ActivityState.CHARGING,
        ActivityState.PARKING,
        ActivityState.PARKING,
        ActivityState.PARKING,
    ]
    snapshot = SessionTariff.objects.get(session=session)
    assert snapshot.departed_at == T0 + 155 * M
    cdr = services.cdr_issue(session_id=session.pk)
    assert (cdr.net, cdr.gross, cdr.energy_wh, cdr.parking_seconds) == (D("12.17"), D("14.48"), 31400, 2700)
    assert cdr.ended_at == T0 + 155 * M and cdr.stopped_at == T0 + 130 * M
    assert services.cdr_issue(session_id=session.pk) == cdr  # idempotent
    assert cdr_for_session(session) == cdr
    assert str(session_cost(session=session).gross) == "14.48"


def test_status_reports_without_an_open_session_write_nothing(cp, org):
    TariffAssignmentFactory(tariff=issue_example_tariff(org))
    status(cp, "SuspendedEV", T0)
    status(cp, "Available", T0 + M)
    assert SessionActivity.objects.count() == 0


def test_ocpp201_parking_from_charging_state_and_departure(
    cp, org, no_broker, monkeypatch, django_capture_on_commit_callbacks
):
    from cpo import clock

    TariffAssignmentFactory(tariff=issue_example_tariff(org))

    def event(seq, event_type, at, **kwargs):
        return transaction_event_record(
            charge_point_id=cp.pk,
            transaction_ref="TX-201",
            seq_no=seq,
            event_type=event_type,
            trigger_reason=kwargs.pop("trigger", "ChargingStateChanged"),
            timestamp=at,
            received_at=at,
            evse_id=1,
            connector_id=1,
            **kwargs,
        )

    from apps.charging.metering import Sample

    def register(at, wh):
        return [Sample(sampled_at=at, measurand="Energy.Active.Import.Register", unit="Wh", value=D(wh))]

    session = event(0, "Started", T0, charging_state="Charging", samples=register(T0, 1000)).session
    event(
        1,
        "Updated",
        T0 + 60 * M,
        charging_state="Charging",
        trigger="MeterValuePeriodic",
        samples=register(T0 + 60 * M, 20000),
    )
    event(2, "Updated", T0 + 110 * M, charging_state="SuspendedEV", samples=register(T0 + 110 * M, 32400))
    event(2, "Updated", T0 + 110 * M, charging_state="SuspendedEV")  # a repeat
    monkeypatch.setattr(clock, "now", lambda: T0 + 115 * M)
    assert str(session_cost(session=session).net) == "10.42"  # parking not yet charged (before 2 h)
    with django_capture_on_commit_callbacks(execute=True):
        event(
            3,
            "Ended",
            T0 + 155 * M,
            charging_state="Idle",
            trigger="EVCommunicationLost",
            stopped_reason="EVDisconnected",
            samples=register(T0 + 155 * M, 32400),
        )
    assert no_broker == [session.pk]
    assert list(SessionActivity.objects.filter(session=session).values_list("state", "source")) == [
        (ActivityState.CHARGING, "chargingState:Charging"),
        (ActivityState.PARKING, "chargingState:SuspendedEV"),
        (ActivityState.PARKING, "chargingState:Idle"),
    ]
    cdr = services.cdr_issue(session_id=session.pk)
    assert (cdr.net, cdr.gross) == (D("12.17"), D("14.48"))


def test_cdr_is_immutable_in_the_database_and_corrected_by_credit(cp, org):
    TariffAssignmentFactory(tariff=issue_example_tariff(org))
    session = start16(cp)
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=11000,
        stopped_at_charger=T0 + 60 * M,
        received_at=T0 + 60 * M,
        reason="EVDisconnected",
    )
    cdr = services.cdr_issue(session_id=session.pk)
    assert cdr.gross == D("4.76")  # (1.00 + 10 x 0.30) x 1.19

    for sql in ("UPDATE tariffs_chargedetailrecord SET gross = 0", "DELETE FROM tariffs_chargedetailrecord"):
        with (
            pytest.raises((InternalError, ProgrammingError, IntegrityError)),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql)
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        cdr.save()
    with pytest.raises(ValidationError):
        cdr.delete()

    credit = services.cdr_credit(cdr=cdr, reason="wrong meter")
    assert (credit.kind, credit.gross, credit.credits_id) == (CdrKind.CREDIT, D("-4.76"), cdr.pk)
    assert cdr_for_session(session) is None
    with pytest.raises(Conflict):
        services.cdr_credit(cdr=cdr, reason="again")
    assert ChargeDetailRecord.objects.get(pk=cdr.pk).gross == D("4.76")  # still there, unchanged


def test_reissue_credits_and_issues_the_next_revision(cp, org):
    TariffAssignmentFactory(tariff=issue_example_tariff(org))
    session = start16(cp)
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=11000,
        stopped_at_charger=T0 + 60 * M,
        received_at=T0 + 60 * M,
        reason="EVDisconnected",
    )
    cdr = services.cdr_issue(session_id=session.pk)
    session.__class__.objects.filter(pk=session.pk).update(meter_stop_wh=21000)  # meter corrected
    credit, new = services.cdr_reissue(cdr=cdr, reason="meter corrected")
    assert (credit.gross, new.revision, new.gross) == (-cdr.gross, 1, D("8.33"))  # (1 + 20 x 0.3) x 1.19
    assert cdr_for_session(session) == new


def test_sweep_issues_complete_and_stale_sessions_only(cp, org, settings):
    TariffAssignmentFactory(tariff=issue_example_tariff(org))
    parked = start16(cp)
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=parked.transaction_ref,
        meter_stop_wh=11000,
        stopped_at_charger=T0 + 60 * M,
        received_at=T0 + 60 * M,
        reason="Local",
    )
    status(cp, "SuspendedEV", T0 + 50 * M)
    assert services.cdr_sweep(now=T0 + 2 * 60 * M) == 0
    settings.CPO_TARIFFS_DEPARTURE_TIMEOUT_H = 24
    assert services.cdr_sweep(now=T0 + 25 * 60 * M) == 1
    cdr = cdr_for_session(parked)
    assert cdr.parking_seconds == 600 and cdr.ended_at == T0 + 60 * M  # parking only until the stop
    assert services.cdr_sweep(now=T0 + 26 * 60 * M) == 0


def test_stop_dispatches_the_cdr_task_on_commit_when_nothing_more_can_change(
    cp, org, no_broker, django_capture_on_commit_callbacks
):
    tariff = TariffFactory(organisation=org)
    TariffElementFactory(tariff=tariff)  # energy only: parking is free, no need to wait for the car
    TariffAssignmentFactory(tariff=tariff)
    session = start16(cp)
    with django_capture_on_commit_callbacks(execute=True):
        session_stop(
            charge_point_id=cp.pk,
            transaction_ref=session.transaction_ref,
            meter_stop_wh=11000,
            stopped_at_charger=T0 + 60 * M,
            received_at=T0 + 60 * M,
            reason="Local",
        )
    assert no_broker == [session.pk]
    from apps.tariffs.tasks import cdr_issue_task

    assert cdr_issue_task.run(session.pk) == cdr_for_session(session).pk


def test_price_summary_for_connectors_is_batched_and_gross(org, django_assert_max_num_queries):
    tariff = issue_example_tariff(org, min_price=D("2.00"), alt_text={"en": "Pay as you go", "de": "Spontan"})
    TariffElementFactory(tariff=tariff, position=2, energy_price=None, time_price=D("1.20"))
    TariffAssignmentFactory(tariff=tariff)
    ids = []
    for _n in range(12):
        charge_point = ChargePointFactory(organisation=org, location=LocationFactory(organisation=org))
        for e in (1, 2):
            ids.append(ConnectorFactory(evse=EvseFactory(charge_point=charge_point, evse_id=e)).pk)
    other = ConnectorFactory().pk  # another operator, no tariff
    with django_assert_max_num_queries(5):
        summaries = price_summary_for_connectors(connector_ids=[*ids, other], at=T0)
    assert set(summaries) == set(ids)
    s = summaries[ids[0]]
    assert isinstance(s, PriceSummary)
    assert s.as_dict() == {
        "currency": "EUR",
        "tariff_id": tariff.pk,
        "energy_per_kwh": "0.3570",
        "time_per_minute": "0.0238",
        "session_fee": "1.19",
        "idle_per_minute": "0.0595",
        "idle_grace_minutes": 120,
        "min_price": "2.38",
        "max_price": None,
        "text": "Pay as you go",
    }
    from django.utils import translation

    with translation.override("de"):
        assert price_summary_for_connectors(connector_ids=ids[:1], at=T0)[ids[0]].text == "Spontan"


def test_price_summary_follows_time_of_day_and_the_driver(org):
    day = TariffFactory(organisation=org, name="day-night")
    TariffElementFactory(
        tariff=day, position=0, energy_price=D("0.20"), start_time=time(22), end_time=time(6)
    )
    TariffElementFactory(tariff=day, position=1, energy_price=D("0.40"))
    TariffAssignmentFactory(tariff=day)
    staff = TariffFactory(organisation=org, name="staff")
    TariffElementFactory(tariff=staff, energy_price=D("0.10"))
    TariffAssignmentFactory(tariff=staff, token_group_id="STAFF")
    connector = ConnectorFactory(evse=EvseFactory(charge_point=ChargePointFactory(organisation=org)))
    night = datetime(2025, 5, 6, 21, 0, tzinfo=UTC)  # 23:00 in Berlin
    assert price_summary_for_connectors(connector_ids=[connector.pk], at=T0)[
        connector.pk
    ].energy_per_kwh == D("0.476")
    assert price_summary_for_connectors(connector_ids=[connector.pk], at=night)[
        connector.pk
    ].energy_per_kwh == D("0.238")
    token = IdTokenFactory(group_id="STAFF")
    assert price_summary_for_connectors(connector_ids=[connector.pk], id_token=token, at=T0)[
        connector.pk
    ].energy_per_kwh == D("0.119")


def test_running_session_cost_grows_with_parking(cp, org, monkeypatch):
    from cpo import clock

    TariffAssignmentFactory(tariff=issue_example_tariff(org))
    session = start16(cp)
    status(cp, "SuspendedEV", T0 + 110 * M)
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=1000 + 31400,
        stopped_at_charger=T0 + 130 * M,
        received_at=T0 + 130 * M,
        reason="Local",
    )
    session.refresh_from_db()
    monkeypatch.setattr(clock, "now", lambda: T0 + 155 * M)
    assert str(session_cost(session=session).gross) == "14.48"
    monkeypatch.setattr(clock, "now", lambda: T0 + 180 * M)
    assert str(session_cost(session=session).net) == "13.42"  # 1.00 + 9.42 + 60 min x 3.00/h


def test_vat_rate_model_validation():
    from django.core.exceptions import ValidationError

    rate = VatRate(country="DE", rate=D(7), valid_from=date(2030, 1, 1), valid_until=date(2029, 1, 1))
    with pytest.raises(ValidationError):
        rate.full_clean()


# --- a session without a tariff is free; receipt numbers per operator --------------------------------


def stop16(cp, session, *, wh=1000 + 31400, at=T0 + 60 * M, reason="Local"):
    session_stop(
        charge_point_id=cp.pk,
        transaction_ref=session.transaction_ref,
        meter_stop_wh=wh,
        stopped_at_charger=at,
        received_at=at,
        reason=reason,
    )


def test_session_without_tariff_gets_a_free_cdr_that_says_why(
    cp, no_broker, django_capture_on_commit_callbacks
):
    session = start16(cp)
    with django_capture_on_commit_callbacks(execute=True):
        stop16(cp, session)
    assert no_broker == [session.pk]  # dispatched at once: nothing can change a free price

    cdr = services.cdr_issue(session_id=session.pk, now=T0 + 61 * M)

    assert cdr is not None and cdr_for_session(session) == cdr
    assert (cdr.kind, cdr.pricing_note, cdr.get_pricing_note_display()) == (
        CdrKind.CDR,
        PricingNote.NO_TARIFF,
        "Free: no tariff in force",
    )
    assert (cdr.tariff_id, cdr.currency, cdr.net, cdr.tax, cdr.gross) == (None, "EUR", 0, 0, 0)
    assert (cdr.energy_wh, cdr.charging_seconds, cdr.parking_seconds) == (31400, 3600, 0)
    assert (cdr.started_at, cdr.stopped_at, cdr.ended_at) == (T0, T0 + 60 * M, T0 + 60 * M)
    assert cdr.breakdown["lines"] == [] and cdr.breakdown["gross"] == "0.00"
    assert cdr.tariff_spec["elements"] == [] and cdr.tariff_spec["time_zone"] == "Europe/Berlin"
    assert session_cost(session=session).gross == D(0)
    assert services.cdr_issue(session_id=session.pk) == cdr  # idempotent
    with (
        pytest.raises((InternalError, ProgrammingError), match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE tariffs_chargedetailrecord SET pricing_note = ''")


def test_free_cdr_uses_the_operators_tariff_currency(cp, org):
    TariffFactory(organisation=org, currency="CHF")  # a tariff of the operator, assigned nowhere
    session = start16(cp)
    stop16(cp, session)

    cdr = services.cdr_issue(session_id=session.pk, now=T0 + 61 * M)

    assert (cdr.currency, cdr.gross, cdr.pricing_note) == ("CHF", 0, PricingNote.NO_TARIFF)


def test_running_session_without_tariff_gets_no_cdr_yet(cp):
    session = start16(cp)

    assert services.cdr_issue(session_id=session.pk) is None
    assert not ChargeDetailRecord.objects.exists()


def test_sweep_issues_free_cdrs_of_sessions_without_tariff(cp, org):
    free = start16(cp)
    stop16(cp, free)
    running = start16(cp, at=T0 + 2 * 60 * M)

    assert services.cdr_sweep(now=T0 + 3 * 60 * M) == 1
    assert cdr_for_session(free).pricing_note == PricingNote.NO_TARIFF
    assert cdr_for_session(running) is None
    assert services.cdr_sweep(now=T0 + 4 * 60 * M) == 0


def test_reissued_free_cdr_stays_free_with_the_corrected_energy(cp):
    session = start16(cp)
    stop16(cp, session)
    cdr = services.cdr_issue(session_id=session.pk, now=T0 + 61 * M)
    session.__class__.objects.filter(pk=session.pk).update(meter_stop_wh=21000)  # meter corrected

    credit, new = services.cdr_reissue(cdr=cdr, reason="meter corrected")

    assert (credit.gross, credit.pricing_note) == (0, PricingNote.NO_TARIFF)
    assert (new.revision, new.gross, new.energy_wh, new.pricing_note) == (1, 0, 20000, PricingNote.NO_TARIFF)


def test_receipt_numbers_count_per_operator_and_year(cp, org, monkeypatch):
    from cpo import clock

    org.invoice_prefix = "ALPHA"
    org.save()
    other = ChargePointFactory(
        organisation=OrganisationFactory(invoice_prefix="BETA"), location=LocationFactory(country="DE")
    )
    ConnectorFactory(evse=EvseFactory(charge_point=other, evse_id=1))
    issued = []
    for charge_point, at in ((cp, T0), (other, T0), (cp, T0 + 24 * 60 * M)):
        session = start16(charge_point, at=at)
        stop16(charge_point, session, at=at + 60 * M)
        issued.append(services.cdr_issue(session_id=session.pk, now=at + 61 * M))
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 1, 2, 9, 0, tzinfo=UTC))
    credit, reissued = services.cdr_reissue(cdr=issued[0], reason="checked")

    assert [c.number for c in issued] == ["ALPHA-2025-000001", "BETA-2025-000001", "ALPHA-2025-000002"]
    # the credit note and the corrected record are documents of their own, numbered in their year
    assert (credit.number, reissued.number) == ("ALPHA-2026-000001", "ALPHA-2026-000002")
    assert dict(ReceiptCounter.objects.filter(organisation=org).values_list("year", "last_number")) == {
        2025: 2,
        2026: 2,
    }


def test_receipt_number_rolls_back_with_the_record(cp, org):
    org.invoice_prefix = "ALPHA"
    org.save()
    session = start16(cp)
    stop16(cp, session)

    with pytest.raises(RuntimeError), transaction.atomic():
        services.receipt_number_next(organisation_id=org.pk, at=T0)
        raise RuntimeError("the issue failed")

    assert services.cdr_issue(session_id=session.pk, now=T0 + 61 * M).number == "ALPHA-2025-000001"


def test_migration_numbers_records_issued_before_numbers_existed(cp, org):
    import importlib

    from django.apps import apps as django_apps

    migration = importlib.import_module("apps.tariffs.migrations.0005_receipt_numbers_for_issued_records")
    org.invoice_prefix = "ALPHA"
    org.save()
    old = []
    for day in (2, 1, 3):  # issued out of pk order
        session = start16(cp, at=T0 + day * 24 * 60 * M)
        stop16(cp, session, at=T0 + day * 24 * 60 * M + 60 * M)
        old.append(ChargeDetailRecordFactory(session=session, issued_at=T0 + day * 24 * 60 * M + 61 * M))
    assert {c.number for c in old} == {""}

    with connection.schema_editor(atomic=False) as editor:
        migration.number_issued_records(django_apps, editor)

    numbers = [ChargeDetailRecord.objects.get(pk=c.pk).number for c in old]
    assert numbers == ["ALPHA-2025-000002", "ALPHA-2025-000001", "ALPHA-2025-000003"]
    with (
        pytest.raises((InternalError, ProgrammingError), match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE tariffs_chargedetailrecord SET number = ''")  # immutable again afterwards
    fresh = start16(cp, at=T0 + 5 * 24 * 60 * M)
    stop16(cp, fresh, at=T0 + 5 * 24 * 60 * M + 60 * M)
    assert services.cdr_issue(session_id=fresh.pk, now=T0 + 6 * 24 * 60 * M).number == "ALPHA-2025-000004"


@pytest.mark.django_db(transaction=True)
def test_concurrent_issues_wait_for_the_counter_and_get_consecutive_numbers():
    import threading
    import time as systime

    org = OrganisationFactory(invoice_prefix="LOCK")
    first_holds, release = threading.Event(), threading.Event()
    numbers: dict[str, str] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                numbers["first"] = services.receipt_number_next(organisation_id=org.pk, at=T0)
                first_holds.set()
                release.wait(30)
        finally:
            connection.close()

    def second() -> None:
        try:
            with transaction.atomic():
                numbers["second"] = services.receipt_number_next(organisation_id=org.pk, at=T0)
        finally:
            connection.close()

    a = threading.Thread(target=first)
    a.start()
    try:
        assert first_holds.wait(30)
        b = threading.Thread(target=second)
        b.start()
        deadline = systime.monotonic() + 30
        waiting = False
        while not waiting and systime.monotonic() < deadline:  # until the second waits for the row lock
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                waiting = cursor.fetchone()[0] > 0
            systime.sleep(0.05)
        assert waiting and "second" not in numbers
    finally:
        release.set()
        a.join(30)
    b.join(30)
    assert numbers == {"first": "LOCK-2025-000001", "second": "LOCK-2025-000002"}
