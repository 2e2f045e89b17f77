#!/usr/bin/env bash
# Drives a release build of hyper-registry with wrk over loopback and prints
# throughput, latency percentiles and memory per scenario.
#
# Usage: bench/load.sh [--postgres] [--scale] [--duration SECONDS]
#
#   (default)   SQLite in a fresh data directory, 15k-entry catalog
#   --postgres  PostgreSQL (fresh schema) and Redis (fresh key prefix) instead
#   --scale     import the 1.1M-entry catalog, then time searches and read load
#
# Environment:
#   BENCH_DATA_DIR      directory with the PyPI sample files pypi-top15k.jsonl
#                       and packages-1m.jsonl.gz (default: bench/data)
#   HYPER_REGISTRY_BIN  server binary (default: the release build, built if missing)
#   BENCH_DATABASE_URL  PostgreSQL server for --postgres
#                       (default: postgres://postgres@127.0.0.1:5432/test)
#   BENCH_REDIS_URL     Redis for --postgres (default: redis://127.0.0.1:6379)
#   BENCH_KEEP=1        keep the data directory and server log afterwards
#
# Every request except /health runs with the rate limiter and the audit trail
# on, as in production; the limits are raised so that no request is rejected.

set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
postgres=false
scale=false
duration=10
connections=64
threads=2

while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) postgres=true ;;
    --scale) scale=true ;;
    --duration) duration="$2"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

for tool in wrk curl jq; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool is not installed; on Debian or Ubuntu: apt-get install -y $tool" >&2
    exit 1
  fi
done

data_dir=${BENCH_DATA_DIR:-$repo/bench/data}
small_catalog=$data_dir/pypi-top15k.jsonl
large_catalog=$data_dir/packages-1m.jsonl.gz
catalog=$small_catalog
if $scale; then catalog=$large_catalog; fi
if [ ! -f "$catalog" ]; then
  echo "missing $catalog: set BENCH_DATA_DIR to the directory with the PyPI sample files" >&2
  exit 1
fi

bin=${HYPER_REGISTRY_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/hyper-registry}
if [ ! -x "$bin" ]; then
  echo "building the release binary (once)"
  (cd "$repo" && cargo build --release --bin hyper-registry)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hyper-registry-load.XXXXXX")
server_pid=
schema=
redis_prefix=

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$schema" ]; then
    PGOPTIONS='--client-min-messages=warning' psql -q "$BENCH_DATABASE_URL_BASE" -c "DROP SCHEMA \"$schema\" CASCADE" >/dev/null || true
  fi
  if [ -n "$redis_prefix" ]; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$redis_prefix:*" | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port=$(free_port)
base=http://127.0.0.1:$port

# Settings inherited from the shell would change what is measured; an
# OpenSSL-style SSL_CERT_FILE, for one, would make the server expect HTTPS.
unset SSL_CERT_FILE SSL_KEY_FILE SSL_CLIENT_CA_FILE SSL_CLIENT_AUTH HTTPS_ONLY \
  TLS_TERMINATED_BY_PROXY DATABASE_URL REDIS_URL METRICS_ADDRESS AUDIT_LOG_FILE \
  ALERT_WEBHOOK_URL LOG_LEVEL LOG_FORMAT TRUSTED_PROXIES ADMIN_ALLOWED_CIDRS

export HYPER_REGISTRY_ENV=development
export DATA_DIR=$work/data
export BIND_ADDRESS=127.0.0.1:$port
export JWT_SECRET_KEY=$("$bin" secret generate)
export ENCRYPTION_KEY=$("$bin" secret generate)
export ADMIN_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
# 1,000,000 is the largest value the configuration accepts. A bucket of that
# size refilled at about 16,700 tokens a second is never empty in these runs;
# a non-zero error count in the results would show a rejection.
export RATE_LIMIT_PER_MINUTE=1000000
export RATE_LIMIT_BURST=1000000
export LOGIN_RATE_LIMIT_PER_MINUTE=1000000
mkdir -p "$DATA_DIR"

