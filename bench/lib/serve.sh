# What the benchmark scripts that start a server share.
#
#   source bench/lib/serve.sh
#   bench_args "--flag-a --flag-b" "$@"   # the options this script accepts besides --database-url
#   bench_serve "$bin" "$database_url" [WRAPPER…]   # e.g. valgrind --tool=callgrind …
#
# bench_args sets: positional (array), flags (the accepted options given, array),
# database_url. An option not accepted stops the script.
#
# bench_serve starts a release `mandate serve` on a fresh data directory and port, and
# stops it (and drops its database) when the calling script exits.
#
# Sets: work (a temporary directory, removed at exit; the data directory is $work/data),
# base (http://127.0.0.1:PORT), server (the server's pid), store (sqlite | postgres).
# MANDATE_LOG sets the server's log filter (default warn) and KEEP_LOG=FILE keeps its log
# there: MANDATE_LOG=warn,mandate_core::ledger=trace logs each ledger batch's size and
# commit time ("audit batch committed events=… micros=…").
# A --database-url names a database that is DROPPED and created fresh (and dropped again
# at exit), so its name must contain `bench`.

bench_args() {
  local accepted=" $1 "
  shift
  positional=()
  flags=()
  database_url=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --database-url) database_url=$2; shift ;;
      --database-url=*) database_url=${1#--database-url=} ;;
      -*)
        if [[ "$accepted" == *" $1 "* ]]; then flags+=("$1"); else
          echo "unknown option $1" >&2
          exit 2
        fi ;;
      *) positional+=("$1") ;;
    esac
    shift
  done
}

bench_serve() {
  local bin=$1 database_url=$2
  shift 2
  work=$(mktemp -d)
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base="http://127.0.0.1:$port"
  local store_flags=()
  bench_admin_db=""
  if [ -n "$database_url" ]; then
    bench_db=${database_url##*/}
    bench_db=${bench_db%%\?*}
    case "$bench_db" in
      *bench*) ;;
      *) echo "--database-url: the database is dropped and recreated; name one containing 'bench' (got '$bench_db')" >&2; exit 2 ;;
    esac
    bench_admin_db="${database_url%/*}/postgres"
    psql "$bench_admin_db" -qtAc "DROP DATABASE IF EXISTS $bench_db" >/dev/null
    psql "$bench_admin_db" -qtAc "CREATE DATABASE $bench_db" >/dev/null
    store_flags=(--database-url "$database_url")
  fi
  MANDATE_LOG=${MANDATE_LOG:-warn} \
    "$@" "$bin" serve --data "$work/data" --listen "127.0.0.1:$port" "${store_flags[@]}" >"$work/server.log" 2>&1 &
  server=$!
  trap bench_stop EXIT
  # Under a wrapper such as valgrind the start takes longer.
  for _ in $(seq 1 1200); do
    if [ -s "$work/data/admin-token" ] && curl -sf "$base/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log"; echo "the server exited" >&2; exit 1; fi
    sleep 0.1
  done
  store=$(curl -sf "$base/readyz" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("store", "?"))')
}

bench_stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  if [ -n "$bench_admin_db" ]; then psql "$bench_admin_db" -qtAc "DROP DATABASE IF EXISTS $bench_db" >/dev/null || true; fi
  if [ -n "${KEEP_LOG:-}" ]; then cp "$work/server.log" "$KEEP_LOG" || true; fi
  rm -rf "$work"
}
