#!/usr/bin/env bash
# Make sure PostgreSQL (with PostGIS) and Redis answer, and export DATABASE_URL and REDIS_URL.
#
#   scripts/services.sh [run|test]          print `export ...` lines (for eval)
#   source scripts/services.sh [run|test]   export them into the current shell
#   scripts/services.sh stop                stop the project-local servers that `run` started
#
# DATABASE_URL / REDIS_URL / CACHE_URL already set: used as they are (the database and the postgis
# extension are created if missing); a server that does not answer is an error naming the variable.
# Nothing set: PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 when they answer. Otherwise
#   test  starts the installed system servers (installing the Debian packages first if needed);
#   run   starts a project-local PostgreSQL cluster under var/pg (port 54329) and a Redis under
#         var/redis (port 63799), and records them in var/services.started for `stop`.
# Needs .venv (scripts/bootstrap.sh). Messages go to stderr; only the export lines go to stdout.

# --- sourced: run as a child process (its own shell options, `exit`s and traps) and eval its output --
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    if __cpo_services_out="$(bash "${BASH_SOURCE[0]}" "$@")"; then
        eval "$__cpo_services_out"
        unset __cpo_services_out
        return 0
    else
        __cpo_services_rc=$?
        unset __cpo_services_out
        return "$__cpo_services_rc"
    fi
fi

set -euo pipefail
# Keep the caller's stdout on fd 3 for the export lines; everything else goes to stderr. Servers
# started below get fd 3 closed, or `$(scripts/services.sh)` would wait for them to exit.
exec 3>&1 1>&2

CPO_LOG_PREFIX="services"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${1:-run}"
VAR_DIR="${CPO_VAR_DIR:-$CPO_ROOT/var}"
STARTED_FILE="$VAR_DIR/services.started"
SYS_PG_PORT="${CPO_SYSTEM_PG_PORT:-5432}"
SYS_REDIS_PORT="${CPO_SYSTEM_REDIS_PORT:-6379}"
LOCAL_PG_PORT="${CPO_LOCAL_PG_PORT:-54329}"
LOCAL_REDIS_PORT="${CPO_LOCAL_REDIS_PORT:-63799}"
DB_NAME="${CPO_DB_NAME:-cpo}"
SERVICECTL="$CPO_ROOT/scripts/servicectl.py"

# --- helpers --------------------------------------------------------------------------------------

# servicectl ACTION URL [args]: sets SC_RC, SC_OUT (stdout) and SC_ERR (stderr) of scripts/servicectl.py.
servicectl() {
    local errfile
    errfile="$(mktemp)"
    SC_RC=0
    SC_OUT="$("$CPO_PY" "$SERVICECTL" "$@" 2>"$errfile")" || SC_RC=$?
    SC_ERR="$(<"$errfile")"
    rm -f "$errfile"
}

mask() { "$CPO_PY" "$SERVICECTL" mask "$1"; }

# detached LOG CMD...: run a command that leaves a server behind. The server must hold none of our
# output streams (a caller reading them would wait for it to exit): all go to LOG, shown on failure.
detached() {
    local logf="$1"
    shift
    mkdir -p "$(dirname "$logf")"
    if ! "$@" </dev/null >"$logf" 2>&1 3>&-; then
        tail -n 20 "$logf" >&2 || true
        return 1
    fi
}

# A Debian cluster (postgresql-common) listening on the port: prints "version name status".
system_cluster_on_port() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 1
    pg_lsclusters --no-header 2>/dev/null |
        awk -v port="$1" '$3 == port && !found {line = $1 " " $2 " " $4; found = 1} END {if (found) print line; exit !found}'
}

is_loopback() { [[ "$1" == "127.0.0.1" || "$1" == "localhost" || "$1" == "::1" ]]; }

# Install postgresql-<major>-postgis-3 for a local Debian server (or say what to install).
install_postgis_for() {
    local major="$1" where="$2"
    log "PostgreSQL $major at $where has no postgis extension; installing postgresql-$major-postgis-3"
    apt_install "postgresql-$major-postgis-3"
}

