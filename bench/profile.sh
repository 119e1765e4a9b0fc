#!/usr/bin/env bash
# What one gateway call or one task token costs the server, counted rather than timed,
# so that a change can be compared before and after on a noisy machine.
#
#   bash bench/profile.sh gateway|tokens [SECONDS] [CONNECTIONS] [--callgrind] [--dpop]
#                         [--wal-pages] [--cpu-groups]
#                         [--database-url postgres://…/mandate_profile_bench]
#   (default: 5 s measured, once the load is running, on 16 connections)
#
# The load is the one of bench/gateway-overhead.sh (`tools/call` through the gateway;
# its direct phase runs first and is not counted) or of bench/token-issuance.sh
# (client_credentials + private_key_jwt, 64 agents), on CONNECTIONS keep-alive
# connections: 1 shows what a lone request costs, where the hand-offs between threads
# weigh most. Requests are counted from the server's own /metrics (`mandate_http_requests`
# of the route), read when the window opens and when it closes.
#
# Without --callgrind (needs `perf`): per request, each system call made more than once
# per hundred requests, and context switches, in all and by group of threads (the
# groups of the other scripts' CPU by thread, with the WAL's sync thread apart from the
# rest). With --callgrind (needs valgrind): the server runs under callgrind, and what
# is printed is instructions per request and the functions that take most of them
# (inclusive); callgrind counts the same work the same way from run to run, which a
# timing on a shared 2-core VM does not. Valgrind does not emulate SHA-NI, so SHA-256
# is overcounted there. On PostgreSQL, the database server's own work is not counted
# (it is another process).
#
# --cpu-groups (without --callgrind): the server is also sampled by `perf record` over
# the window, and its CPU is summed by kind of work (bench/lib/cpu_groups.py: the
# signatures, SQLite, the kernel's switching of threads, its file writes, the network,
# allocation, JSON, HTTP, …), in % and in µs per request (the server's CPU over the
# window, from /proc, divided by the requests answered in it).
#
# --wal-pages (SQLite): after the window, which B-trees each commit wrote, per commit
# (bench/lib/wal_pages.py over a copy of the database and its WAL taken under load):
# what the fsync of a batch carries, and which indexes scatter it.
#
# MANDATE_BIN: another build, for A/B pairs. CALLGRIND_OUT=FILE: keep the callgrind
# profile there. --database-url: the database is dropped and created fresh (its name
# must contain `bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib/serve.sh
bench_args "--callgrind --dpop --wal-pages --cpu-groups" "$@"
callgrind=false
if [[ " ${flags[*]} " == *" --callgrind "* ]]; then callgrind=true; fi
# --dpop (tokens): every token request carries a fresh DPoP proof, as in
# bench/token-issuance.sh --dpop.
dpop=()
if [[ " ${flags[*]} " == *" --dpop "* ]]; then dpop=(--dpop); fi
what=${positional[0]:-}
seconds=${positional[1]:-5}
connections=${positional[2]:-16}
case "$what" in
  gateway) example=gateway_load; route='/mcp/{server}' ;;
  tokens) example=token_load; route='/oauth2/token' ;;
  *) echo "usage: bash bench/profile.sh gateway|tokens [SECONDS] [CONNECTIONS] [--callgrind] [--database-url URL]" >&2; exit 2 ;;
esac
if $callgrind; then
  command -v valgrind >/dev/null || { echo "--callgrind needs valgrind (apt-get install valgrind)" >&2; exit 2; }
else
  command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf), or use --callgrind" >&2; exit 2; }
fi

target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p mandate --bin mandate --example "$example"
bin=${MANDATE_BIN:-$target/release/mandate}
load=$target/release/examples/$example
wrapper=()
if $callgrind; then
  cg_dir=$(mktemp -d)
  wrapper=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$cg_dir/callgrind.out")
fi
bench_serve "$bin" "$database_url" "${wrapper[@]}"

# Answered requests of the route so far.
answered() {
  curl -sf "$base/metrics" | ROUTE=$route python3 -c '
import os, re, sys
route = os.environ["ROUTE"]
n = 0
for line in sys.stdin:
    m = re.match(r"mandate_http_requests_total\{(.*)\} (\d+)", line)
    if m and f"route=\"{route}\"" in m.group(1):
        n += int(m.group(2))
print(n)'
}

# The load runs well past the window (longer under callgrind, which slows the server).
slow=1
if $callgrind; then slow=8; fi
span=$((seconds * slow + 30))
case "$what" in
  gateway) "$load" --url "$base" --admin-token "@$work/data/admin-token" --seconds "$span" \
             --warmup 1 --connections "$connections" --no-proxy >"$work/load.log" 2>&1 & ;;
  tokens) "$load" --url "$base" --admin-token "@$work/data/admin-token" --seconds "$span" \
            --connections "$connections" --agents 64 "${dpop[@]}" >"$work/load.log" 2>&1 & ;;
esac
generator=$!
trap 'kill $generator 2>/dev/null || true; bench_stop; rm -rf "${cg_dir:-/nonexistent}"' EXIT

# Wait until the route is under load (the gateway's direct phase comes first), then 1 s.
last=$(answered)
for _ in $(seq 1 1200); do
  sleep 0.5
  now=$(answered)
  [ "$now" -gt $((last + 50)) ] && break
  last=$now
  kill -0 "$generator" 2>/dev/null || { cat "$work/load.log"; echo "the load generator exited" >&2; exit 1; }
done
sleep 1

