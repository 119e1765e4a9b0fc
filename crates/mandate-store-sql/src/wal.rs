//! Making SQLite's write-ahead log durable apart from the commit that wrote it.
//!
//! ```text
//!   ledger writer:  commit N (synchronous=NORMAL) ─► commit N+1 ─► commit N+2 …
//!                        │ sync()                      │ sync()
//!   sync thread:         └─► fdatasync(-wal) ─► answer └─► fdatasync(-wal) ─► answer
//! ```
//!
//! The ledger's batches commit without an fsync and ask this thread to sync the WAL;
//! their appenders are answered only when a sync that began after their commit has
//! returned. The fsync of one batch overlaps the next batch's commit, instead of every
//! batch waiting for its own fsync before the next may start. Every request that
//! arrives while a sync runs is answered by the next one: one fsync serves them all.
//!
//! Why syncing the file from here is enough: SQLite appends a commit's frames to the
//! `-wal` file and a checkpoint copies them into the database, syncing the WAL before
//! and the database after (synchronous=NORMAL keeps both syncs; it only drops the one
//! at each commit). So a commit's frames are durable once the `-wal` file is synced
//! after the commit, or, if the WAL is gone (the last connection checkpointed and
//! removed it), once the database file is. An fsync covers the whole file whoever
//! wrote it, through any descriptor. The first sync of a new `-wal` file also syncs its
//! directory, so the file itself survives a power loss.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use mandate_store::StoreError;
use tokio::sync::oneshot;

/// One waiter for the next sync.
type Waiter = oneshot::Sender<Result<(), String>>;

/// The handle of the thread that syncs one database's WAL; it stops when every handle
/// is dropped.
#[derive(Debug, Clone)]
pub(crate) struct WalSync {
    requests: mpsc::Sender<Waiter>,
}

impl WalSync {
    /// Starts the sync thread of the database file `db`.
    pub(crate) fn start(db: &Path) -> io::Result<Self> {
        let (requests, queue) = mpsc::channel::<Waiter>();
        let mut wal = Wal::new(db);
        std::thread::Builder::new()
            .name("mandate-wal-sync".to_owned())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(queue.try_iter());
                    let synced = wal.sync().map_err(|e| e.to_string());
                    for waiter in waiting {
                        let _ = waiter.send(synced.clone());
                    }
                }
            })?;
        Ok(WalSync { requests })
    }

    /// Returns once everything committed before the call is durable.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the WAL's sync thread stopped".to_owned());
        self.requests.send(done).map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|e| StoreError::Unavailable(format!("syncing the WAL: {e}")))
    }
}

/// The files one sync touches.
struct Wal {
    db: PathBuf,
    wal: PathBuf,
    dir: PathBuf,
    /// The `-wal` file whose directory entry is known durable (its inode).
    known: Option<u64>,
}

impl Wal {
    fn new(db: &Path) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Wal {
            db: db.to_owned(),
            wal: PathBuf::from(wal),
            dir: db
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
            known: None,
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let file = match File::open(&self.wal) {
            Ok(file) => file,
            // Checkpointed into the database and removed: what it held is there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.known = None;
                return File::open(&self.db)?.sync_data();
            }
            Err(e) => return Err(e),
        };
        file.sync_data()?;
        let id = file_id(&file)?;
        if self.known != Some(id) {
            sync_dir(&self.dir)?;
            self.known = Some(id);
        }
        Ok(())
    }
}

#[cfg(unix)]
fn file_id(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(file.metadata()?.ino())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

// Elsewhere a file's directory entry needs no sync of its own.
#[cfg(not(unix))]
fn file_id(_: &File) -> io::Result<u64> {
    Ok(0)
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::WalSync;

    /// A sync succeeds with or without a `-wal` file beside the database, and fails
    /// (never answers "durable") when neither can be opened.
    #[tokio::test]
    async fn syncs_the_wal_or_the_database_and_fails_without_either() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mandate.db");
        let syncer = WalSync::start(&db).unwrap();
        let missing = syncer.sync().await.unwrap_err().to_string();
        assert!(missing.contains("syncing the WAL"), "{missing}");
        std::fs::write(&db, b"db").unwrap();
        syncer.sync().await.unwrap();
        std::fs::write(dir.path().join("mandate.db-wal"), b"wal").unwrap();
        syncer.sync().await.unwrap();
        // Syncs asked for at once are all answered.
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let syncer = syncer.clone();
                tokio::spawn(async move { syncer.sync().await })
            })
            .collect();
        for done in waiting {
            done.await.unwrap().unwrap();
        }
    }
}
