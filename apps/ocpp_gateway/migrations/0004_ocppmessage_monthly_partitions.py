"""The OCPP message log becomes a table partitioned by month on `at` (cpo.partitions): retention drops
whole months instead of deleting rows, and queries bounded in time read only their months.

The database's primary key becomes (id, at) (PostgreSQL requires the partition column in every unique
key); Django's model state is not changed (`id` stays the model's primary key and is still unique: one
identity sequence), hence SeparateDatabaseAndState with no state operations. Existing rows are copied
into the new table in this migration (one pass; plan a maintenance window for a very large log)."""

from django.db import migrations

from cpo import partitions

TABLE = "ocpp_gateway_ocppmessage"


def forwards(apps, schema_editor):
    partitions.partitioned_table_create(schema_editor, table=TABLE, column="at")


def backwards(apps, schema_editor):
    partitions.partitioned_table_revert(schema_editor, table=TABLE)


class Migration(migrations.Migration):
    dependencies = [("ocpp_gateway", "0003_files_and_local_lists")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)], state_operations=[]
        )
    ]
