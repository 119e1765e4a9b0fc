#!/usr/bin/env bash
# AuthZEN over HTTP: `POST /access/v1/evaluation` against a release build serving the
# Todo interop policies (examples/authzen/todo), with keep-alive connections.
#
#   bash bench/authzen-load.sh [SECONDS] [CONNECTIONS]     (default 10 s, 16)
#
# Two runs: closed loop (each connection sends its next request when the previous one
# is answered) for the maximum rate, then open loop at half that rate, where latency is
# measured from each request's scheduled send time (no coordinated omission).
# Target (issue): ≥ 15 000 decisions/s at 16 keep-alive connections.
#
# The load generator is `crates/mandate/examples/authzen_load.rs` (no oha/wrk/hey here):
# one task and one keep-alive connection per connection. On a small machine it shares
# the cores with the server; the CPU each side used is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-16}

cargo build --release -q -p mandate --bin mandate --example authzen_load
target=${CARGO_TARGET_DIR:-target}
bin=${MANDATE_BIN:-$target/release/mandate}  # MANDATE_BIN: another build, for A/B pairs
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

policies_flag=()
if "$bin" serve --help 2>/dev/null | grep -q -- '--policies'; then
  policies_flag=(--policies examples/authzen/todo)
fi
MANDATE_LOG=${MANDATE_LOG:-warn} \
  "$bin" serve --data "$work/data" --listen "127.0.0.1:$port" "${policies_flag[@]}" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 300); do
  if [ -s "$work/data/admin-token" ] && curl -sf "$base/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log"; echo "the server exited" >&2; exit 1; fi
  sleep 0.1
done
token=$(tr -d '[:space:]' <"$work/data/admin-token")

probe='{"subject":{"type":"user","id":"CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},"action":{"name":"can_read_user"},"resource":{"type":"user","id":"CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"}}'
evaluate() {
  curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data "$probe" "$base/access/v1/evaluation" || true
}
if ! evaluate | grep -q '"decision":true'; then
  # No `serve --policies` (or it did not load): install the set through the API.
  echo "== installing examples/authzen/todo through PUT /v1/policies"
  python3 - examples/authzen/todo >"$work/set.json" <<'EOF'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
f = lambda p: {"name": p.name, "text": p.read_text()}
print(json.dumps({
    "policies": [f(p) for p in sorted(d.glob("*.cedar"))],
    "schemas": [f(p) for p in sorted(d.glob("*.cedarschema"))],
    "entities": f(d / "entities.json"),
}))
EOF
  curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data @"$work/set.json" "$base/v1/policies" >/dev/null
  if ! evaluate | grep -q '"decision":true'; then
    echo "the todo policies are not answering: $(evaluate)" >&2
    exit 1
  fi
fi

load=$target/release/examples/authzen_load
echo "== closed loop (maximum rate): $connections keep-alive connections, $duration s"
max=$("$load" "$base" "$token" "$duration" "$connections" 0 "$server" | tee /dev/stderr | awk '/decisions\/s/ {print $2}')
half=$(python3 -c "print(int(float('$max') / 2))")
echo "== open loop at half that rate ($half/s): $connections keep-alive connections, $duration s"
"$load" "$base" "$token" "$duration" "$connections" "$half" "$server"
echo "note: the generator (Rust, tokio + reqwest) shares the machine's cores with the server;"
echo "      the CPU each used is printed."
