#!/usr/bin/env bash
# Task tokens per second at `POST /oauth2/token`, against a release build of
# `mandate serve` (embedded SQLite by default, or PostgreSQL).
#
#   bash bench/token-issuance.sh [SECONDS] [CONNECTIONS] [AGENTS] [--dpop] [--exchange]
#                                [--database-url postgres://…/mandate_token_bench]
#   (defaults: 10 s, 16 keep-alive connections, 64 agents)
#
# The generator (`crates/mandate/examples/token_load.rs`) first sets up, through the
# admin API, one human, AGENTS agents with Ed25519 keys (public JWKs registered), a tool
# server with two tools and a consented mandate per agent. Then each connection, closed
# loop, asks for a token: `client_credentials` + `authorization_details` naming the
# agent's mandate, authenticated by a `private_key_jwt` assertion signed per request
# (unique `jti`). `--dpop` adds a fresh DPoP proof to every request; `--exchange`
# measures RFC 8693 renewals instead (each new token is the next subject token).
# Every issued token is a grants row, a recorded assertion `jti` and a durable audit
# event (SQLite: WAL, synchronous=FULL; PostgreSQL: synchronous_commit as configured).
#
# --database-url: the database named there is DROPPED and created fresh (and dropped
# again at the end), so its name must contain `bench`.
#
# The generator shares the machine's cores with the server; the CPU each used is
# printed.
set -euo pipefail
cd "$(dirname "$0")/.."
positional=()
flags=()
database_url=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dpop | --exchange) flags+=("$1") ;;
    --database-url) database_url=$2; shift ;;
    --database-url=*) database_url=${1#--database-url=} ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) positional+=("$1") ;;
  esac
  shift
done
duration=${positional[0]:-10}
connections=${positional[1]:-16}
agents=${positional[2]:-64}

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p mandate --bin mandate --example token_load
bin=${MANDATE_BIN:-$target/release/mandate}  # MANDATE_BIN: another build, for A/B pairs
load=$target/release/examples/token_load
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

extra="${flags[*]:+ ${flags[*]}}"
echo "== token issuance: store $store, $connections keep-alive connections, $agents agents, $duration s$extra"
echo "   command: bash bench/token-issuance.sh $duration $connections $agents$extra${database_url:+ --database-url $database_url}"
echo "   generator: $load --url $base --admin-token @DATA/admin-token --seconds $duration --connections $connections --agents $agents$extra --server-pid $server"
"$load" --url "$base" --admin-token "@$work/data/admin-token" --seconds "$duration" \
  --connections "$connections" --agents "$agents" "${flags[@]}" --server-pid "$server"
echo "   machine: $(nproc) cores; $(uname -sr)"
