#!/usr/bin/env bash
# Revocation propagation between two replicas on one PostgreSQL database: a task token
# revoked at replica A (`POST /oauth2/revoke`) is refused by replica B (`GET /v1/mandates`
# with the token → 401) how long after A answered? Target: seen by every replica
# within 1 s, p99 ≤ 100 ms.
#
#   bash bench/revocation-propagation.sh [COUNT] [POLL_MS]     (default 200, 1 ms)
#
# Two release `mandate serve` replicas (their own data directories, signing keys and
# ports; the same public URL, so the same issuer) on a fresh database
# `mandate_revocation_bench` created (and dropped at the end) on the server of
# MANDATE_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres).
# Replicas learn of revocations through LISTEN/NOTIFY, with a 500 ms poll as fallback.
# The measuring client is `crates/mandate/examples/revocation_propagation.rs`.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-200}
poll_ms=${2:-1}
admin_db=${MANDATE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db=mandate_revocation_bench
url="${admin_db%/*}/$db"
public=http://mandate.bench.invalid

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p mandate --bin mandate --example revocation_propagation
bin=${MANDATE_BIN:-$target/release/mandate}  # MANDATE_BIN: another build, for A/B pairs
measure=$target/release/examples/revocation_propagation
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_a=$(free_port)
port_b=$(free_port)

psql "$admin_db" -qtAc "DROP DATABASE IF EXISTS $db" >/dev/null
psql "$admin_db" -qtAc "CREATE DATABASE $db" >/dev/null
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$admin_db" -qtAc "DROP DATABASE IF EXISTS $db" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() { # NAME PORT
  MANDATE_LOG=${MANDATE_LOG:-warn} MANDATE_PUBLIC_URL=$public \
    "$bin" serve --data "$work/$1" --listen "127.0.0.1:$2" --database-url "$url" >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; then return; fi
    if ! kill -0 "$!" 2>/dev/null; then cat "$work/$1.log"; echo "replica $1 exited" >&2; exit 1; fi
    sleep 0.1
  done
  echo "replica $1 did not become ready" >&2
  exit 1
}
start a "$port_a" # A bootstraps: the admin token is in its data directory.
start b "$port_b"

echo "== revocation propagation: 2 replicas on PostgreSQL ($db), $count revocations, B polled every $poll_ms ms"
echo "   command: bash bench/revocation-propagation.sh $count $poll_ms"
echo "   client: $measure --a http://127.0.0.1:$port_a --b http://127.0.0.1:$port_b --public-url $public --admin-token @A/admin-token --count $count --poll-ms $poll_ms"
"$measure" --a "http://127.0.0.1:$port_a" --b "http://127.0.0.1:$port_b" --public-url "$public" \
  --admin-token "@$work/a/admin-token" --count "$count" --poll-ms "$poll_ms"
echo "   machine: $(nproc) cores; $(uname -sr); $(psql "$admin_db" -qtAc 'show server_version' | sed 's/^/PostgreSQL /')"
