# shellcheck shell=bash disable=SC2034
# Shared helpers for scripts/*.sh (sourced, not run). Messages go to stderr: stdout is reserved for
# what a script prints on purpose (scripts/services.sh prints `export` lines).

CPO_ROOT="${CPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
CPO_VENV="$CPO_ROOT/.venv"
CPO_PY="$CPO_VENV/bin/python"

log() { printf '%s: %s\n' "${CPO_LOG_PREFIX:-cpo}" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "${CPO_LOG_PREFIX:-cpo}" "$*" >&2
    exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

have_dpkg() { command -v dpkg-query >/dev/null 2>&1; }

# True when the Debian package is installed (not merely known or half-configured).
pkg_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == "installed" ]]
}

# The packages among "$@" that are not installed.
pkgs_missing() {
    local pkg
    for pkg in "$@"; do
        pkg_installed "$pkg" || printf '%s\n' "$pkg"
    done
}

_CPO_APT_UPDATED=0
_apt_update() {
    [[ "$_CPO_APT_UPDATED" -eq 1 ]] && return 0
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 3>&- </dev/null
    _CPO_APT_UPDATED=1
}

# Install Debian packages with --no-install-recommends; as non-root, print the command and fail.
# fd 3 is closed for apt-get: a server that a package's postinst starts must not hold our stdout.
apt_install() {
    [[ $# -gt 0 ]] || return 0
    if ! is_root; then
        die "missing Debian packages: $*
  install them with:  sudo apt-get install --no-install-recommends $*
  then run the command again."
    fi
    have_dpkg || die "this is not a Debian-like system (no dpkg); install the equivalent of: $*"
    # A fresh image has no package lists at all: update once before the first install.
    if ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; then
        _apt_update
    fi
    log "installing Debian packages: $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 3>&- </dev/null; then
        # Stale lists (a package moved to a new version): refresh once and retry.
        _apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 3>&- </dev/null ||
            die "apt-get could not install: $*"
    fi
}

# True when something accepts TCP connections on host:port (within 2 s).
tcp_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}
