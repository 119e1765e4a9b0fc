#!/usr/bin/env bash
# What the MCP gateway adds to a `tools/call`: the same call sent straight to an
# upstream and through a release build of `mandate serve` (embedded SQLite by default,
# or PostgreSQL), in one run.
#
#   bash bench/gateway-overhead.sh [SECONDS] [CONNECTIONS]
#                                  [--database-url postgres://…/mandate_gateway_bench]
#   (defaults: 10 s measured per phase after 1 s of warm-up, 16 keep-alive connections)
#
# The generator (`crates/mandate/examples/gateway_load.rs`) starts the demo bank
# (`mandate-demo`) as its upstream in a child process on 127.0.0.1, and sets up through
# the admin API a tool server `bank` pointing at it, a human, an agent with an Ed25519
# key, a consented mandate with scope [bank.get_balance] and no budgets, and a task
# token for `{server}/mcp`. Then, closed loop on CONNECTIONS connections:
# `tools/call get_balance {"account":"alice-checking"}` direct to the upstream's /mcp,
# then through a plain forwarder (the generator's own `--serve-proxy` process: axum in,
# reqwest out, no token, policy or ledger — the floor any proxy pays for its two HTTP
# legs here), then to `{server}/mcp/bank` with the token. Every gateway call is a decision made
# durable in the ledger before it is forwarded (SQLite: WAL, synchronous=FULL;
# PostgreSQL: synchronous_commit as configured). It prints both phases, what the
# gateway adds against PRODUCT.md §11, and the fsync latency of the data directory.
#
# --database-url: the database named there is DROPPED and created fresh (and dropped
# again at the end), so its name must contain `bench`.
#
# The server, the upstream and the generator share the machine's cores; the CPU each
# used per phase is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
positional=()
database_url=""
while [ $# -gt 0 ]; do
  case "$1" in
    --database-url) database_url=$2; shift ;;
    --database-url=*) database_url=${1#--database-url=} ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) positional+=("$1") ;;
  esac
  shift
done
duration=${positional[0]:-10}
connections=${positional[1]:-16}

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p mandate --bin mandate --example gateway_load
bin=${MANDATE_BIN:-$target/release/mandate}  # MANDATE_BIN: another build, for A/B pairs
load=$target/release/examples/gateway_load
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

store_flags=()
admin_db=""
if [ -n "$database_url" ]; then
  db=${database_url##*/}
  db=${db%%\?*}
  case "$db" in
    *bench*) ;;
    *) echo "--database-url: the database is dropped and recreated; name one containing 'bench' (got '$db')" >&2; exit 2 ;;
  esac
  admin_db="${database_url%/*}/postgres"
  psql "$admin_db" -qtAc "DROP DATABASE IF EXISTS $db" >/dev/null
  psql "$admin_db" -qtAc "CREATE DATABASE $db" >/dev/null
  store_flags=(--database-url "$database_url")
fi

MANDATE_LOG=${MANDATE_LOG:-warn} \
  "$bin" serve --data "$work/data" --listen "127.0.0.1:$port" "${store_flags[@]}" >"$work/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  if [ -n "$admin_db" ]; then psql "$admin_db" -qtAc "DROP DATABASE IF EXISTS $db" >/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  if [ -s "$work/data/admin-token" ] && curl -sf "$base/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log"; echo "the server exited" >&2; exit 1; fi
  sleep 0.1
done
store=$(curl -sf "$base/readyz" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("store", "?"))')

echo "== gateway overhead: store $store, $connections keep-alive connections, $duration s per phase after 1 s warm-up"
echo "   command: bash bench/gateway-overhead.sh $duration $connections${database_url:+ --database-url $database_url}"
echo "   generator: $load --url $base --admin-token @DATA/admin-token --seconds $duration --connections $connections --server-pid $server --fsync-dir DATA"
"$load" --url "$base" --admin-token "@$work/data/admin-token" --seconds "$duration" \
  --connections "$connections" --server-pid "$server" --fsync-dir "$work/data"
if [ -s "$work/server.log" ]; then
  echo "   server log (warn and above):"
  sed 's/^/     /' "$work/server.log" | tail -n 20
fi
echo "   machine: $(nproc) cores; $(uname -sr)"
