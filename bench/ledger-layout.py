"""Pages an SQLite commit of ledger events writes, by table layout: what a change to
`audit_events` would save before it is made. (Measured before migration 0020, which
took the third layout: `today` below is the layout before it.)

    python3 bench/ledger-layout.py [COMMITS]     (default 1500 commits per case)

Each case appends COMMITS batches (2 and 10 events, docs of about 700 to 1400 bytes,
one tenant) the way the ledger does — one transaction: the events, then the chain
head's row — to a fresh WAL-mode database with checkpoints off, and counts the WAL's
frames per commit (every frame is one page written, and on Linux two `pwrite64`s):

- `today`:        a rowid table with PRIMARY KEY (tenant_id, seq), which SQLite keeps
                  as a second B-tree (its automatic index) beside the rows;
- `without rowid`: the same key as the table's own (WITHOUT ROWID);
- `rowid = seq`:  the rows keyed by their position (what a rowid made of a tenant
                  number and the sequence number would give), no second B-tree.

Uses Python's own sqlite3 module (the system's SQLite), not Mandate's build.
"""

import hashlib
import os
import random
import sqlite3
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from wal_pages import frames  # noqa: E402

COLUMNS = """tenant_id TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL,
    kind TEXT NOT NULL, mandate_id TEXT, agent_id TEXT, human_id TEXT,
    hash TEXT NOT NULL, doc TEXT NOT NULL"""

LAYOUTS = {
    "today": f"CREATE TABLE audit_events ({COLUMNS}, PRIMARY KEY (tenant_id, seq))",
    "without rowid": f"CREATE TABLE audit_events ({COLUMNS}, PRIMARY KEY (tenant_id, seq)) WITHOUT ROWID",
    "rowid = seq": f"CREATE TABLE audit_events ({COLUMNS})",
}


def pages_per_commit(directory: str, layout: str, doc: int, batch: int, commits: int) -> float:
    path = os.path.join(directory, f"{layout.replace(' ', '_')}-{doc}-{batch}.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(LAYOUTS[layout])
    db.execute("CREATE TABLE audit_heads (tenant_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)")
    tenant = "tnt_" + "0" * 22
    db.execute("INSERT INTO audit_heads VALUES (?, 0, ?)", (tenant, "0" * 64))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    keyed = layout == "rowid = seq"
    insert = (
        "INSERT INTO audit_events (rowid, tenant_id, seq, at, kind, mandate_id, agent_id, human_id, hash, doc) VALUES (?,?,?,?,?,?,?,?,?,?)"
        if keyed
        else "INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?)"
    )
    rng = random.Random(7)
    seq = 0
    for _ in range(commits):
        rows = []
        for _ in range(batch):
            seq += 1
            row = (tenant, seq, seq, "decision", "mnd_" + "A" * 22, "agt_" + "B" * 22,
                   "hum_" + "C" * 22, hashlib.sha256(str(seq).encode()).hexdigest(),
                   "x" * rng.randint(doc - 100, doc + 100))
            rows.append((seq, *row) if keyed else row)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(insert, rows)
        db.execute("UPDATE audit_heads SET seq = ? WHERE tenant_id = ?", (seq, tenant))
        db.execute("COMMIT")
    with open(path + "-wal", "rb") as f:
        written = frames(f.read())
    db.close()
    return len(written) / max(1, sum(1 for _, committed in written if committed))


def main() -> None:
    commits = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    print(f"pages written per commit ({commits} commits per case; SQLite {sqlite3.sqlite_version})")
    print(f"  {'doc bytes':>9} {'events':>6}  " + "  ".join(f"{name:>13}" for name in LAYOUTS))
    with tempfile.TemporaryDirectory() as directory:
        for doc in (700, 1100, 1400):
            for batch in (2, 10):
                cells = [pages_per_commit(directory, name, doc, batch, commits) for name in LAYOUTS]
                print(f"  {doc:>9} {batch:>6}  " + "  ".join(f"{c:>13.2f}" for c in cells))


if __name__ == "__main__":
    main()