# url_hostport NAME URL: "host port" of the URL; a malformed URL is an error naming the variable.
url_hostport() {
    servicectl hostport "$2"
    [[ "$SC_RC" -eq 0 ]] || die "$1 is malformed ($(mask "$2")): $SC_ERR"
    printf '%s\n' "$SC_OUT"
}

# ensure_pg NAME URL: the database answers, exists and has postgis; fails naming NAME otherwise.
ensure_pg() {
    local name="$1" url="$2" host port hp
    hp="$(url_hostport "$name" "$url")" || exit 1
    read -r host port <<<"$hp"
    servicectl pg "$url" --wait "${3:-0}"
    if [[ "$SC_RC" -eq 11 ]] && is_loopback "$host" && { system_cluster_on_port "$port" >/dev/null || [[ "$port" == "$LOCAL_PG_PORT" ]]; }; then
        install_postgis_for "$SC_OUT" "$host:$port"
        servicectl pg "$url"
    fi
    case "$SC_RC" in
        0) return 0 ;;
        10) die "$name: PostgreSQL at $host:$port does not answer ($(mask "$url")): $SC_ERR" ;;
        11) die "$name: the PostgreSQL $SC_OUT server at $host:$port has no postgis extension ($(mask "$url")); install PostGIS for PostgreSQL $SC_OUT on that server" ;;
        12) die "$name: PostgreSQL at $host:$port refused the login ($(mask "$url")): $SC_ERR" ;;
        *) die "$name: PostgreSQL at $host:$port ($(mask "$url")): $SC_ERR" ;;
    esac
}

ensure_redis() {
    local name="$1" url="$2" host port hp
    hp="$(url_hostport "$name" "$url")" || exit 1
    read -r host port <<<"$hp"
    servicectl redis "$url" --wait "${3:-0}"
    [[ "$SC_RC" -eq 0 ]] || die "$name: Redis at $host:$port does not answer ($(mask "$url")): $SC_ERR"
}

record_started() {
    mkdir -p "$VAR_DIR"
    grep -qxF "$1" "$STARTED_FILE" 2>/dev/null || printf '%s\n' "$1" >>"$STARTED_FILE"
}

