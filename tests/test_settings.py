"""The settings switch: servers come from DATABASE_URL / REDIS_URL / CACHE_URL, loopback defaults when
nothing is set, and a clear error naming the variable for anything malformed or missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.settings.services import (
    DEFAULT_REDIS_URL,
    channel_layer_settings,
    database_settings,
    mask_url,
    redis_url,
)

ROOT = Path(__file__).resolve().parent.parent
SERVER_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "CACHE_URL",
    "DJANGO_SECRET_KEY",
    "DJANGO_SETTINGS_MODULE",
    "CPO_VAR_DIR",
)


# --- database_settings ---------------------------------------------------------------------------


def test_nothing_set_uses_postgis_on_loopback():
    db = database_settings({})

    assert db["ENGINE"] == "django.contrib.gis.db.backends.postgis"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"], db["PASSWORD"]) == (
        "127.0.0.1",
        5432,
        "cpo",
        "postgres",
        "",
    )
    assert db["OPTIONS"]["connect_timeout"] == 5


@pytest.mark.parametrize("scheme", ["postgis", "postgres", "postgresql"])
def test_database_url_schemes_all_mean_postgis(scheme):
    db = database_settings({"DATABASE_URL": f"{scheme}://cpo:p%40ss@db.example.org:6543/cpo_prod"})

    assert db["ENGINE"] == "django.contrib.gis.db.backends.postgis"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"], db["PASSWORD"]) == (
        "db.example.org",
        6543,
        "cpo_prod",
        "cpo",
        "p@ss",
    )


def test_database_url_query_options_are_kept():
    db = database_settings({"DATABASE_URL": "postgis://cpo@db.example.org/cpo?sslmode=require"})

    assert db["OPTIONS"]["sslmode"] == "require"
    assert db["PORT"] == ""


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgis://cpo@db.example.org:notaport/cpo", "malformed"),
        ("postgis://cpo@db.example.org:70000/cpo", "malformed"),
        ("sqlite:///db.sqlite3", "PostgreSQL"),
        ("mysql://cpo@db.example.org/cpo", "PostgreSQL"),
        ("postgis:///cpo", "no host"),
        ("postgis://cpo@db.example.org:5432/", "no database"),
        ("postgis://cpo@db.example.org", "no database"),
    ],
)
def test_malformed_database_url_names_the_variable(url, fragment):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        database_settings({"DATABASE_URL": url})

    assert "DATABASE_URL" in str(excinfo.value)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgis://cpo:hunter2-secret@db.example.org:bad/cpo",
        "postgis://cpo:hunter2-secret@/cpo",
        "postgis://cpo:hunter2-secret@db.example.org:5432/",
        "mysql://cpo:hunter2-secret@db.example.org/cpo",
    ],
)
def test_password_is_masked_in_errors(url):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        database_settings({"DATABASE_URL": url})

    assert "hunter2-secret" not in str(excinfo.value)
    assert "cpo:***@" in str(excinfo.value)


def test_mask_url():
    assert mask_url("redis://:s3cret@cache:6379/1") == "redis://:***@cache:6379/1"
    assert mask_url("postgis://cpo:s3cret@db:5432/cpo") == "postgis://cpo:***@db:5432/cpo"
    assert mask_url("postgis://cpo@db:5432/cpo") == "postgis://cpo@db:5432/cpo"


# --- redis_url -----------------------------------------------------------------------------------


def test_redis_nothing_set_uses_loopback():
    assert redis_url({}) == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"


def test_redis_url_from_environment():
    assert redis_url({"REDIS_URL": "rediss://:pw@redis.example.org:6380/2"}) == (
        "rediss://:pw@redis.example.org:6380/2"
    )


def test_cache_url_defaults_to_the_given_default():
    assert redis_url({}, "CACHE_URL", default="redis://127.0.0.1:6379/3") == "redis://127.0.0.1:6379/3"


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("REDIS_URL", "http://127.0.0.1:6379/0"),
        ("REDIS_URL", "redis://127.0.0.1:notaport/0"),
        ("REDIS_URL", "redis:///0"),
        ("CACHE_URL", "memcached://127.0.0.1:11211"),
    ],
)
def test_malformed_redis_url_names_the_variable(name, url):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        redis_url({name: url}, name)

    assert name in str(excinfo.value)


def test_redis_password_is_masked_in_errors():
    with pytest.raises(ImproperlyConfigured) as excinfo:
        redis_url({"REDIS_URL": "http://:hunter2-secret@127.0.0.1:6379/0"})

    assert "hunter2-secret" not in str(excinfo.value)


def test_channel_layer_raises_redis_py_limits():
    layer = channel_layer_settings("redis://127.0.0.1:6379/4")

    # channels-redis's layer, with the gateway's batched receive for process channels
    from channels_redis.core import RedisChannelLayer
    from django.utils.module_loading import import_string

    assert issubclass(import_string(layer["BACKEND"]), RedisChannelLayer)
    host = layer["CONFIG"]["hosts"][0]
    assert host["address"] == "redis://127.0.0.1:6379/4"
    assert host["socket_timeout"] > 5
    assert host["max_connections"] >= 10000


# --- start-up in a fresh process -------------------------------------------------------------------


def _django_setup(
    settings_module: str, print_expr: str = "settings.DEBUG", **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in SERVER_VARS}
    clean.update(env, DJANGO_SETTINGS_MODULE=settings_module)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from django.conf import settings; print({print_expr})",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "url",
    ["sqlite:///db.sqlite3", "postgis://cpo:hunter2-secret@db.example.org:bad/cpo", "postgis:///cpo"],
)
def test_malformed_database_url_stops_start_up_naming_it(url):
    result = _django_setup("config.settings.local", DJANGO_SECRET_KEY="x" * 50, DATABASE_URL=url)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DATABASE_URL" in result.stderr
    assert "hunter2-secret" not in result.stderr


@pytest.mark.parametrize("name", ["CPO_OCPP_MESSAGE_LOG_DAYS", "CPO_METER_SAMPLES_RETENTION_DAYS"])
@pytest.mark.parametrize("value", ["-1", "30d", "1.5"])
def test_a_malformed_retention_stops_start_up_naming_it(name, value):
    result = _django_setup("config.settings.local", DJANGO_SECRET_KEY="x" * 50, **{name: value})

    assert result.returncode != 0
    expected = f"ImproperlyConfigured: {name} must be 0 (keep forever) or a number of days, got {value!r}"
    assert expected in result.stderr


def test_retentions_are_read_from_the_environment():
    result = _django_setup(
        "config.settings.local",
        "(settings.CPO_OCPP_MESSAGE_LOG_DAYS, settings.CPO_METER_SAMPLES_RETENTION_DAYS)",
        DJANGO_SECRET_KEY="x" * 50,
        CPO_OCPP_MESSAGE_LOG_DAYS="0",
        CPO_METER_SAMPLES_RETENTION_DAYS=" 1200 ",
    )

    assert result.stdout.strip() == "(0, 1200)", result.stderr


def test_malformed_redis_url_stops_start_up_naming_it():
    result = _django_setup(
        "config.settings.local", DJANGO_SECRET_KEY="x" * 50, REDIS_URL="http://127.0.0.1/0"
    )

    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr


def test_missing_secret_key_stops_start_up_naming_it(tmp_path):
    # an empty var/: no `make run` ever wrote a key there
    result = _django_setup("config.settings.local", CPO_VAR_DIR=str(tmp_path))

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
    assert f"{tmp_path / 'secret_key'} does not exist: run `make run` once" in result.stderr


# --- local settings: what `make run` left in var/ ----------------------------------------------------

SHOW_SERVERS = (
    "settings.SECRET_KEY, settings.DATABASES['default']['HOST'], settings.DATABASES['default']['PORT'], "
    "settings.DATABASES['default']['NAME'], settings.REDIS_URL, settings.CACHE_URL"
)


def _make_run_var(var_dir: Path, *, key: str = "k" * 60, run_env: str | None = None) -> Path:
    """A var/ directory as scripts/run.sh leaves it: the secret key and the URLs it chose."""
    var_dir.mkdir(exist_ok=True)
    (var_dir / "secret_key").write_text(key + "\n")
    (var_dir / "run.env").write_text(
        run_env
        if run_env is not None
        else "# written by `make run`\n"
        "DATABASE_URL=postgis://postgres@127.0.0.1:54329/cpo\n"
        "REDIS_URL=redis://127.0.0.1:63799/0\n"
    )
    return var_dir


def test_local_settings_read_the_key_and_the_urls_make_run_left_in_var(tmp_path):
    """A second terminal with nothing exported gets make run's secret key and servers."""
    var_dir = _make_run_var(tmp_path / "var")

    result = _django_setup("config.settings.local", SHOW_SERVERS, CPO_VAR_DIR=str(var_dir))

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "k" * 60,
        "127.0.0.1",
        "54329",
        "cpo",
        "redis://127.0.0.1:63799/0",
        "redis://127.0.0.1:63799/0",
    ]


