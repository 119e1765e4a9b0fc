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
# event (SQLite: WAL, fsync'd before the answer; PostgreSQL: synchronous_commit as configured).
#
# --database-url: the database named there is DROPPED and created fresh (and dropped
# again at the end), so its name must contain `bench`.
#
# The generator shares the machine's cores with the server; the CPU each used is
# printed.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/serve.sh
bench_args "--dpop --exchange" "$@"
duration=${positional[0]:-10}
connections=${positional[1]:-16}
agents=${positional[2]:-64}

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p mandate --bin mandate --example token_load
bin=${MANDATE_BIN:-$target/release/mandate}  # MANDATE_BIN: another build, for A/B pairs
load=$target/release/examples/token_load
bench_serve "$bin" "$database_url"

extra="${flags[*]:+ ${flags[*]}}"
echo "== token issuance: store $store, $connections keep-alive connections, $agents agents, $duration s$extra"
echo "   command: bash bench/token-issuance.sh $duration $connections $agents$extra${database_url:+ --database-url $database_url}"
echo "   generator: $load --url $base --admin-token @DATA/admin-token --seconds $duration --connections $connections --agents $agents$extra --server-pid $server"
"$load" --url "$base" --admin-token "@$work/data/admin-token" --seconds "$duration" \
  --connections "$connections" --agents "$agents" "${flags[@]}" --server-pid "$server"
echo "   machine: $(nproc) cores; $(uname -sr)"
