#!/usr/bin/env bash
# In-process policy decisions: `decide_call` with Mandate's built-in policies plus
# N = 10, 100, 1 000, 10 000 operator policies (indexed and unindexed; criterion
# medians), the growth from 10 to 10 000, and per-decision p50/p99 over 200 000
# varied calls (1 000 tools, 10 000 mandates) with the built-ins alone and with
# 10 000 operator policies.
#
#   bash bench/pdp-decision.sh [criterion arguments…]
#
# Environment: DECISIONS (default 200000) for the latency run; SKIP_LATENCY=1 skips it.
# Targets (issue / PRODUCT.md): 10 000 operator policies p50 ≤ 20 µs and growth
# 10 → 10 000 ≤ 2×; default policies p50 ≤ 10 µs, p99 ≤ 50 µs. Reported, not asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
criterion="${CARGO_TARGET_DIR:-target}/criterion"

cargo bench -p mandate-policy --bench decision -- "$@"

echo
echo "== decide_call: criterion median per decision (varied calls, built-ins + N operator policies)"
python3 - "$criterion" <<'EOF'
import json, os, sys
root = sys.argv[1]
def median(group, name):
    path = os.path.join(root, group, name, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] / 1000.0  # ns -> µs
    except (OSError, KeyError, ValueError):
        return None
def show(v):
    return "-" if v is None else (f"{v:,.1f} µs" if v < 1000 else f"{v / 1000:,.2f} ms")
sizes = [10, 100, 1000, 10000]
rows = [(n, median("decide_call_indexed", str(n)), median("decide_call_unindexed", str(n))) for n in sizes]
print(f"{'operator N':>10} {'indexed':>12} {'unindexed':>12} {'index speedup':>14}")
for n, i, u in rows:
    speed = "-" if i is None or u is None else f"{u / i:,.1f}×"
    print(f"{n:>10,} {show(i):>12} {show(u):>12} {speed:>14}")
i10, u10 = rows[0][1], rows[0][2]
i10k, u10k = rows[-1][1], rows[-1][2]
if i10 and i10k:
    g = i10k / i10
    print(f"growth 10 → 10 000, indexed:   {g:.2f}×  (target ≤ 2×: {'met' if g <= 2 else 'MISSED'})")
    print(f"median at 10 000, indexed:     {i10k:.1f} µs (target p50 ≤ 20 µs: {'met' if i10k <= 20 else 'MISSED'})")
if u10 and u10k:
    print(f"growth 10 → 10 000, unindexed: {u10k / u10:.1f}×")
a_i, a_u = median("decide_access_todo", "indexed"), median("decide_access_todo", "unindexed")
print(f"decide_access (AuthZEN todo world): indexed {show(a_i)}, unindexed {show(a_u)}")
EOF

if [ "${SKIP_LATENCY:-0}" != 1 ]; then
  echo
  echo "== decide_call: per-decision percentiles (indexed; operator 0 = built-in policies only)"
  cargo run --release -q -p mandate-policy --example decision_latency -- \
    --decisions "${DECISIONS:-200000}" --policies 0,10000
fi
