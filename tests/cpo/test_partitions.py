"""Monthly partitions of the message log and meter samples (cpo.partitions): the tables are partitioned
after migrate, rows land in their month (or DEFAULT), maintenance creates months ahead (moving rows out
of DEFAULT), retention drops whole months and nothing newer, and queries bounded in time read only their
months (the plan says so)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.test import override_settings
from django.urls import reverse

from apps.charging.metering import Sample
from apps.charging.models import MeterSample
from apps.charging.services import meter_samples_record
from apps.ocpp_gateway.models import OcppMessage
from cpo import clock, partitions
from cpo.tasks import partitions_maintain_task
from tests.factories import ChargePointFactory, MeterSampleFactory, OcppMessageFactory

pytestmark = pytest.mark.django_db

LOG = OcppMessage._meta.db_table
SAMPLES = MeterSample._meta.db_table


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def partition_of(model, pk: int) -> str:
    with connection.cursor() as cursor:
        table = model._meta.db_table
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def names(table: str) -> list[str]:
    return [p.name for p in partitions.partitions_list(table)]


def committed_like() -> None:
    """Run the foreign key checks deferred so far, as a commit would: the test's transaction stands in for
    the rows' own committed transactions, and PostgreSQL does not drop a table with checks pending."""
    connection.check_constraints()


def ensure(table: str, column: str, *months: str) -> None:
    for month in months:
        partitions.partition_month_ensure(table=table, column=column, month=at(month))


# --- after migrate ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "column"), [(LOG, "at"), (SAMPLES, "sampled_at")])
def test_tables_are_partitioned_by_month_after_migrate(table, column):
    assert partitions.is_partitioned(table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_partkeydef(to_regclass(%s))", [table])
        assert cursor.fetchone()[0] == f"RANGE ({column})"
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(%s)"
            " AND contype = 'p'",
            [table],
        )
        assert cursor.fetchone()[0] == f"PRIMARY KEY (id, {column})"
    this_month = partitions.month_start(clock.now())
    expected = [partitions.partition_name(table, partitions.month_add(this_month, n)) for n in range(3)]
    found = names(table)
    assert set(expected) <= set(found)
    assert found[-1] == partitions.default_partition_name(table)
    assert partitions.registered_table(table).column == column


def test_model_keeps_id_as_its_primary_key_and_ids_stay_unique():
    first, second = OcppMessageFactory(at=clock.now()), OcppMessageFactory(at=at("1990-01-01"))
    assert OcppMessage._meta.pk.name == "id"
    assert first.pk != second.pk
    assert OcppMessage.objects.get(pk=second.pk).at == at("1990-01-01")


# --- where rows land --------------------------------------------------------------------------------


def test_rows_land_in_their_month_partition_or_default():
    now = clock.now()
    current = partitions.partition_name(LOG, partitions.month_start(now))
    message = OcppMessageFactory(at=now)
    stray = OcppMessageFactory(at=at("1970-01-01 00:00:01"))  # a charger clock never set
    assert partition_of(OcppMessage, message.pk) == current
    assert partition_of(OcppMessage, stray.pk) == partitions.default_partition_name(LOG)

    sample = MeterSampleFactory(sampled_at=now)
    far = MeterSampleFactory(sampled_at=at("2099-05-01"))
    assert partition_of(MeterSample, sample.pk) == partitions.partition_name(
        SAMPLES, partitions.month_start(now)
    )
    assert partition_of(MeterSample, far.pk) == partitions.default_partition_name(SAMPLES)


def test_a_replayed_meter_value_is_stored_once_in_its_partition():
    """The dedup key includes the partition column: a replay (same sampled_at, later received_at) adds
    nothing, whether the month has its partition or the sample went to DEFAULT."""
    cp = ChargePointFactory()
    samples = [
        Sample(
            sampled_at=when,
            measurand="Energy.Active.Import.Register",
            phase="",
            location="Outlet",
            context="Sample.Periodic",
            unit="Wh",
            value=Decimal(1000),
            raw_value="1000",
            raw_unit="Wh",
            signed_data="",
        )
        for when in (clock.now(), at("1980-02-03 04:05:06"))
    ]
    for received_at in (clock.now(), clock.now() + timedelta(minutes=5)):
        meter_samples_record(
            charge_point_id=cp.pk, evse_id=1, session=None, samples=samples, received_at=received_at
        )
    assert MeterSample.objects.filter(charge_point=cp).count() == 2


# --- maintenance ------------------------------------------------------------------------------------


