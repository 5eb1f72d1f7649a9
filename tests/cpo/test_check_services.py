"""`manage.py check_services` (run by `make run` before migrating) names the part that does not answer,
its environment variable and its URL with the password masked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from tests.processes import ROOT, database_url, free_port

pytestmark = pytest.mark.slow


def check_services(**env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DJANGO_SECRET_KEY": "check-services-test-" + "k" * 40,
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check_services", "--timeout", "2"],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.django_db
def test_all_parts_answer():
    result = check_services(DATABASE_URL=database_url(connection.settings_dict), REDIS_URL=settings.REDIS_URL)

    assert result.returncode == 0, result.stderr
    assert "database: ok" in result.stdout
    assert "channel_layer: ok" in result.stdout
    assert "broker: ok" in result.stdout


def test_database_down_is_named_with_its_variable_and_a_masked_url():
    port = free_port()
    result = check_services(
        DATABASE_URL=f"postgis://cpo:hunter2-secret@127.0.0.1:{port}/cpo", REDIS_URL=settings.REDIS_URL
    )

    assert result.returncode != 0
    assert "database: error" in result.stderr
    assert f"DATABASE_URL=postgis://cpo:***@127.0.0.1:{port}/cpo" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout
    assert "channel_layer: ok" in result.stdout
    assert "broker: ok" in result.stdout


def test_redis_down_names_channel_layer_and_broker():
    port = free_port()
    result = check_services(
        DATABASE_URL=f"postgis://127.0.0.1:{free_port()}/cpo", REDIS_URL=f"redis://127.0.0.1:{port}/0"
    )

    assert result.returncode != 0
    assert "channel_layer: error" in result.stderr
    assert "broker: error" in result.stderr
    assert f"REDIS_URL=redis://127.0.0.1:{port}/0" in result.stderr
