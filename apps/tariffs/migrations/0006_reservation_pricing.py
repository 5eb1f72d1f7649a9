import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Reservations priced (OCPI reservation restrictions): the reservation a session started on, kept
    with its tariff snapshot, and records of their own for reservations no charge followed."""

    dependencies = [
        ("charging", "0007_session_reconciliation"),
        ("tariffs", "0005_receipt_numbers_for_issued_records"),
    ]

    operations = [
        migrations.AddField(
            model_name="sessiontariff",
            name="reservation_started_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="reserved from"),
        ),
        migrations.AddField(
            model_name="sessiontariff",
            name="reservation_ended_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="reserved until"),
        ),
        migrations.AddField(
            model_name="chargedetailrecord",
            name="reservation_ref",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="The reservation this record prices, when no charge followed it.",
                null=True,
                verbose_name="reservation",
            ),
        ),
        migrations.AlterField(
            model_name="chargedetailrecord",
            name="session",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="charge_detail_records",
                to="charging.chargingsession",
                verbose_name="charging session",
            ),
        ),
        migrations.AddConstraint(
            model_name="chargedetailrecord",
            constraint=models.UniqueConstraint(
                condition=models.Q(("session__isnull", True)),
                fields=("reservation_ref", "kind", "revision"),
                name="cdr_unique_reservation_revision",
            ),
        ),
        migrations.AddConstraint(
            model_name="chargedetailrecord",
            constraint=models.CheckConstraint(
                condition=models.Q(("session__isnull", False), ("reservation_ref__isnull", False), _connector="OR"),
                name="cdr_of_session_or_reservation",
            ),
        ),
    ]
