"""`manage.py partitions`: the monthly partitions of the message log and meter samples (cpo.partitions).

manage.py partitions                  list each table's partitions: range and estimated rows
manage.py partitions --maintain       create the next months' partitions and apply the retention now
                                      (what the hourly `cpo.partitions_maintain` task does)
manage.py partitions --table charging_metersample [--maintain]
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cpo import partitions


class Command(BaseCommand):
    help = "Show the monthly partitions of the partitioned tables; --maintain creates and drops them now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--table", help="only this table (default: every partitioned table)")
        parser.add_argument(
            "--maintain",
            action="store_true",
            help="create this month's and the next months' partitions and drop those past the retention",
        )

    def handle(self, *args: Any, table: str | None, maintain: bool, **options: Any) -> None:
        try:
            specs = [partitions.registered_table(table)] if table else partitions.registered()
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        for spec in specs:
            if not partitions.is_partitioned(spec.table):
                raise CommandError(f"{spec.table} is not partitioned in this database: run manage.py migrate")
            try:
                days = partitions.retention_days_checked(spec)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            retention = f"{days} days" if days else "forever"
            self.stdout.write(f"{spec.table} (by month of {spec.column}, kept {retention})")
            if maintain:
                report = partitions.partitions_maintain(spec=spec)
                self.stdout.write(
                    f"  created: {', '.join(report.created) or '-'}"
                    f" (rows moved from default: {report.moved_from_default})"
                )
                self.stdout.write(
                    f"  dropped: {', '.join(report.dropped) or '-'}"
                    f" (expired rows deleted from default: {report.deleted_from_default})"
                )
            for partition in partitions.partitions_list(spec.table):
                if partition.is_default:
                    span = "default (rows of no other partition)"
                else:
                    assert partition.start is not None and partition.end is not None
                    span = f"{partition.start:%Y-%m-%d} .. {partition.end:%Y-%m-%d}"
                rows = "not analysed" if partition.rows_estimate < 0 else f"~{partition.rows_estimate} rows"
                self.stdout.write(f"  {partition.name:<40} {span:<40} {rows}")
