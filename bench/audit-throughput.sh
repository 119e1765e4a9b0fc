#!/usr/bin/env bash
# Durable audit appends per second (events shaped like tool-call decisions: a mandate,
# an agent, the tool, the deciding policies, an argument hash; 1 024 distinct mandates) through the group-commit writer, on SQLite and on
# PostgreSQL, with a release build. Each acknowledged event is committed (SQLite: WAL,
# fsync'd before anyone is answered; PostgreSQL: synchronous_commit as configured, default on). With the
# lookup index, the figure that counts is "appended and indexed": the time until the
# index has caught up with the last event, not only until the last append.
#
#   bash bench/audit-throughput.sh [EVENTS] [CONCURRENCY]
#
# Environment: MANDATE_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres;
# a database `mandate_bench` is created and dropped there).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-200000}
concurrency=${2:-1024}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p mandate
bin=${MANDATE_BIN:-$target/release/mandate}  # MANDATE_BIN: another build, for A/B pairs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== SQLite ($events events, $concurrency appenders), appends only"
"$bin" audit load --quiet --no-index --data "$work/sqlite-appends" --events "$events" --concurrency "$concurrency"
echo "== SQLite ($events events, $concurrency appenders), with the lookup index kept up"
"$bin" audit load --quiet --data "$work/sqlite" --events "$events" --concurrency "$concurrency"
"$bin" audit verify --data "$work/sqlite"

admin=${MANDATE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if psql "$admin" -qtAc 'select 1' >/dev/null 2>&1; then
  psql "$admin" -qtAc 'DROP DATABASE IF EXISTS mandate_bench' >/dev/null
  psql "$admin" -qtAc 'CREATE DATABASE mandate_bench' >/dev/null
  url="${admin%/*}/mandate_bench"
  echo "== PostgreSQL ($events events, $concurrency appenders), with the lookup index kept up"
  "$bin" audit load --quiet --data "$work/pg" --database-url "$url" --events "$events" --concurrency "$concurrency"
  "$bin" audit verify --database-url "$url"
  psql "$admin" -qtAc 'DROP DATABASE IF EXISTS mandate_bench' >/dev/null
else
  echo "== PostgreSQL: not reachable at $admin, skipped"
fi
