#!/usr/bin/env python3
"""Where a server's CPU went, by kind of work, from a `perf record` of it.

    perf record -F 999 -g -o FILE -p "$(pgrep -f 'release/mandate serve')" -- sleep 10
    python3 bench/lib/cpu_groups.py FILE [PER_REQUEST_US]

Reads `perf report --no-children --sort comm,dso,sym` (self time per function) and sums
the samples into groups by function name: the signatures (Ed25519, SHA-512 inside
them), SQLite's own code, the kernel's share split into waiting and waking threads,
writing files and syncing them, and the network; memory allocation; copies; JSON; HTTP;
the async runtime; the rest. With PER_REQUEST_US (the server's CPU per request that
the benchmark printed) each group is also given in microseconds per request.

Samples are taken where the CPU can be interrupted: time with interrupts off (a
context switch, waking a thread) is charged to the point that turns them back on
(`finish_task_switch`, `_raw_spin_unlock_irq*`), which is why those count as the cost
of switching threads here.
"""

import re
import subprocess
import sys

# First match wins; patterns are matched against the symbol as perf prints it ("[k] …"
# in the kernel, "[.] …" in user space).
GROUPS = [
    ("signatures (Ed25519, its SHA-512)",
     r"edwards25519|ed25519|sha512|bignum|curve25519|bn_|p25519"),
    ("SHA-256 (ledger chain, token cache)", r"sha2::|sha256"),
    ("kernel: switching and waking threads",
     r"\[k\] (finish_task_switch|_raw_spin_unlock_irq|__schedule|schedule|try_to_wake_up|"
     r"futex|irqentry_exit|__raw_callee_save|pick_next|dequeue|enqueue|update_curr|"
     r"psi_|select_task_rq|ttwu)"),
    ("kernel: writing and syncing files",
     r"\[k\] .*(iowrite|ext4|folio|filemap|mark_buffer|block_|blk|bio|jbd|clear_page|"
     r"copy_folio|page_cache|xas_|writeback|fdatasync|generic_perform|__find_get)"),
    ("kernel: network", r"\[k\] .*(tcp|skb|sock|ip_|inet|net_|__dev|loopback|softirq|"
     r"copy_to_iter|copy_from_iter|epoll|ep_|poll)"),
    ("kernel: other", r"\[k\]"),
    ("SQLite", r"sqlite3|pcache|wal[A-Z]|btree|balance|vdbe|yy_|pager|unixS|unixW|"
             r"unixR|unixL|unixF|robust_|sqlx_sqlite|libsqlite3"),
    ("memory allocation", r"mi_|malloc|free|operator delete|operator new|realloc|"
                          r"alloc::alloc|__rust_(alloc|dealloc)"),
    ("copies and compares", r"memmove|memcpy|memset|memcmp|strlen"),
    ("JSON", r"serde_json|serde_core|serde::|canonical|mandate_jose::json|indexmap|"
             r"format_escaped|itoa|ryu"),
    ("HTTP (hyper, axum, httparse, headers)", r"hyper|axum|httparse|http::|tower|"
                                             r"form_urlencoded|percent_encoding|h2::"),
    ("async runtime (tokio, futures, channels)", r"tokio|futures|flume|parking_lot|"
                                                 r"pthread|crossbeam|event_listener|"
                                                 r"syscall|epoll|__GI___|__libc"),
    ("hashing maps (SipHash, hashbrown)", r"sip::|hashbrown|hash_one|BuildHasher"),
    ("tracing and metrics", r"tracing|metrics|opentelemetry"),
]


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = sys.argv[1]
    per_request = float(sys.argv[2]) if len(sys.argv) > 2 else None
    out = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--sort", "comm,dso,sym",
         "--stdio", "-g", "none", "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    totals: dict[str, float] = {}
    threads: dict[str, float] = {}
    compiled = [(name, re.compile(pattern)) for name, pattern in GROUPS]
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+(.*)$", line)
        if not m:
            continue
        share, comm, dso, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        text = sym
        group = next((name for name, rx in compiled if rx.search(text)), "other")
        totals[group] = totals.get(group, 0.0) + share
        threads[comm] = threads.get(comm, 0.0) + share
    # perf's rounded per-line shares need not add up to 100: scale them so they do.
    whole = sum(totals.values()) or 1.0
    totals = {k: v * 100 / whole for k, v in totals.items()}
    threads = {k: v * 100 / whole for k, v in threads.items()}
    print("   by thread: " + ", ".join(
        f"{comm} {share:.1f} %" for comm, share in sorted(threads.items(), key=lambda x: -x[1])))
    for group, share in sorted(totals.items(), key=lambda x: -x[1]):
        us = f"  {share * per_request / 100:7.1f} µs" if per_request else ""
        print(f"   {share:6.1f} %{us}  {group}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