# The newest installed PostgreSQL server version (a directory under /usr/lib/postgresql), or nothing.
pg_installed_version() {
    local bin
    for bin in /usr/lib/postgresql/*/bin/postgres; do
        if [[ -x "$bin" ]]; then basename "$(dirname "$(dirname "$bin")")"; fi
    done | sort -n | tail -n 1
}

# Install the PostgreSQL server and the matching PostGIS package from Debian.
install_postgresql() {
    local major=""
    if have_dpkg; then
        major="$(apt-cache depends postgresql 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^postgresql-[0-9]+$/ && !v {v = substr($2, 12)} END {print v}')" || major=""
    fi
    if [[ -n "$major" ]]; then
        apt_install postgresql "postgresql-$major" "postgresql-$major-postgis-3"
    else
        apt_install postgresql
        major="$(pg_installed_version)"
        [[ -n "$major" ]] || die "installed postgresql but found no server under /usr/lib/postgresql"
        apt_install "postgresql-$major-postgis-3"
    fi
}

# --- test: the system servers on loopback ------------------------------------------------------------

system_pg_url() {
    local url="postgis://postgres@127.0.0.1:$SYS_PG_PORT/$DB_NAME"
    servicectl pg "$url"
    if [[ "$SC_RC" -eq 10 ]]; then
        local cluster
        if ! cluster="$(system_cluster_on_port "$SYS_PG_PORT")"; then
            if [[ -z "$(pg_installed_version)" ]]; then
                install_postgresql
            fi
            cluster="$(system_cluster_on_port "$SYS_PG_PORT")" || die "no PostgreSQL answers on 127.0.0.1:$SYS_PG_PORT and no cluster is configured on that port; create one (pg_createcluster --start -p $SYS_PG_PORT <version> main) or set DATABASE_URL"
        fi
        read -r ver name status <<<"$cluster"
        if [[ "$status" != online* ]]; then
            is_root || die "the PostgreSQL cluster $ver/$name (port $SYS_PG_PORT) is stopped; start it with: sudo pg_ctlcluster $ver $name start"
            log "starting PostgreSQL cluster $ver/$name on port $SYS_PG_PORT"
            detached "$VAR_DIR/pg_ctlcluster.log" pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
                die "could not start PostgreSQL cluster $ver/$name (see /var/log/postgresql/postgresql-$ver-$name.log)"
        fi
        servicectl pg "$url" --wait 30
    fi
    if [[ "$SC_RC" -eq 12 ]] && system_cluster_on_port "$SYS_PG_PORT" >/dev/null && is_root; then
        # A stock Debian cluster asks for a password on TCP: use a superuser role with a generated
        # password (kept in var/, mode 600) instead of changing pg_hba.conf.
        url="$(system_pg_role_url)"
        servicectl pg "$url"
    fi
    if [[ "$SC_RC" -eq 11 ]] && system_cluster_on_port "$SYS_PG_PORT" >/dev/null; then
        install_postgis_for "$SC_OUT" "127.0.0.1:$SYS_PG_PORT"
        servicectl pg "$url"
    fi
    case "$SC_RC" in
        0) printf '%s\n' "$url" ;;
        12) die "PostgreSQL on 127.0.0.1:$SYS_PG_PORT refused user postgres without a password ($SC_ERR); set DATABASE_URL=postgis://USER:PASSWORD@127.0.0.1:$SYS_PG_PORT/$DB_NAME" ;;
        *) die "PostgreSQL on 127.0.0.1:$SYS_PG_PORT ($(mask "$url")): $SC_ERR" ;;
    esac
}

system_pg_role_url() {
    local pwfile="$VAR_DIR/pg-cpo-password" pw
    mkdir -p "$VAR_DIR"
    if [[ ! -s "$pwfile" ]]; then
        (umask 077 && "$CPO_PY" -c 'import secrets; print(secrets.token_hex(16))' >"$pwfile")
    fi
    pw="$(<"$pwfile")"
    log "using the PostgreSQL role cpo (superuser; its password is in $pwfile)"
    (cd / && runuser -u postgres -- psql -q -p "$SYS_PG_PORT" -d postgres -v ON_ERROR_STOP=1 -v pw="$pw") >&2 3>&- <<'SQL' ||
SELECT format('CREATE ROLE cpo LOGIN SUPERUSER PASSWORD %L', :'pw') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cpo') \gexec
SELECT format('ALTER ROLE cpo LOGIN SUPERUSER PASSWORD %L', :'pw') \gexec
SQL
        die "could not create the PostgreSQL role cpo"
    printf 'postgis://cpo:%s@127.0.0.1:%s/%s\n' "$pw" "$SYS_PG_PORT" "$DB_NAME"
}

system_redis_url() {
    local url="redis://127.0.0.1:$SYS_REDIS_PORT/${1:-0}"
    servicectl redis "$url"
    if [[ "$SC_RC" -eq 10 ]]; then
        command -v redis-server >/dev/null 2>&1 || apt_install redis-server
        servicectl redis "$url"
    fi
    if [[ "$SC_RC" -eq 10 ]]; then
        log "starting redis-server on 127.0.0.1:$SYS_REDIS_PORT"
        local as=() dir=/tmp
        if is_root && id redis >/dev/null 2>&1; then
            as=(runuser -u redis --)
            runuser -u redis -- test -w /var/lib/redis 2>/dev/null && dir=/var/lib/redis
        fi
        detached "$VAR_DIR/redis-server.log" "${as[@]}" redis-server --daemonize yes --bind 127.0.0.1 -::1 \
            --port "$SYS_REDIS_PORT" --save "" --appendonly no --dir "$dir" \
            --pidfile "$dir/redis-cpo-$SYS_REDIS_PORT.pid" || die "could not start redis-server on port $SYS_REDIS_PORT"
        servicectl redis "$url" --wait 15
    fi
    [[ "$SC_RC" -eq 0 ]] || die "Redis on 127.0.0.1:$SYS_REDIS_PORT: $SC_ERR"
    printf '%s\n' "$url"
}

# --- run: project-local servers under var/ ----------------------------------------------------------

# Can a project-local cluster live in var/pg? As root it runs as the postgres system user, which must
# be able to reach var/ (not so in a checkout under /root, for instance).
local_pg_possible() {
    is_root || return 0
    [[ -n "$(pg_installed_version)" ]] || install_postgresql
    id postgres >/dev/null 2>&1 || return 1
    mkdir -p "$VAR_DIR/pg"
    (cd / && runuser -u postgres -- test -x "$VAR_DIR") 2>/dev/null
}

local_pg_url() {
    local url="postgis://postgres@127.0.0.1:$LOCAL_PG_PORT/$DB_NAME"
    local ver dir="$VAR_DIR/pg" as=()
    ver="$(pg_installed_version)"
    if [[ -z "$ver" ]]; then
        install_postgresql
        ver="$(pg_installed_version)"
    fi
    local bin="/usr/lib/postgresql/$ver/bin" data="$dir/data" sock="$dir/run" logf="$dir/postgres.log"
    mkdir -p "$data" "$sock"
    if is_root; then
        # initdb refuses to run as root: the cluster belongs to the postgres system user.
        id postgres >/dev/null 2>&1 || die "the postgres system user is missing (reinstall postgresql-$ver)"
        chown -R postgres:postgres "$dir"
        chmod 700 "$data"
        as=(runuser -u postgres --)
        (cd / && "${as[@]}" test -w "$data") ||
            die "the postgres system user cannot reach $data (a parent directory is closed to it); move the checkout, or set DATABASE_URL"
    fi
    if [[ -f "$data/PG_VERSION" && "$(<"$data/PG_VERSION")" != "$ver" ]]; then
        die "$data was created by PostgreSQL $(<"$data/PG_VERSION"), this machine runs $ver; remove it with: make clean-var"
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        log "creating a project-local PostgreSQL $ver cluster in $data"
        (cd / && detached "$dir/initdb.log" "${as[@]}" "$bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C \
            --auth-local=trust --auth-host=trust) || die "initdb failed, see $dir/initdb.log"
    fi
    # A Unix socket path is limited to 107 bytes; use TCP only when var/ is nested too deep.
    local sockopt="-k '$sock'"
    ((${#sock} > 90)) && sockopt="-k ''"
    if ! (cd / && "${as[@]}" "$bin/pg_ctl" -D "$data" status) >/dev/null 2>&1 3>&-; then
        log "starting the project-local PostgreSQL on 127.0.0.1:$LOCAL_PG_PORT"
        (cd / && detached "$dir/pg_ctl.log" "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$logf" -w -t 60 \
            -o "-p $LOCAL_PG_PORT -h 127.0.0.1 $sockopt" start) ||
            die "could not start PostgreSQL from $data (see $logf)"
    fi
    record_started "pg $ver $data"
    ensure_pg "project-local PostgreSQL" "$url" 30
    printf '%s\n' "$url"
}

local_redis_url() {
    local url="redis://127.0.0.1:$LOCAL_REDIS_PORT/0" dir="$VAR_DIR/redis" as=()
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    mkdir -p "$dir"
    if is_root && id redis >/dev/null 2>&1; then
        chown redis:redis "$dir"
        if (cd / && runuser -u redis -- test -w "$dir") 2>/dev/null; then
            as=(runuser -u redis --)
        else
            chown root:root "$dir" # var/ is closed to the redis user: run it as root, on loopback only
        fi
    fi
    servicectl redis "$url"
    if [[ "$SC_RC" -ne 0 ]]; then
        log "starting the project-local Redis on 127.0.0.1:$LOCAL_REDIS_PORT"
        detached "$dir/start.log" "${as[@]}" redis-server --daemonize yes --bind 127.0.0.1 \
            --port "$LOCAL_REDIS_PORT" --save "" --appendonly no --dir "$dir" --pidfile "$dir/redis.pid" \
            --logfile "$dir/redis.log" || die "could not start redis-server (see $dir/redis.log)"
        servicectl redis "$url" --wait 15
        [[ "$SC_RC" -eq 0 ]] || die "the project-local Redis does not answer (see $dir/redis.log): $SC_ERR"
    fi
    record_started "redis $dir/redis.pid"
    printf '%s\n' "$url"
}

stop_started() {
    [[ -f "$STARTED_FILE" ]] || return 0
    local kind a b
    while read -r kind a b; do
        case "$kind" in
            pg)
                local as=()
                is_root && as=(runuser -u postgres --)
                if [[ -f "$b/postmaster.pid" ]]; then
                    log "stopping the project-local PostgreSQL ($b)"
                    (cd / && "${as[@]}" "/usr/lib/postgresql/$a/bin/pg_ctl" -D "$b" -m fast -w -t 30 stop) >&2 3>&- || true
                fi
                ;;
            redis)
                if [[ -s "$a" ]]; then
                    local pid
                    pid="$(<"$a")"
                    if kill -0 "$pid" 2>/dev/null; then
                        log "stopping the project-local Redis (pid $pid)"
                        kill -TERM "$pid" 2>/dev/null || true
                        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                    fi
                fi
                ;;
        esac
    done <"$STARTED_FILE"
    rm -f "$STARTED_FILE"
}

# --- main ---------------------------------------------------------------------------------------------

case "$MODE" in
    run | test) ;;
    stop)
        stop_started
        exit 0
        ;;
    *) die "usage: scripts/services.sh [run|test|stop]" ;;
esac

[[ -x "$CPO_PY" ]] || die "$CPO_PY is missing: run scripts/bootstrap.sh first"

if [[ -n "${DATABASE_URL:-}" ]]; then
    ensure_pg DATABASE_URL "$DATABASE_URL"
    database_url="$DATABASE_URL"
elif [[ "$MODE" == test ]]; then
    database_url="$(system_pg_url)"
else
    servicectl pg "postgis://postgres@127.0.0.1:$SYS_PG_PORT/$DB_NAME"
    if [[ "$SC_RC" -ne 10 ]]; then
        database_url="$(system_pg_url)"
    elif local_pg_possible; then
        database_url="$(local_pg_url)"
    else
        log "the postgres system user cannot reach $VAR_DIR: using the system PostgreSQL instead of a project-local one"
        database_url="$(system_pg_url)"
    fi
fi

if [[ -n "${REDIS_URL:-}" ]]; then
    ensure_redis REDIS_URL "$REDIS_URL"
    redis_url="$REDIS_URL"
elif [[ "$MODE" == test ]]; then
    # Tests use their own Redis database number (as config/settings/test.py does).
    redis_url="$(system_redis_url 9)"
else
    servicectl redis "redis://127.0.0.1:$SYS_REDIS_PORT/0"
    if [[ "$SC_RC" -eq 0 ]]; then
        redis_url="redis://127.0.0.1:$SYS_REDIS_PORT/0"
    else
        redis_url="$(local_redis_url)"
    fi
fi

if [[ -n "${CACHE_URL:-}" ]]; then
    ensure_redis CACHE_URL "$CACHE_URL"
fi

log "database $(mask "$database_url"), redis $(mask "$redis_url")"
printf 'export DATABASE_URL=%q\nexport REDIS_URL=%q\n' "$database_url" "$redis_url" >&3