def test_a_new_month_partition_takes_its_rows_out_of_default():
    early = OcppMessageFactory(at=at("2031-02-10 12:00"))
    other_month = OcppMessageFactory(at=at("2031-03-01"))
    default = partitions.default_partition_name(LOG)
    assert partition_of(OcppMessage, early.pk) == default

    created, moved = partitions.partition_month_ensure(table=LOG, column="at", month=at("2031-02-17"))

    assert (created, moved) == (f"{LOG}_p203102", 1)
    assert partition_of(OcppMessage, early.pk) == f"{LOG}_p203102"
    assert OcppMessage.objects.get(pk=early.pk).frame == early.frame
    assert partition_of(OcppMessage, other_month.pk) == default  # not its month
    later = OcppMessageFactory(at=at("2031-02-28 23:59:59"))
    assert partition_of(OcppMessage, later.pk) == f"{LOG}_p203102"
    # Asking again changes nothing.
    assert partitions.partition_month_ensure(table=LOG, column="at", month=at("2031-02-01")) == (None, 0)


@override_settings(CPO_OCPP_MESSAGE_LOG_DAYS=45)
def test_retention_drops_whole_expired_months_and_nothing_newer():
    ensure(LOG, "at", "2031-03-01", "2031-04-01", "2031-05-01")
    march = OcppMessageFactory(at=at("2031-03-31 23:59"))
    april = OcppMessageFactory(at=at("2031-04-30 23:59:59"))
    may = OcppMessageFactory(at=at("2031-05-01"))
    ancient = OcppMessageFactory(at=at("1990-01-01"))  # in DEFAULT, expired
    future = OcppMessageFactory(at=at("2040-01-01"))  # in DEFAULT, not expired
    now = at("2031-06-15 08:00")  # cutoff: 2031-05-01 08:00

    committed_like()
    report = partitions.partitions_maintain(spec=partitions.registered_table(LOG), now=now)

    assert report.created == [f"{LOG}_p203106", f"{LOG}_p203107", f"{LOG}_p203108"]
    assert {f"{LOG}_p203103", f"{LOG}_p203104"} <= set(report.dropped)
    assert f"{LOG}_p203105" not in report.dropped
    assert all(name < f"{LOG}_p203105" for name in report.dropped)
    assert report.deleted_from_default == 1
    remaining = set(OcppMessage.objects.values_list("pk", flat=True))
    assert remaining == {may.pk, future.pk}
    assert not {march.pk, april.pk, ancient.pk} & remaining
    assert f"{LOG}_p203105" in names(LOG) and f"{LOG}_p203104" not in names(LOG)


def test_meter_samples_are_kept_forever_by_default():
    ensure(SAMPLES, "sampled_at", "2020-01-01")
    old = MeterSampleFactory(sampled_at=at("2020-01-15"))
    stray = MeterSampleFactory(sampled_at=at("1970-01-01"))

    committed_like()
    report = partitions.partitions_maintain(spec=partitions.registered_table(SAMPLES))

    assert (report.dropped, report.deleted_from_default) == ([], 0)
    assert set(MeterSample.objects.values_list("pk", flat=True)) == {old.pk, stray.pk}


@override_settings(CPO_METER_SAMPLES_RETENTION_DAYS=1200)
def test_meter_sample_retention_when_set():
    ensure(SAMPLES, "sampled_at", "2020-01-01")
    old = MeterSampleFactory(sampled_at=at("2020-01-15"))
    kept = MeterSampleFactory(sampled_at=clock.now())

    committed_like()
    report = partitions.partitions_maintain(spec=partitions.registered_table(SAMPLES))

    assert f"{SAMPLES}_p202001" in report.dropped
    assert set(MeterSample.objects.values_list("pk", flat=True)) == {kept.pk}
    assert not MeterSample.objects.filter(pk=old.pk).exists()


@override_settings(CPO_METER_SAMPLES_RETENTION_DAYS=-1)
def test_a_negative_retention_is_refused_with_the_table_named():
    ensure(SAMPLES, "sampled_at", "2020-01-01")
    sample = MeterSampleFactory(sampled_at=at("2020-01-15"))
    committed_like()
    with pytest.raises(ValueError, match="charging_metersample: retention must be 0"):
        partitions.partitions_maintain(spec=partitions.registered_table(SAMPLES))
    with pytest.raises(CommandError, match="retention must be 0"):
        call_command("partitions", "--table", SAMPLES, "--maintain", stdout=StringIO())
    assert MeterSample.objects.filter(pk=sample.pk).exists()


def test_the_hourly_task_maintains_every_registered_table():
    reports = partitions_maintain_task()
    assert [r["table"] for r in reports] == [SAMPLES, LOG]
    assert all(
        set(r) == {"table", "created", "moved_from_default", "dropped", "deleted_from_default", "error"}
        for r in reports
    )
    assert [r["error"] for r in reports] == ["", ""]


