"""Reads `callgrind_annotate --inclusive=yes` on stdin and prints instructions per
request (argv[1] requests in the window) and the functions that take most of them,
leaving out the async runtime's and the web stack's plumbing, which includes
everything."""

import re
import sys

requests = max(int(sys.argv[1]), 1)
plumbing = re.compile(
    r"tokio::runtime|std::sys|start_thread|thread_start|call_once|__rust_begin"
    r"|core::ops::function|PollFn|Instrumented|MapIntoResponseFuture|Oneshot"
    r"|future::map::Map|RouteFuture|from_fn|GracefulConnection|::poll_catch"
)
line_re = re.compile(r"\s*([0-9,]+) \(\s*[0-9.]+%\)\s+(.*)")
rows, total = [], 0
for line in sys.stdin:
    m = line_re.match(line)
    if not m:
        continue
    count = int(m.group(1).replace(",", ""))
    name = re.sub(r" \[[^]]*\]$", "", m.group(2)).removeprefix("???:")
    if "PROGRAM TOTALS" in name:
        total = count
    elif not plumbing.search(name):
        rows.append((count, name))
print(f"   instructions per request  {total / requests:,.0f}")
print("   per request, inclusive (the top functions, plumbing left out):")
for count, name in rows[:30]:
    print(f"     {count / requests:>10,.0f}  {100 * count / max(total, 1):5.1f} %  {name[:110]}")
