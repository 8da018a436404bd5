"""One way to write a time in the admin, with its zone: ``2026-12-07 14:03:12 UTC`` (TIME_ZONE
decides the zone; templates write ``|date:"DATETIME_FORMAT"``, Python ``core.times.admin_time``)."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
TIME_FORMAT = "H:i:s"
MONTH_DAY_FORMAT = "F j"
YEAR_MONTH_FORMAT = "F Y"
FIRST_DAY_OF_WEEK = 1
