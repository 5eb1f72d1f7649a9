"""Meter samples become a table partitioned by month on `sampled_at` (cpo.partitions).

Why `sampled_at` (the charger's clock) and not `received_at` (ours): the unique constraint that makes a
replayed MeterValues harmless (`metersample_natural_key`, ON CONFLICT DO NOTHING) must include the
partition column, and it already includes `sampled_at`; a replay carries the same `sampled_at` but a new
`received_at`, so keying on `received_at` would store every replayed sample twice. Readers ask for a
session's samples by the time they were taken. A charger whose clock is far off puts its samples into the
DEFAULT partition, where they are still found (every query that is not bounded to months with
partitions reads DEFAULT too).

The database's primary key becomes (id, sampled_at); Django's model state keeps `id` (still unique: one
identity sequence), hence SeparateDatabaseAndState with no state operations. Existing rows are copied
into the new table here (one pass)."""

from django.db import migrations

from cpo import partitions

TABLE = "charging_metersample"


def forwards(apps, schema_editor):
    partitions.partitioned_table_create(schema_editor, table=TABLE, column="sampled_at")


def backwards(apps, schema_editor):
    partitions.partitioned_table_revert(schema_editor, table=TABLE)


class Migration(migrations.Migration):
    dependencies = [("charging", "0007_session_reconciliation")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)], state_operations=[]
        )
    ]
