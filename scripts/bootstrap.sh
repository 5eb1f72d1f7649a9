#!/usr/bin/env bash
# Install what `make run` and `make test` need; fast and offline when everything is present.
#
#   1. Debian packages for GeoDjango and i18n (gdal-bin, libgeos-c1v5, libproj25, gettext), Chromium for
#      the browser tests (not with CPO_BROWSER=0), and the Python venv module; PostgreSQL + PostGIS and
#      redis-server only when no URL names a server, none
#      answers on loopback and none is installed (scripts/services.sh then starts them).
#   2. .venv/ with requirements/dev.txt (runtime + development pins, every file checked against its hash),
#      reinstalled only when the requirements files change.
#   3. Compiled i18n catalogues (.mo) for the .po files under locale/ and apps/.
#
# As root, missing packages are installed with apt-get; otherwise the exact command is printed.
set -euo pipefail

CPO_LOG_PREFIX="bootstrap"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$CPO_ROOT"

PYTHON="${PYTHON:-python3}"
STAMP="$CPO_VENV/.cpo-requirements.sha256"

# --- 1. system packages -----------------------------------------------------------------------------
if have_dpkg; then
    wanted=(gdal-bin libgeos-c1v5 libproj25 gettext)
    if [[ ! -x "$CPO_PY" ]]; then
        if ! command -v "$PYTHON" >/dev/null 2>&1; then
            wanted+=(python3 python3-venv)
        elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            wanted+=(python3-venv)
        fi
    fi
    # Servers: only when nothing is configured, nothing answers on loopback and nothing is installed.
    if [[ -z "${DATABASE_URL:-}" ]] && ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null &&
        ! tcp_open 127.0.0.1 "${CPO_SYSTEM_PG_PORT:-5432}"; then
        major="$(apt-cache depends postgresql 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^postgresql-[0-9]+$/ && !v {v = substr($2, 12)} END {print v}')" || major=""
        if [[ -n "$major" ]]; then
            wanted+=(postgresql "postgresql-$major" "postgresql-$major-postgis-3")
        else
            wanted+=(postgresql) # the PostGIS package for its version is added by scripts/services.sh
        fi
    fi
    if [[ -z "${REDIS_URL:-}" ]] && ! command -v redis-server >/dev/null 2>&1 &&
        ! tcp_open 127.0.0.1 "${CPO_SYSTEM_REDIS_PORT:-6379}"; then
        wanted+=(redis-server)
    fi
    # The console's browser tests (tests/e2e/test_console_browser.py) drive Debian's Chromium headless
    # (test tools cannot download a browser here); CPO_BROWSER=0 leaves it out, e.g. on a production host.
    if [[ "${CPO_BROWSER:-1}" != 0 ]]; then
        wanted+=(chromium)
    fi
    mapfile -t missing < <(pkgs_missing "${wanted[@]}")
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
else
    log "no dpkg: make sure GDAL, GEOS, PROJ, gettext, PostgreSQL+PostGIS and Redis are installed"
fi

# --- 2. virtualenv ------------------------------------------------------------------------------------
if [[ -e "$CPO_VENV" ]] && ! "$CPO_PY" -c 'import sys' >/dev/null 2>&1; then
    log "$CPO_VENV is broken (its Python does not run); recreating it"
    rm -rf "$CPO_VENV"
fi
if [[ ! -x "$CPO_PY" ]]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is older than 3.11 (set PYTHON=/path/to/python3.11)"
    log "creating $CPO_VENV"
    "$PYTHON" -m venv "$CPO_VENV"
fi
req_hash="$(cat requirements/base.txt requirements/dev.txt | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$req_hash" ]]; then
    log "installing requirements/dev.txt into $CPO_VENV"
    "$CPO_PY" -m pip install --disable-pip-version-check -q --require-hashes -r requirements/dev.txt >&2
    printf '%s\n' "$req_hash" >"$STAMP"
fi

# --- 3. i18n catalogues ----------------------------------------------------------------------------------
stale=0
while IFS= read -r -d '' po; do
    mo="${po%.po}.mo"
    if [[ ! -f "$mo" || "$po" -nt "$mo" ]]; then
        stale=1
        break
    fi
done < <(find locale apps -name '*.po' -print0 2>/dev/null)
if [[ "$stale" -eq 1 ]]; then
    log "compiling translation catalogues"
    # Settings need a secret to load; compilemessages uses no secret and no server.
    DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-bootstrap-compilemessages-only}" \
        DJANGO_SETTINGS_MODULE=config.settings.local \
        "$CPO_PY" manage.py compilemessages --ignore .venv --ignore var --ignore node_modules >&2
fi

log "ok"