echo "== profile: $what, store $store, $connections connections, $seconds s under load$($callgrind && echo ', under callgrind')"
echo "   command: bash bench/profile.sh $what $seconds $connections$($callgrind && echo ' --callgrind')${dpop[*]:+ --dpop}$([[ " ${flags[*]} " == *" --wal-pages "* ]] && echo ' --wal-pages')$([[ " ${flags[*]} " == *" --cpu-groups "* ]] && echo ' --cpu-groups')${database_url:+ --database-url $database_url}"
if $callgrind; then
  callgrind_control -z "$server" >/dev/null 2>&1
  callgrind_control -i on "$server" >/dev/null 2>&1
  before=$(answered)
  sleep "$seconds"
  callgrind_control -i off "$server" >/dev/null 2>&1
  after=$(answered)
  callgrind_control -d "$server" >/dev/null 2>&1
  sleep 2
  requests=$((after - before))
  echo "   requests    $requests in the window"
  out=$(ls -t "$cg_dir"/callgrind.out* | head -1)
  # CALLGRIND_OUT=FILE keeps the profile (for callgrind_annotate's exclusive costs).
  if [ -n "${CALLGRIND_OUT:-}" ]; then cp "$out" "$CALLGRIND_OUT"; fi
  callgrind_annotate --inclusive=yes "$out" 2>/dev/null \
    | python3 bench/lib/callgrind_per_request.py "$requests"
else
  before=$(answered)
  # The calls a request can make; a short list keeps perf's attach and detach (per
  # thread and event) short next to the window.
  events=context-switches
  for call in read write readv writev pread64 pwrite64 recvfrom sendto recvmsg sendmsg \
    fsync fdatasync futex epoll_wait fcntl openat close mmap munmap mprotect madvise \
    getrandom sched_yield nanosleep clock_nanosleep accept4; do
    events="$events,syscalls:sys_enter_$call"
  done
  groups=false
  if [[ " ${flags[*]} " == *" --cpu-groups "* ]]; then groups=true; fi
  # The server's CPU so far, user and system, in clock ticks (/proc/PID/stat, fields 14
  # and 15; the command name in field 2 may hold spaces, so count after its ')').
  ticks() { sed 's/.*) //' "/proc/$server/stat" | awk '{print $12 + $13}'; }
  cpu_before=$(ticks)
  if $groups; then
    perf record -q -F 999 -o "$work/perf.data" -p "$server" -- sleep "$seconds" >/dev/null 2>&1 &
    recorder=$!
  fi
  started=$(date +%s.%N)
  perf stat --per-thread -x, -e "$events" -p "$server" -- sleep "$seconds" 2>"$work/perf.csv"
  after=$(answered)
  cpu_after=$(ticks)
  if $groups; then wait "$recorder" || true; fi
  # perf counts for SECONDS; the requests were read around its attach and detach too:
  # the window's share of them, at the rate seen over the whole span.
  took=$(python3 -c "import time; print(f'{time.time() - $started:.2f}')")
  requests=$(python3 -c "print(round(($after - $before) * $seconds / $took))")
  echo "   requests    about $requests in the $seconds s window ($((after - before)) over the $took s perf took)"
  echo "   per request (events seen at least once per 100 requests):"
  REQ=$requests python3 -c '
import collections, csv, os, sys
n = max(int(os.environ["REQ"]), 1)
switches = "context-switches"
# perf --per-thread names each row comm-tid; comm is cut to 15 characters. The groups
# are those of `cpu_by_thread` (crates/mandate/examples/support), WAL sync apart.
groups = [("tokio-rt", "async workers"), ("sqlx-sqlite", "SQLite threads"),
          ("mandate-wal-syn", "WAL sync"), ("", "other threads")]
by = collections.defaultdict(collections.Counter)
for r in csv.reader(open(sys.argv[1])):
    if len(r) < 4 or not r[1].strip().isdigit():
        continue
    comm = r[0].rsplit("-", 1)[0]
    group = next(name for prefix, name in groups if comm.startswith(prefix))
    by[group][r[3].replace("syscalls:sys_enter_", "")] += int(r[1])
total = collections.Counter()
for counts in by.values():
    total.update(counts)
rows = sorted(((v / n, name) for name, v in total.items()), reverse=True)
for v, name in rows:
    if v >= 0.01:
        print(f"     {v:7.2f}  {name}")
def calls(c):
    return sum(v for name, v in c.items() if name != switches)
print(f"     {calls(total) / n:7.2f}  system calls in all")
print("   by thread group (context switches · system calls · the calls made at least 0.5 times):")
for _, group in groups:
    c = by.get(group)
    if not c:
        continue
    top = " ".join(f"{name} {v / n:.2f}" for name, v in c.most_common() if name != switches and v / n >= 0.5)
    print(f"     {group:20} {c[switches] / n:6.2f} · {calls(c) / n:6.2f} · {top}")' "$work/perf.csv"
  if $groups; then
    per_request=$(python3 -c "import os; print(f'{($cpu_after - $cpu_before) / os.sysconf(\"SC_CLK_TCK\") * 1e6 / max($after - $before, 1):.1f}')")
    echo "   where the server's CPU went ($per_request µs per request over the window; self time by function, grouped):"
    python3 bench/lib/cpu_groups.py "$work/perf.data" "$per_request"
  fi
fi
if [[ " ${flags[*]} " == *" --wal-pages "* ]]; then
  if [ "$store" != sqlite ]; then
    echo "   --wal-pages: SQLite only" >&2
  else
    command -v sqlite3 >/dev/null || { echo "--wal-pages needs sqlite3 (apt-get install sqlite3)" >&2; exit 2; }
    mkdir -p "$work/wal"
    cp "$work/data/mandate.db" "$work/data/mandate.db-wal" "$work/wal/"
    echo "   what each commit wrote (the WAL's last 4000 pages):"
    python3 bench/lib/wal_pages.py "$work/wal"
  fi
fi
echo "   machine: $(nproc) cores; $(uname -sr)"