backend=sqlite
if $postgres; then
  backend=postgres+redis
  BENCH_DATABASE_URL_BASE=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
  schema=load_$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
  psql -q "$BENCH_DATABASE_URL_BASE" -c "CREATE SCHEMA \"$schema\"" >/dev/null
  separator='?'
  case "$BENCH_DATABASE_URL_BASE" in *\?*) separator='&' ;; esac
  export DATABASE_URL="$BENCH_DATABASE_URL_BASE${separator}options=-csearch_path%3D$schema"
  export REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
  redis_prefix=$schema
  export REDIS_KEY_PREFIX=$redis_prefix
fi

rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Samples the server's RSS twice a second until killed; keeps the maximum in $1.
sample_rss() {
  local max=0 now
  while true; do
    now=$(rss_kib "$server_pid" 2>/dev/null || echo 0)
    if [ "$now" -gt "$max" ]; then
      max=$now
      echo "$max" >"$1"
    fi
    sleep 0.5
  done
}

start_server() {
  "$bin" serve >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 150); do
    if curl -fs "$base/health" >/dev/null 2>&1; then
      return
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "the server exited during start-up; its log:" >&2
      cat "$work/server.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "the server did not respond to /health within 30 s" >&2
  exit 1
}

results=$work/results.txt
: >"$results"

# run_wrk SCENARIO [wrk options…] URL: runs one scenario and records its line.
run_wrk() {
  local scenario=$1
  shift
  SCENARIO=$scenario wrk -t"$threads" -c"$connections" -d"${duration}s" --timeout 10s \
    --latency -s "$repo/bench/wrk.lua" "$@" | grep '^RESULT ' | tee -a "$results"
}

echo "== hyper-registry load benchmark: $backend, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "load average before start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $bin"

start_server
sleep 1
echo "RSS idle, empty catalog: $(( $(rss_kib "$server_pid") / 1024 )) MiB"

password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$password" | "$bin" users create --username load-user --role user >/dev/null

echo "importing $(basename "$catalog") with the command line"
import_start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/import-rss" "$bin" import "$catalog" --owner load-user >"$work/import.log" 2>&1
import_end=$(date +%s.%N)
tail -n 5 "$work/import.log"
awk -v start="$import_start" -v end="$import_end" -v rss="$(cat "$work/import-rss")" \
  'BEGIN { printf "import time: %.1f s, import process max RSS: %d MiB\n", end - start, rss / 1024 }'

sleep 2
echo "RSS idle, catalog loaded: $(( $(rss_kib "$server_pid") / 1024 )) MiB"

login_body=$(jq -cn --arg password "$password" '{username: "load-user", password: $password}')
token=$(curl -fs -X POST "$base/auth/login" -H 'Content-Type: application/json' -d "$login_body" | jq -r .access_token)
api_key=$("$bin" keys create --user load-user --name load --permission read --permission search 2>/dev/null)
entry_id=$(curl -fs "$base/api/v1/registry/entries?limit=1" -H "Authorization: Bearer $token" | jq -r '.items[0].id')
bearer="Authorization: Bearer $token"

# The JWT read scenario also records the RSS under read load.
read_under_sampling() {
  sample_rss "$work/rss-read" &
  local sampler=$!
  run_wrk "$@"
  kill "$sampler"
  wait "$sampler" 2>/dev/null || true
  echo "RSS max under read load: $(( $(cat "$work/rss-read") / 1024 )) MiB"
}

