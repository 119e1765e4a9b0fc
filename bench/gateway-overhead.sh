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
# durable in the ledger before it is forwarded (SQLite: WAL, fsync'd before the answer;
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
source bench/lib/serve.sh
bench_args "" "$@"
duration=${positional[0]:-10}
connections=${positional[1]:-16}

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p mandate --bin mandate --example gateway_load
bin=${MANDATE_BIN:-$target/release/mandate}  # MANDATE_BIN: another build, for A/B pairs
load=$target/release/examples/gateway_load
bench_serve "$bin" "$database_url"

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