def test_maintenance_gives_up_on_a_locked_table_and_goes_on_with_the_others(monkeypatch):
    """A long query holding the message log: creating its partition waits at most LOCK_TIMEOUT (writers
    would queue behind it), the meter samples are still maintained, the next run tries again."""
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {LOG} IN ACCESS SHARE MODE")
        reports = {r.table: r for r in partitions.partitions_maintain_all(now=at("2031-06-15"))}
    finally:
        other.rollback()
        other.close()

    assert "lock timeout" in reports[LOG].error and reports[LOG].created == []
    assert f"{LOG}_p203106" not in names(LOG)
    assert reports[SAMPLES].created == [f"{SAMPLES}_p203106", f"{SAMPLES}_p203107", f"{SAMPLES}_p203108"]
    assert reports[SAMPLES].error == ""
    # Lock released: the next run creates the month.
    assert partitions.partitions_maintain(spec=partitions.registered_table(LOG), now=at("2031-06-15")).created


# --- queries prune partitions -----------------------------------------------------------------------


def test_a_query_bounded_in_time_reads_only_its_months():
    ensure(LOG, "at", "2031-01-01", "2031-02-01", "2031-03-01")
    cp = ChargePointFactory()
    for when in ("2031-01-20", "2031-02-10", "2031-03-05", "1999-01-01"):
        OcppMessageFactory(charge_point=cp, at=at(when))

    february = OcppMessage.objects.filter(at__gte=at("2031-02-03"), at__lt=at("2031-02-20"))
    plan = february.explain()
    assert f"{LOG}_p203102" in plan
    for other in ("p203101", "p203103", "default"):
        assert f"{LOG}_{other}" not in plan
    assert february.count() == 1

    # The admin's per-charger view over two months.
    two_months = OcppMessage.objects.filter(
        charge_point=cp, at__gte=at("2031-01-01"), at__lt=at("2031-03-01")
    ).order_by("-at")
    plan = two_months.explain()
    assert f"{LOG}_p203101" in plan and f"{LOG}_p203102" in plan
    assert f"{LOG}_p203103" not in plan and f"{LOG}_default" not in plan
    assert len(two_months) == 2


def test_a_meter_sample_query_bounded_in_time_reads_only_its_months():
    ensure(SAMPLES, "sampled_at", "2031-01-01", "2031-02-01")
    MeterSampleFactory(sampled_at=at("2031-01-15"))
    plan = MeterSample.objects.filter(
        sampled_at__gte=at("2031-01-10"), sampled_at__lt=at("2031-01-20")
    ).explain()
    assert f"{SAMPLES}_p203101" in plan
    assert f"{SAMPLES}_p203102" not in plan and f"{SAMPLES}_default" not in plan


# --- manage.py partitions ---------------------------------------------------------------------------


def test_command_lists_partitions_and_maintains_on_request():
    OcppMessageFactory(at=at("1990-01-01"))
    out = StringIO()
    call_command("partitions", stdout=out)
    text = out.getvalue()
    assert f"{LOG} (by month of at, kept 30 days)" in text
    assert f"{SAMPLES} (by month of sampled_at, kept forever)" in text
    assert f"{LOG}_default" in text and "default (rows of no other partition)" in text

    out = StringIO()
    committed_like()
    call_command("partitions", "--table", LOG, "--maintain", stdout=out)
    assert "expired rows deleted from default: 1" in out.getvalue()
    assert SAMPLES not in out.getvalue()
    assert not OcppMessage.objects.exists()


def test_command_names_the_known_tables_for_an_unknown_one():
    with pytest.raises(
        CommandError, match=f"'nope' is not a partitioned table \\(registered: {SAMPLES}, {LOG}\\)"
    ):
        call_command("partitions", "--table", "nope", stdout=StringIO())


# --- the conversion the migrations use, and back --------------------------------------------------


