#!/usr/bin/env bash
# `make run`: local Kafka, the service on the embedded SQLite store, a sample stream,
# and the outcome counts as they grow. Ctrl-C stops what this script started.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
BIN="$ROOT/.venv/bin"
VAR="${LIFECYCLE_VAR:-$ROOT/var}"
mkdir -p "$VAR"

started_kafka=0
if ! deploy/local/kafka.sh status >/dev/null 2>&1; then
    started_kafka=1
fi
eval "$(deploy/local/services.sh start kafka)"
export LIFECYCLE_STORE="${LIFECYCLE_STORE:-sqlite:///var/lifecycle.db}"
export LIFECYCLE_HTTP_BIND="${LIFECYCLE_HTTP_BIND:-127.0.0.1:8000}"
if [[ -z "${LIFECYCLE_API_TOKENS:-}" ]]; then
    # Local demo tokens, made once per checkout and kept in var/ (never committed).
    [[ -s "$VAR/demo-tokens" ]] || "$ROOT/.venv/bin/python" -c 'import secrets; print(",".join(f"{r}:{r}-{secrets.token_urlsafe(12)}" for r in ("reader", "auditor", "admin")))' >"$VAR/demo-tokens"
    LIFECYCLE_API_TOKENS="$(cat "$VAR/demo-tokens")"
    export LIFECYCLE_API_TOKENS
fi
admin_token="$(tr ',' '\n' <<<"$LIFECYCLE_API_TOKENS" | sed -n 's/^admin://p' | head -1)"

"$BIN/lifecycle" run >"$VAR/run.log" 2>&1 &
service_pid=$!

cleanup() {
    trap - EXIT INT TERM
    echo
    echo "stopping the service (pid $service_pid)…"
    kill -TERM "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
    if [[ "$started_kafka" == 1 ]]; then
        echo "stopping the Kafka this run started…"
        deploy/local/kafka.sh stop >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT INT TERM

consumed="$("$BIN/python" -c 'from lifecycle.application import ProviderLifecycle as P; from service.settings import Settings as S; print(P(env=S().persistence_env()).stats()["consumed"])')"
if [[ "$consumed" == 0 ]]; then
    "$BIN/lifecycle" demo-data "$VAR/demo-events.jsonl"
    "$BIN/lifecycle" produce "$VAR/demo-events.jsonl"
else
    echo "the store already holds $consumed records; not producing the sample again"
fi

echo "service log: $VAR/run.log — store: $LIFECYCLE_STORE — Ctrl-C to stop"
echo "dashboard:   http://$LIFECYCLE_HTTP_BIND/?token=$admin_token"
echo "API docs:    http://$LIFECYCLE_HTTP_BIND/docs (bearer token: $admin_token; all tokens in $VAR/demo-tokens)"
"$BIN/lifecycle" stats --follow
