"""The deployment files in deploy/: the systemd units pass ``systemd-analyze verify`` (where it is
installed), every role has its unit, and the units run what the project really has."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.no_db

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ROLES = {"web", "smtp", "worker-processing", "worker-delivery", "worker-webhooks", "beat"}


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def test_every_role_has_a_unit():
    names = {path.stem.removeprefix("postmark-") for path in UNITS}
    assert ROLES | {"migrate"} == names


def test_workers_take_their_own_queues_and_beat_is_alone():
    queues = {}
    for path in UNITS:
        command = unit(path)["Service"]["ExecStart"]
        if " worker " in command:
            queues[path.stem] = command.split(" -Q ", 1)[1].split()[0].split(",")
        assert "-B" not in command.split(), "beat runs in its own unit, once"
    assert queues == {
        "postmark-worker-delivery": ["delivery"],
        "postmark-worker-processing": ["processing", "celery"],
        "postmark-worker-webhooks": ["webhooks"],
    }
    from django.conf import settings

    assert {q for names in queues.values() for q in names} == set(settings.CELERY_TASK_QUEUES)


def test_the_env_template_names_only_real_settings():
    from django.conf import settings

    names = [
        line.split("=", 1)[0]
        for line in (DEPLOY / "postmark.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    gunicorn_only = {"WEB_BIND", "WEB_WORKERS", "WEB_THREADS", "WEB_TIMEOUT"}
    read_by_settings = {"DATABASE_URL", "TRUST_X_FORWARDED_PROTO", "CELERY_BROKER_URL"}
    for name in names:
        assert hasattr(settings, name) or name in gunicorn_only | read_by_settings, name


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_units(tmp_path):
    """Verified as installed: /opt/postmark is this checkout, its virtualenv the running one."""
    venv_bin = str(Path(sys.executable).parent)
    for path in UNITS:
        text = path.read_text()
        text = text.replace("/opt/postmark/.venv/bin", venv_bin).replace("/opt/postmark", str(ROOT))
        (tmp_path / path.name).write_text(text)
    env_dir = tmp_path / "etc"
    env_dir.mkdir()
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            *sorted(str(p) for p in tmp_path.glob("*.service")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Only problems in our units count (the host's own units may have warnings of their own).
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "postmark-" in line and "/etc/postmark/postmark.env" not in line
    ]
    assert not ours, "\n".join(ours)
