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
    /// The `-wal` file, kept open from one sync to the next while it is the file at
    /// its path, with its id (inode); its directory entry is known durable.
    held: Option<(File, u64)>,
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
            held: None,
        }
    }

    /// Syncs the file at the WAL's path as it is now, after the commits to make durable
    /// returned: the held file when the path still names it (one `stat` instead of
    /// opening and closing it again), else the file found there. An inode cannot be
    /// reused while it is held open, so the same id is the same file.
    fn sync(&mut self) -> io::Result<()> {
        let now = match path_id(&self.wal) {
            Ok(id) => id,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.sync_db(),
            Err(e) => return Err(e),
        };
        if let Some((file, id)) = &self.held
            && Some(*id) == now
        {
            return file.sync_data();
        }
        self.held = None;
        let file = match File::open(&self.wal) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.sync_db(),
            Err(e) => return Err(e),
        };
        file.sync_data()?;
        let id = file_id(&file)?;
        sync_dir(&self.dir)?;
        self.held = Some((file, id));
        Ok(())
    }

    /// Checkpointed into the database and removed: what the WAL held is there.
    fn sync_db(&mut self) -> io::Result<()> {
        self.held = None;
        File::open(&self.db)?.sync_data()
    }
}

/// The id of the file a path names now (`None` where ids are not known: the file is
/// then opened again for each sync).
#[cfg(unix)]
fn path_id(path: &Path) -> io::Result<Option<u64>> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(Some(std::fs::metadata(path)?.ino()))
}

#[cfg(not(unix))]
fn path_id(path: &Path) -> io::Result<Option<u64>> {
    std::fs::metadata(path).map(|_| None)
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

    use super::{Wal, WalSync};

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

    /// The WAL file is held open between syncs only while its path still names it: a
    /// file put in its place is the one synced next, and without a WAL the database is.
    #[cfg(unix)]
    #[test]
    fn the_held_wal_is_the_file_at_its_path() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mandate.db");
        let path = dir.path().join("mandate.db-wal");
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        let held = |wal: &Wal| wal.held.as_ref().map(|(_, id)| *id);
        std::fs::write(&db, b"db").unwrap();
        let mut wal = Wal::new(&db);
        wal.sync().unwrap();
        assert_eq!(held(&wal), None, "no WAL: the database was synced");
        std::fs::write(&path, b"first").unwrap();
        wal.sync().unwrap();
        let first = ino(&path);
        assert_eq!(held(&wal), Some(first));
        wal.sync().unwrap();
        assert_eq!(held(&wal), Some(first), "the same file, kept");
        // Replaced while the old one is still held open: a new inode, which is synced.
        let moved = dir.path().join("old-wal");
        std::fs::rename(&path, &moved).unwrap();
        std::fs::write(&path, b"second").unwrap();
        assert_ne!(ino(&path), first);
        wal.sync().unwrap();
        assert_eq!(held(&wal), Some(ino(&path)));
        std::fs::remove_file(&path).unwrap();
        wal.sync().unwrap();
        assert_eq!(held(&wal), None, "removed: the database was synced");
        std::fs::remove_file(&db).unwrap();
        assert!(wal.sync().is_err(), "neither file: never durable");
    }
}