def test_local_settings_prefer_the_environment_to_var(tmp_path):
    var_dir = _make_run_var(tmp_path / "var")

    result = _django_setup(
        "config.settings.local",
        SHOW_SERVERS,
        CPO_VAR_DIR=str(var_dir),
        DJANGO_SECRET_KEY="e" * 50,
        DATABASE_URL="postgis://cpo@db.example.org:6543/other",
        CACHE_URL="redis://127.0.0.1:6379/3",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "e" * 50,
        "db.example.org",
        "6543",
        "other",
        "redis://127.0.0.1:63799/0",
        "redis://127.0.0.1:6379/3",
    ]


def test_a_malformed_run_env_stops_start_up_naming_the_file_and_line(tmp_path):
    var_dir = _make_run_var(
        tmp_path / "var", run_env="DATABASE_URL=postgis://postgres@127.0.0.1/cpo\nnonsense\n"
    )

    result = _django_setup("config.settings.local", CPO_VAR_DIR=str(var_dir))

    assert result.returncode != 0
    assert f"{var_dir / 'run.env'}, line 2: expected NAME=value, got 'nonsense'" in result.stderr


@pytest.mark.parametrize("settings_module", ["config.settings.production", "config.settings.test"])
def test_only_the_local_settings_read_var(tmp_path, settings_module):
    """Production still refuses to start without DJANGO_SECRET_KEY, whatever var/ holds; tests never
    pick up make run's servers."""
    var_dir = _make_run_var(tmp_path / "var")
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != "DJANGO_SECRET_KEY"}

    result = _django_setup(settings_module, "settings.SECRET_KEY", CPO_VAR_DIR=str(var_dir), **env)

    if settings_module == "config.settings.production":
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY must be set in production" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() != "k" * 60


PRODUCTION_ENV = {
    "DATABASE_URL": "postgis://cpo:pw@db.example.org:5432/cpo",
    "REDIS_URL": "redis://redis.example.org:6379/0",
    "DJANGO_SECRET_KEY": "production-test-" + "k" * 50,
}


@pytest.mark.parametrize("missing", sorted(PRODUCTION_ENV))
def test_production_refuses_to_start_without(missing):
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != missing}

    result = _django_setup("config.settings.production", **env)

    assert result.returncode != 0
    assert f"{missing} must be set in production" in result.stderr


def test_production_starts_with_everything_set_and_debug_off():
    result = _django_setup("config.settings.production", DJANGO_DEBUG="1", **PRODUCTION_ENV)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
