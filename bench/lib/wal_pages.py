"""Which B-trees an SQLite commit writes: the WAL's last frames, grouped into commits,
each frame's page named by `dbstat` (table or index, leaf or internal).

    python3 bench/lib/wal_pages.py DIR [FRAMES]

DIR holds a copy of `mandate.db` and `mandate.db-wal` taken while the load ran (a copy
taken mid-write ends at the last whole frame, as SQLite's own recovery would). Only the
last FRAMES frames (default 4000) are counted, so the figures are of the load, not of
the setup before it. Needs the `sqlite3` command (Debian's has `dbstat`).
"""

import collections
import struct
import subprocess
import sys


def frames(wal: bytes):
    """(page number, database size after commit or 0) of each valid frame."""
    if len(wal) < 32:
        return []
    _magic, _version, page_size, _seq, salt1, salt2, _c1, _c2 = struct.unpack(">8I", wal[:32])
    size = 24 + page_size
    out = []
    off = 32
    while off + size <= len(wal):
        page, committed, s1, s2 = struct.unpack(">4I", wal[off : off + 16])
        if (s1, s2) != (salt1, salt2):
            break
        out.append((page, committed))
        off += size
    return out


def main() -> None:
    directory = sys.argv[1]
    last = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    with open(f"{directory}/mandate.db-wal", "rb") as f:
        all_frames = frames(f.read())
    commits, current = [], []
    for page, committed in all_frames[-last:]:
        current.append(page)
        if committed:
            commits.append(current)
            current = []
    # The first group may have started before the window: leave it out.
    commits = commits[1:]
    if not commits:
        print("   no whole commit in the WAL's last frames")
        return
    rows = subprocess.run(
        ["sqlite3", "-readonly", f"file:{directory}/mandate.db?mode=ro",
         "SELECT pageno, name, pagetype FROM dbstat"],
        capture_output=True, text=True, check=True,
    ).stdout
    named = {}
    for row in rows.splitlines():
        page, name, kind = row.split("|")
        named[int(page)] = f"{name} ({kind})"
    by = collections.Counter(named.get(p, "? (freed or not yet in the file)") for c in commits for p in c)
    n = len(commits)
    print(f"   {n} commits, {sum(map(len, commits)) / n:.1f} pages written per commit:")
    for name, count in by.most_common():
        if count / n >= 0.05:
            print(f"     {count / n:6.2f}  {name}")


if __name__ == "__main__":
    main()
