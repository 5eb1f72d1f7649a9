import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """A payment of a charge detail record of its own (a reservation's fee: no driver session)."""

    dependencies = [
        ("billing", "0005_invoices_and_credit_notes"),
        ("tariffs", "0006_reservation_pricing"),
    ]

    operations = [
        migrations.AddField(
            model_name="payment",
            name="cdr",
            field=models.OneToOneField(
                blank=True,
                help_text="The record this payment pays when it is no session's (a reservation's fee).",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="own_payment",
                to="tariffs.chargedetailrecord",
                verbose_name="charge detail record",
            ),
        ),
    ]