def test_a_plain_table_is_converted_with_its_rows_keys_and_indexes_and_back():
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE part_probe (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " cp bigint NOT NULL REFERENCES stations_chargepoint(id) DEFERRABLE INITIALLY DEFERRED,"
            " at timestamptz NOT NULL, n int CHECK (n >= 0),"
            " CONSTRAINT part_probe_key UNIQUE (cp, at))"
        )
        cursor.execute("CREATE INDEX part_probe_n ON part_probe (n)")
        cp = ChargePointFactory()
        cursor.execute(
            "INSERT INTO part_probe (cp, at, n) VALUES (%s, %s, 1), (%s, %s, 2)",
            [cp.pk, clock.now(), cp.pk, at("1990-01-01")],
        )

        committed_like()
        partitions.partitioned_table_create(connection.schema_editor(), table="part_probe", column="at")

        assert partitions.is_partitioned("part_probe")
        assert names("part_probe")[-1] == "part_probe_default"
        cursor.execute("SELECT id, tableoid::regclass::text FROM part_probe ORDER BY id")
        assert [row[1] for row in cursor.fetchall()] == [
            partitions.partition_name("part_probe", partitions.month_start(clock.now())),
            "part_probe_default",
        ]
        cursor.execute(
            "INSERT INTO part_probe (cp, at, n) VALUES (%s, %s, 3) RETURNING id", [cp.pk, clock.now()]
        )
        assert cursor.fetchone()[0] == 3  # the identity goes on where it was
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'part_probe'::regclass ORDER BY conname"
        )
        constraints = dict(cursor.fetchall())
        assert constraints["part_probe_pkey"] == "PRIMARY KEY (id, at)"
        assert constraints["part_probe_key"] == "UNIQUE (cp, at)"
        assert any(
            d.startswith("FOREIGN KEY (cp) REFERENCES stations_chargepoint(id)") for d in constraints.values()
        )
        assert any(d == "CHECK ((n >= 0))" for d in constraints.values())
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'part_probe'")
        assert "part_probe_n" in {row[0] for row in cursor.fetchall()}

        committed_like()
        partitions.partitioned_table_revert(connection.schema_editor(), table="part_probe")

        assert not partitions.is_partitioned("part_probe")
        cursor.execute("SELECT count(*) FROM part_probe")
        assert cursor.fetchone()[0] == 3
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'part_probe'::regclass"
            " AND contype = 'p'"
        )
        assert cursor.fetchone()[0] == "PRIMARY KEY (id)"
        cursor.execute(
            "INSERT INTO part_probe (cp, at, n) VALUES (%s, %s, 4) RETURNING id", [cp.pk, clock.now()]
        )
        assert cursor.fetchone()[0] == 4


# --- the admin reads the partitioned tables ---------------------------------------------------------


def test_admin_message_log_and_meter_samples_pages_work(client, superuser):
    cp = ChargePointFactory()
    now = clock.now()
    this_month = OcppMessageFactory(charge_point=cp, at=now, action="Heartbeat")
    old = OcppMessageFactory(charge_point=cp, at=now - timedelta(days=62), action="BootNotification")
    sample = MeterSampleFactory(charge_point=cp, sampled_at=at("1985-01-01"))
    client.force_login(superuser)

    listing = client.get(reverse("admin:ocpp_gateway_ocppmessage_changelist"))
    assert listing.status_code == 200
    assert this_month.unique_id in listing.text and old.unique_id in listing.text
    start = partitions.month_start(now)
    filtered = client.get(
        reverse("admin:ocpp_gateway_ocppmessage_changelist"),
        {"at__gte": start.isoformat(), "at__lt": partitions.month_add(start, 1).isoformat()},
    )
    assert filtered.status_code == 200
    assert this_month.unique_id in filtered.text and old.unique_id not in filtered.text
    page = client.get(reverse("admin:ocpp_gateway_ocppmessage_change", args=[old.pk]))
    assert page.status_code == 200 and "BootNotification" in page.text

    samples = client.get(reverse("admin:charging_metersample_changelist"))
    assert samples.status_code == 200
    assert client.get(reverse("admin:charging_metersample_change", args=[sample.pk])).status_code == 200


def test_a_meter_sample_moved_out_of_default_is_still_deduplicated():
    """The moved month gets the table's unique key on ATTACH: replaying the sample after the move adds
    nothing."""
    cp = ChargePointFactory()
    sample = Sample(
        sampled_at=at("2031-02-10 10:00"), measurand="Power.Active.Import", unit="W", value=Decimal(7000)
    )
    meter_samples_record(
        charge_point_id=cp.pk, evse_id=1, session=None, samples=[sample], received_at=clock.now()
    )
    (stored,) = MeterSample.objects.filter(charge_point=cp)
    assert partition_of(MeterSample, stored.pk) == f"{SAMPLES}_default"

    assert partitions.partition_month_ensure(table=SAMPLES, column="sampled_at", month=at("2031-02-01")) == (
        f"{SAMPLES}_p203102",
        1,
    )
    meter_samples_record(
        charge_point_id=cp.pk, evse_id=1, session=None, samples=[sample], received_at=clock.now()
    )

    assert list(MeterSample.objects.filter(charge_point=cp).values_list("pk", flat=True)) == [stored.pk]
    assert partition_of(MeterSample, stored.pk) == f"{SAMPLES}_p203102"