if $scale; then
  words=(python client api library data tool plugin http json test react server web parser utils framework cli database async logging)
  : >"$work/search-times"
  for round in $(seq 1 10); do
    for word in "${words[@]}"; do
      curl -fs -o /dev/null -w '%{time_total}\n' "$base/api/v1/registry/search?q=$word&limit=20" \
        -H "$bearer" >>"$work/search-times"
    done
  done
  sort -n "$work/search-times" | awk '{ t[NR] = $1 * 1000 } END {
    printf "search over the catalog, %d requests one at a time: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
      NR, t[int(NR * 0.5 + 0.5)], t[int(NR * 0.99 + 0.5)], t[NR] }'
  read_under_sampling get-jwt -H "$bearer" "$base/api/v1/registry/entries/$entry_id"
  run_wrk search -H "$bearer" "$base/api/v1/registry/search?q=client&limit=20"
  exit 0
fi

run_wrk health "$base/health"
read_under_sampling get-jwt -H "$bearer" "$base/api/v1/registry/entries/$entry_id"
run_wrk get-api-key -H "X-API-Key: $api_key" "$base/api/v1/registry/entries/$entry_id"
run_wrk list-filtered -H "$bearer" "$base/api/v1/registry/entries?category=python-package&tag=python&limit=20"
run_wrk search -H "$bearer" "$base/api/v1/registry/search?q=client&limit=20"
MODE=create AUTH="Bearer $token" run_wrk create "$base/api/v1/registry/entries"

# Reads at half the measured maximum: each connection waits between requests
# so that 64 connections together offer about half the get-jwt rate.
max_rps=$(awk '$2 == "get-jwt" { print $3 }' "$results")
pace_ms=$(awk -v rps="$max_rps" -v c="$connections" 'BEGIN { printf "%d", c * 1000 / (rps / 2) }')
PACE_MS=$pace_ms run_wrk get-jwt-half-rate -H "$bearer" "$base/api/v1/registry/entries/$entry_id"

# Logins against reads: one wrk process of readers alone, then the same
# readers while another wrk process keeps 20 logins in flight.
threads=1
run_wrk reads-alone -H "$bearer" "$base/api/v1/registry/entries/$entry_id"
MODE=login BODY=$login_body SCENARIO=logins wrk -t1 -c20 -d"${duration}s" --timeout 10s --latency \
  -s "$repo/bench/wrk.lua" "$base/auth/login" | grep '^RESULT ' >"$work/logins" &
logins_pid=$!
run_wrk reads-with-logins -H "$bearer" "$base/api/v1/registry/entries/$entry_id"
wait "$logins_pid"
tee -a "$results" <"$work/logins"

echo "readiness checks: $(curl -s "$base/ready" | jq -c .checks)"
# The trail rotates past AUDIT_LOG_MAX_BYTES, so count the rotated files too.
# The writer may still be behind when the last scenario ends, so wait a moment.
sleep 2
audited=$(awk '$2 != "health" { sum += $7 } END { print sum }' "$results")
echo "audit trail: $(cat "$DATA_DIR"/audit.log* | wc -l) lines in $(ls "$DATA_DIR"/audit.log* | wc -l) file(s)" \
  "for $audited requests sent by wrk outside health (plus set-up requests and security events)"
echo
echo "== results ($backend, $connections connections, ${duration} s each, load average now $(cut -d' ' -f1-3 /proc/loadavg))"
awk '
  { rps[$2] = $3; line[NR] = $0; name[NR] = $2 }
  END {
    printf "%-20s %10s %8s %8s %8s %9s %8s %8s %9s\n", "scenario", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "requests", "non-2xx", "socket", "÷ health"
    for (i = 1; i <= NR; i++) {
      split(line[i], f, " ")
      printf "%-20s %10.1f %8.2f %8.2f %8.2f %9d %8d %8d %9.2f\n", f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[3] / rps["health"]
    }
    if (rps["get-jwt"] > 0) printf "API key ÷ JWT: %.2f\n", rps["get-api-key"] / rps["get-jwt"]
    if (rps["reads-alone"] > 0) printf "reads with 20 logins in flight ÷ reads alone: %.2f\n", rps["reads-with-logins"] / rps["reads-alone"]
  }' "$results"
