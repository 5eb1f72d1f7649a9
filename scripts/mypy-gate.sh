#!/usr/bin/env bash
# mypy against its committed baseline (mypy-baseline.txt, read by the mypy-baseline package; positions are
# left out, so moving code does not matter). Run by `make lint`.
#
#   scripts/mypy-gate.sh            fails on any error not in the baseline, and on baseline entries that no
#                                   longer occur (fixed: shrink the baseline with --shrink)
#   scripts/mypy-gate.sh --shrink   drops the entries that no longer occur; refuses while there are new
#                                   errors, so the baseline only ever shrinks
set -euo pipefail

CPO_LOG_PREFIX="mypy-gate"
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$CPO_ROOT"

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
"$CPO_VENV/bin/mypy" >"$out" 2>&1 || status=$?
if [[ "$status" -gt 1 ]]; then
    cat "$out" >&2
    die "mypy did not run to the end (exit $status)"
fi

colors=()
[[ -t 1 ]] || colors=(--no-colors)
if [[ "${1:-}" == "--shrink" ]]; then
    if ! "$CPO_VENV/bin/mypy-baseline" filter "${colors[@]}" --allow-unsynced --hide-stats <"$out"; then
        die "mypy reports errors that are not in the baseline (above): fix them; the baseline only shrinks"
    fi
    "$CPO_VENV/bin/mypy-baseline" sync <"$out"
    log "mypy-baseline.txt now holds $(grep -c . mypy-baseline.txt || true) entries"
elif "$CPO_VENV/bin/mypy-baseline" filter "${colors[@]}" --hide-stats <"$out" >/dev/null; then
    log "ok: $(grep -c . mypy-baseline.txt || true) known errors, all in mypy-baseline.txt, none new"
else
    "$CPO_VENV/bin/mypy-baseline" filter "${colors[@]}" <"$out" || true
    die "mypy: new errors (fix them) or fixed ones (run scripts/mypy-gate.sh --shrink and commit mypy-baseline.txt)"
fi
