"""The self-contained run (`make run`): base settings; servers come from scripts/services.sh.

`make run` keeps its secret key in var/secret_key and records the server URLs it chose in var/run.env.
These settings read both for whatever the environment does not set, so `manage.py` commands typed in a
second terminal while `make run` serves (nothing exported) reach the same database and Redis. Only these
local settings do so: production and test settings never read var/.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# The variables var/run.env may set (anything else in it is ignored).
RUN_ENV_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CACHE_URL")


def _var_dir() -> Path:
    return Path(os.environ.get("CPO_VAR_DIR") or Path(__file__).resolve().parent.parent.parent / "var")


def read_run_env(path: Path) -> dict[str, str]:
    """The `NAME=value` lines of var/run.env for RUN_ENV_VARIABLES ({} when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ImproperlyConfigured(f"Cannot read {path} (written by `make run`): {exc}") from exc
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ImproperlyConfigured(f"{path}, line {number}: expected NAME=value, got {line!r}")
        if name.strip() in RUN_ENV_VARIABLES:
            values[name.strip()] = value.strip()
    return values


def _load_var_files(var_dir: Path) -> None:
    """Fill in DJANGO_SECRET_KEY and the server URLs from var/ where the environment leaves them unset."""
    for name, value in read_run_env(var_dir / "run.env").items():
        if not os.environ.get(name) and value:
            os.environ[name] = value
    if not os.environ.get("DJANGO_SECRET_KEY"):
        key_file = var_dir / "secret_key"
        try:
            key = key_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            key = ""
        except OSError as exc:
            raise ImproperlyConfigured(
                f"DJANGO_SECRET_KEY is not set and {key_file} is unreadable: {exc}"
            ) from exc
        if not key:
            raise ImproperlyConfigured(
                f"DJANGO_SECRET_KEY is not set and {key_file} does not exist: run `make run` once (it "
                "generates the key there, and manage.py reads it with these local settings), or export "
                "DJANGO_SECRET_KEY."
            )
        os.environ["DJANGO_SECRET_KEY"] = key


_load_var_files(_var_dir())

from config.settings.base import *  # noqa: E402,F403
