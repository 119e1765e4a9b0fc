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
# The load generator is Python (no oha/wrk/hey here): one process per connection, each
# with one persistent http.client connection. Python costs far more CPU per request
# than the server, and on a small machine it shares the cores with it; the CPU each side
# used is printed, and the rate is then a lower bound on what the server can do.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-16}

cargo build --release -q -p mandate
bin=target/release/mandate
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

python3 - "$port" "$token" "$duration" "$connections" "$server" <<'EOF'
import http.client, json, os, sys, time
from concurrent.futures import ProcessPoolExecutor

port, token, duration, connections, server = (
    int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
RICK = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"
MORTY = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"
SUMMER = "CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"
JERRY = "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"
TODO = "7240d0db-8ff0-41ec-98b2-34a096273b92"

def req(subject, action, kind, rid, owner=None):
    resource = {"type": kind, "id": rid}
    if owner:
        resource["properties"] = {"ownerID": owner}
    return json.dumps({"subject": {"type": "user", "id": subject},
                       "action": {"name": action}, "resource": resource}).encode()

BODIES = [
    req(RICK, "can_read_user", "user", MORTY),
    req(MORTY, "can_read_todos", "todo", TODO),
    req(MORTY, "can_update_todo", "todo", TODO, "morty@the-citadel.com"),
    req(JERRY, "can_delete_todo", "todo", TODO, "rick@the-citadel.com"),
    req(RICK, "can_delete_todo", "todo", TODO, "morty@the-citadel.com"),
    req(SUMMER, "can_create_todo", "todo", TODO),
    req(JERRY, "can_create_todo", "todo", TODO),
]
HEADERS = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

def worker(args):
    index, start, rate = args
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    latencies, errors, k = [], 0, 0
    while time.time() < start:
        time.sleep(0.001)
    t_start = time.perf_counter()
    deadline = t_start + duration
    interval = 1.0 / rate if rate else 0.0
    while True:
        if rate:
            t0 = t_start + k * interval + index * interval / connections
            now = time.perf_counter()
            if t0 >= deadline:
                break
            if t0 > now:
                time.sleep(t0 - now)
        else:
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
        conn.request("POST", "/access/v1/evaluation", BODIES[(index + k) % len(BODIES)], HEADERS)
        response = conn.getresponse()
        body = response.read()
        t1 = time.perf_counter()
        k += 1
        if response.status == 200 and b'"decision"' in body:
            latencies.append(t1 - t0)
        else:
            errors += 1
    conn.close()
    return latencies, errors

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def run(label, rate_per_connection):
    server_cpu = cpu_seconds(server)
    before = os.times()
    start = time.time() + 1.0
    with ProcessPoolExecutor(max_workers=connections) as pool:
        results = list(pool.map(worker, [(i, start, rate_per_connection) for i in range(connections)]))
    after = os.times()
    server_cpu = cpu_seconds(server) - server_cpu
    client_cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    latencies = sorted(l for r in results for l in r[0])
    errors = sum(r[1] for r in results)
    n = len(latencies)
    q = lambda p: latencies[min(n - 1, int(round(p * (n - 1))))] * 1e3 if n else float("nan")
    print(f"== {label}: {connections} keep-alive connections, {duration:.0f} s")
    print(f"   decisions/s {n / duration:,.0f}   ok {n:,}   errors {errors:,}")
    print(f"   latency ms  p50 {q(0.5):.2f}  p90 {q(0.9):.2f}  p99 {q(0.99):.2f}  p99.9 {q(0.999):.2f}  max {q(1.0):.2f}")
    print(f"   CPU s       server {server_cpu:.1f}   load generator {client_cpu:.1f}   (cores: {os.cpu_count()})")
    return n / duration

rate = run("closed loop (maximum rate)", 0)
if rate > 0:
    run(f"open loop at half that rate ({rate / 2:,.0f}/s)", rate / 2 / connections)
print("note: the generator is Python; where its CPU is comparable to the server's on a machine this")
print("      small, the rates above are a lower bound for the server, not its ceiling.")
EOF
