"""Times in the admin: one format with the zone, in the TIME_ZONE setting's zone."""

from datetime import UTC, datetime

import pytest
from django.template import Context, Template

from core.times import admin_time

WHEN = datetime(2026, 12, 7, 14, 3, 12, tzinfo=UTC)


def test_utc_by_default():
    assert admin_time(WHEN) == "2026-12-07 14:03:12 UTC"
    assert admin_time(None) == "" and admin_time(None, "never") == "never"


def test_templates_write_the_same():
    template = Template('{{ when|date:"DATETIME_FORMAT" }} / {{ when }}')
    assert template.render(Context({"when": WHEN})) == (
        "2026-12-07 14:03:12 UTC / 2026-12-07 14:03:12 UTC"
    )


@pytest.mark.parametrize(
    "zone, expected",
    [("Europe/Berlin", "2026-12-07 15:03:12 CET"), ("America/New_York", "2026-12-07 09:03:12 EST")],
)
def test_time_zone_setting_moves_the_clock_and_names_the_zone(settings, zone, expected):
    settings.TIME_ZONE = zone
    assert admin_time(WHEN) == expected


def test_time_zone_comes_from_the_environment(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import django; django.setup(); from django.conf import settings; "
        "from core.times import admin_time; from datetime import datetime, UTC; "
        "print(settings.TIME_ZONE, admin_time(datetime(2026, 7, 1, 12, tzinfo=UTC)))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "postmark_site.settings",
           "DATA_DIR": str(tmp_path), "TIME_ZONE": "Europe/Berlin"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.strip() == "Europe/Berlin 2026-07-01 14:00:00 CEST"
    env["TIME_ZONE"] = ""  # empty: the default
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.strip() == "UTC 2026-07-01 12:00:00 UTC"
