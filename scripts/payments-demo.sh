#!/usr/bin/env bash
# Sourced by scripts/run.sh: without STRIPE_SECRET_KEY, `make run` uses localstripe (a fake Stripe server,
# requirements/dev.in) on loopback as the demo payment backend and points the product at it.
#
#   payments_demo_start   start localstripe (state in $CPO_VAR_DIR/localstripe.pickle), export the STRIPE_*
#                         settings, register our webhook endpoint; prints nothing when a key is set
#   payments_demo_cards   give the demo drivers a test card (manage.py billing_demo_cards)
#   payments_demo_stop    stop the localstripe this script started
# LOCALSTRIPE_PORT picks its port (default 8420).

payments_demo_pid=""
PAYMENTS_BANNER="Stripe:  STRIPE_SECRET_KEY is set (${STRIPE_API_BASE:-https://api.stripe.com})"

payments_demo_start() {
    [[ -z "${STRIPE_SECRET_KEY:-}" ]] || return 0
    local port="${LOCALSTRIPE_PORT:-8420}" url deadline
    url="http://127.0.0.1:$port"
    if tcp_open 127.0.0.1 "$port"; then
        die "port $port (localstripe, the demo payment backend) is taken: set LOCALSTRIPE_PORT or STRIPE_SECRET_KEY"
    fi
    "$CPO_PY" -m tools.localstripe_server --port "$port" --state-file "$CPO_VAR_DIR/localstripe.pickle" \
        --keep-state >>"$CPO_VAR_DIR/localstripe.log" 2>&1 &
    payments_demo_pid=$!
    deadline=$((SECONDS + 30))
    until "$CPO_PY" -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[1] + "/v1/customers?limit=1", headers={"Authorization": "Bearer sk_test_localstripe"}), timeout=2)' "$url" 2>/dev/null; do
        kill -0 "$payments_demo_pid" 2>/dev/null || die "localstripe did not start: see $CPO_VAR_DIR/localstripe.log"
        ((SECONDS < deadline)) || die "localstripe did not answer on $url within 30 s"
        sleep 0.2
    done
    local secret_file="$CPO_VAR_DIR/stripe_webhook_secret"
    [[ -s "$secret_file" ]] || (umask 077 && "$CPO_PY" -c 'import secrets; print("whsec_" + secrets.token_hex(24))' >"$secret_file")
    export STRIPE_SECRET_KEY="sk_test_localstripe" STRIPE_PUBLISHABLE_KEY="pk_test_localstripe"
    export STRIPE_API_BASE="$url" STRIPE_WEBHOOK_SECRET="$(<"$secret_file")"
    "$CPO_PY" -c 'import sys, urllib.parse as p, urllib.request as u; u.urlopen(u.Request(sys.argv[1] + "/_config/webhooks/cpo", data=p.urlencode({"url": sys.argv[2], "secret": sys.argv[3]}).encode()), timeout=5)' \
        "$url" "http://127.0.0.1:$PORT/webhooks/stripe/" "$STRIPE_WEBHOOK_SECRET" ||
        die "could not register the webhook endpoint with localstripe"
    PAYMENTS_BANNER="Stripe:  localstripe (demo payment backend, no real payments) on $url; test card pm_card_visa"
    log "no STRIPE_SECRET_KEY: localstripe serves payments on $url (log: $CPO_VAR_DIR/localstripe.log)"
}

payments_demo_cards() {
    "$CPO_PY" manage.py billing_demo_cards || log "the demo drivers got no test card (see above)"
}

payments_demo_stop() {
    if [[ -n "$payments_demo_pid" ]] && kill -0 "$payments_demo_pid" 2>/dev/null; then
        kill -TERM "$payments_demo_pid" 2>/dev/null || true
        wait "$payments_demo_pid" 2>/dev/null || true
    fi
}
