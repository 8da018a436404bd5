"""Recount the stats API's daily roll-ups from the raw rows, further back than the periodic
recount does (after a processing backlog of more than a day, or once after an upgrade)."""

from datetime import timedelta

from django.core.management.base import BaseCommand

from stats.rollup import recount, today


class Command(BaseCommand):
    help = "Recount the stats roll-ups of the last N US Eastern days (today included)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=45, help="Days to recount (default 45).")

    def handle(self, *args, days, **options):
        last = today()
        written = recount(last - timedelta(days=max(1, days) - 1), last)
        self.stdout.write(f"Recounted {max(1, days)} days: {written} roll-up rows.")
