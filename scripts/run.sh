#!/usr/bin/env bash
# `make run` after bootstrap: servers, migrations, static files, demo data, then uvicorn + Celery worker +
# Celery beat (Procfile, via honcho) in the foreground, and with DEMO_CHARGERS=N (make run DEMO_CHARGERS=10,
# or make demo) N simulated demo chargers that connect to it and charge. Ctrl-C (or SIGTERM) stops
# everything it started, including a project-local PostgreSQL/Redis under var/.
#
# The secret key (var/secret_key) and the server URLs chosen (var/run.env) stay in var/, where the local
# settings read them: manage.py commands in a second terminal need nothing exported.
set -euo pipefail

CPO_LOG_PREFIX="run"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/payments-demo.sh
source "$(dirname "${BASH_SOURCE[0]}")/payments-demo.sh"
cd "$CPO_ROOT"

[[ -x "$CPO_PY" ]] || die "$CPO_PY is missing: run scripts/bootstrap.sh (or make run) first"

export CPO_VAR_DIR="${CPO_VAR_DIR:-$CPO_ROOT/var}"
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings.local}"
export PORT="${PORT:-8000}"
export BIND="${BIND:-127.0.0.1}"
export CPO_OCPP_ALLOW_PROFILE_0="${CPO_OCPP_ALLOW_PROFILE_0:-1}"
export PYTHONUNBUFFERED=1
DEMO_CHARGERS="${DEMO_CHARGERS:-0}"
[[ "$DEMO_CHARGERS" =~ ^[0-9]+$ ]] || die "DEMO_CHARGERS must be a number of chargers (0 for none), got '$DEMO_CHARGERS'"
DEMO_CHARGERS=$((10#$DEMO_CHARGERS))
export PATH="$CPO_VENV/bin:$PATH"
mkdir -p "$CPO_VAR_DIR"
# /metrics adds up what every process (web, Celery worker) counted: they write into one directory,
# emptied before they start (prometheus-client's multi-process mode).
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$CPO_VAR_DIR/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

if [[ -z "${DJANGO_SECRET_KEY:-}" ]]; then
    key_file="$CPO_VAR_DIR/secret_key"
    if [[ ! -s "$key_file" ]]; then
        (umask 077 && "$CPO_PY" -c 'import secrets; print(secrets.token_urlsafe(50))' >"$key_file")
        log "generated a secret key in $key_file"
    fi
    chmod 600 "$key_file"
    DJANGO_SECRET_KEY="$(<"$key_file")"
    export DJANGO_SECRET_KEY
fi

honcho_pid=""
cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM # a second Ctrl-C must not skip stopping the servers
    if [[ -n "$honcho_pid" ]] && kill -0 "$honcho_pid" 2>/dev/null; then
        # honcho sends SIGTERM to each process group it started, and SIGKILL after 5 s.
        kill -TERM "$honcho_pid" 2>/dev/null || true
        wait "$honcho_pid" 2>/dev/null || true
    fi
    payments_demo_stop
    "$CPO_ROOT/scripts/services.sh" stop || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck source=scripts/services.sh
source "$CPO_ROOT/scripts/services.sh" run
# For manage.py in another terminal (config/settings/local.py): the URLs this run uses. Mode 600, as a
# URL may hold a password.
(
    umask 077
    printf '# written by `make run` (scripts/run.sh); read by config/settings/local.py\n'
    printf 'DATABASE_URL=%s\nREDIS_URL=%s\n' "$DATABASE_URL" "$REDIS_URL"
    if [[ -n "${CACHE_URL:-}" ]]; then printf 'CACHE_URL=%s\n' "$CACHE_URL"; fi
) >"$CPO_VAR_DIR/run.env.tmp"
mv -f "$CPO_VAR_DIR/run.env.tmp" "$CPO_VAR_DIR/run.env"

"$CPO_PY" manage.py check_services
"$CPO_PY" manage.py migrate --noinput
"$CPO_PY" manage.py collectstatic --noinput -v 0
if "$CPO_PY" manage.py help load_demo >/dev/null 2>&1; then
    "$CPO_PY" manage.py load_demo
else
    log "manage.py load_demo is not available yet: no demo data loaded"
fi
payments_demo_start
payments_demo_cards

procfile="$CPO_ROOT/Procfile"
demo_line=""
if ((DEMO_CHARGERS > 0)); then
    # The demo chargers run as one more Procfile process: honcho stops them with the server.
    ws_host="$BIND"
    if [[ "$ws_host" == "0.0.0.0" || "$ws_host" == "::" ]]; then ws_host="127.0.0.1"; fi
    if [[ "$ws_host" == *:* ]]; then ws_host="[$ws_host]"; fi
    procfile="$CPO_VAR_DIR/Procfile.demo"
    {
        cat "$CPO_ROOT/Procfile"
        printf 'demo: exec python -m tools.simulator.demo --url ws://%s:%s/ocpp --count %s\n' \
            "$ws_host" "$PORT" "$DEMO_CHARGERS"
    } >"$procfile"
    demo_line="    demo:   $DEMO_CHARGERS simulated demo chargers connect and charge with the demo cards"
fi

cat <<EOF

  CPO is starting on http://127.0.0.1:$PORT/
    admin:  http://127.0.0.1:$PORT/admin/
    login:  admin@demo.cpo / demo-password-2026 (superuser); one demo user per staff role, same password
    OCPP:   ws://127.0.0.1:$PORT/ocpp/<charge point id>
    health: http://127.0.0.1:$PORT/livez  http://127.0.0.1:$PORT/readyz
    $PAYMENTS_BANNER
${demo_line:+$demo_line
}  manage.py in another terminal uses this run's servers (var/run.env), e.g.
    .venv/bin/python manage.py ocpp_call VOL-BER-001 Reset '{"type": "Soft"}'
  Ctrl-C stops everything.

EOF

# Run honcho in the background and wait, so that a SIGTERM to this script is handled at once.
honcho start -f "$procfile" -d "$CPO_ROOT" --port "$PORT" &
honcho_pid=$!
wait "$honcho_pid"
