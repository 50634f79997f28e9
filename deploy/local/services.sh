#!/usr/bin/env bash
# Start/stop the local services the provider lifecycle service needs.
#
#   deploy/local/services.sh start [kafka|postgres]...   # default: both
#   deploy/local/services.sh stop  [kafka|postgres]...
#   deploy/local/services.sh status [kafka|postgres]...
#   deploy/local/services.sh env                          # print the exports only
#
# `start` prints, on stdout and last, the settings to use, e.g.
#   export LIFECYCLE_KAFKA_BOOTSTRAP=127.0.0.1:9092
#   export LIFECYCLE_STORE=postgresql://lifecycle:lifecycle@127.0.0.1:5432/lifecycle
# so `eval "$(deploy/local/services.sh start)"` works (progress goes to stderr).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export LIFECYCLE_VAR="${LIFECYCLE_VAR:-$ROOT/var}"

KAFKA_PORT="${LIFECYCLE_KAFKA_PORT:-9092}"
PG_PORT="${LIFECYCLE_PG_PORT:-5432}"

usage() { echo "usage: $0 start|stop|status|env [kafka|postgres]..." >&2; exit 2; }

env_lines() {
    local s
    for s in "$@"; do
        case "$s" in
            kafka) echo "export LIFECYCLE_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT" ;;
            postgres) echo "export LIFECYCLE_STORE=postgresql://lifecycle:lifecycle@127.0.0.1:$PG_PORT/lifecycle" ;;
        esac
    done
}

cmd="${1:-}"
[[ -n "$cmd" ]] || usage
shift
services=("$@")
((${#services[@]})) || services=(kafka postgres)
for s in "${services[@]}"; do
    [[ "$s" == kafka || "$s" == postgres ]] || usage
done

case "$cmd" in
    start)
        for s in "${services[@]}"; do
            "$HERE/$s.sh" start >&2
        done
        env_lines "${services[@]}"
        ;;
    stop)
        for s in "${services[@]}"; do
            "$HERE/$s.sh" stop >&2
        done
        ;;
    status)
        rc=0
        for s in "${services[@]}"; do
            "$HERE/$s.sh" status || rc=1
        done
        exit "$rc"
        ;;
    env)
        env_lines "${services[@]}"
        ;;
    *) usage ;;
esac
