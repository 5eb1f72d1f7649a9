from django.db import migrations

# OCPP 1.6 transactionId is an int32 the Central System assigns. A sequence never hands out a value
# twice, survives restarts and never resets; NO CYCLE makes exhaustion an error, not a silent reuse.
FORWARD = (
    "CREATE SEQUENCE IF NOT EXISTS charging_ocpp16_transaction_id_seq "
    "AS integer MINVALUE 1 MAXVALUE 2147483647 START 1 NO CYCLE;"
)
BACKWARD = "DROP SEQUENCE IF EXISTS charging_ocpp16_transaction_id_seq;"


class Migration(migrations.Migration):
    dependencies = [("charging", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
