//! The embedded store: SQLite (bundled) in WAL mode with `synchronous=FULL`.
//!
//! **Group commit.** All writes go through one writer thread. It takes every job waiting in its
//! channel, runs them in a single transaction, commits once (one WAL fsync), and only then answers
//! each job. While a commit's fsync runs, new jobs queue up and form the next batch, so under load
//! many SMTP sessions share one fsync, and with one session the latency is one commit. (See
//! [`WriteJob`] for how a failing job is kept from spoiling the others without a savepoint each.)
//!
//! **Why message bodies live in the database** rather than as one file each: a file per message
//! costs an fsync of the file and of its directory, per message, which cannot be shared between
//! sessions; a body inside the batch's transaction is made durable by the batch's single WAL fsync.
//! Content is stored once and shared by reference between the queue and every mailbox copy.
//!
//! **Checkpoints** (copying the WAL into the database file) run on their own thread, so that
//! their writes and fsync are not in any commit's path; see [`checkpoint_loop`].
//!
//! Reads use a small pool of separate connections (WAL readers never block the writer) on tokio's
//! blocking threads.
//!
//! Measured (docs/benchmarks.md): with 20 sessions the writer thread is where the time goes, in
//! SQLite's B-tree inserts and the WAL writes; the figures of the queue viewer come from counters
//! kept by triggers, and polling for due work is one indexed query per kind of work.

mod admin;
mod config;
mod content;
mod directory;
mod expunged;
mod folders;
mod headers;
mod keywords;
mod mailbox;
mod maintenance;
mod org;
mod queue;
pub mod schema;
mod track;

pub use keywords::KeywordLimits;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

use super::{
    AdminAction, ControlChange, DirEntry, Directory, Loaded, MailEntry, Mailboxes, QuarantineEntry,
    Queue, QueueAdmin, QueueFilter, QueueInfo, SettledAs, StoreError, StoreFuture, StoredText,
    SummaryRow, TrackFilter, Tracking, User,
};
use super::{
    BackupRecord, ConfigStore, ConfigVersion, FailedRecipient, MailDigests, Maintenance, OrgStore,
};
use crate::model::{NewMessage, QueueControl, QueuedMessage, ReportState, Settle, Submitted};
use crate::org::{Membership, OrgState};
use crate::store::spool::{self, Spool};
use crate::track::{Event, EventBase};
use chrono::{DateTime, Utc};

thread_local! {
    /// The users whose mailbox the writer thread's open transaction changed (see
    /// [`folders::touch`]); announced once it commits, forgotten if it does not.
    static TOUCHED: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Announces the users whose mailbox the committed transaction changed.
fn announce(changes: &tokio::sync::broadcast::Sender<i64>) {
    let mut users = TOUCHED.with(|t| std::mem::take(&mut *t.borrow_mut()));
    users.sort_unstable();
    users.dedup();
    for u in users {
        // No receiver (no IMAP session) is fine.
        let _ = changes.send(u);
    }
}

/// The database file name inside the data directory.
pub const FILE_NAME: &str = "mailroom.db";

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        use rusqlite::Error as E;
        match e {
            // A stored value of the wrong type or out of range: the record is unreadable (to be
            // quarantined), not the engine broken.
            E::InvalidColumnType(..)
            | E::FromSqlConversionFailure(..)
            | E::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
            _ => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
                _ => StoreError::Engine(e.to_string()),
            },
        }
    }
}

/// A write job: runs inside the batch transaction, then learns whether the batch committed.
///
/// **Contract: a job that fails writes nothing.** This holds by construction, not by each job's
/// care: when a job fails, the whole batch transaction is rolled back, the failed job is answered
/// with its error, and the other jobs run again in a fresh transaction without it. Only a
/// transaction in which every job succeeded is ever committed. Failures are rare (a conflict, an
/// unreadable record, a full disk), so the common path pays nothing for this: no savepoint per
/// job, whose sub-journal writes cost about a tenth of the writer's time. A job may therefore run
/// more than once, and its function is `Fn`.
trait WriteJob: Send {
    /// Runs the job in `conn`'s open transaction; says whether it succeeded, and if not,
    /// whether the engine itself failed.
    fn run(&mut self, conn: &Connection) -> JobRun;
    /// Answers the caller: with the job's own result once the batch committed, or with the
    /// commit's error.
    fn complete(self: Box<Self>, committed: Result<(), StoreError>);
}

/// How one run of a job went.
#[derive(Debug, Clone)]
enum JobRun {
    Done,
    /// It failed for a reason of its own (a conflict, missing or unreadable data).
    Failed,
    /// The engine failed (disk full, I/O error): the others may fail the same way.
    EngineFailed(StoreError),
}

struct Job<T, F> {
    f: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send,
    F: Fn(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> JobRun {
        let r = (self.f)(conn);
        let run = match &r {
            Ok(_) => JobRun::Done,
            Err(e @ (StoreError::Engine(_) | StoreError::Full(_))) => {
                JobRun::EngineFailed(e.clone())
            }
            Err(_) => JobRun::Failed,
        };
        self.result = Some(r);
        run
    }

    fn complete(self: Box<Self>, committed: Result<(), StoreError>) {
        let r = match (committed, self.result) {
            // A job that failed is answered with its own error: it was left out of the commit.
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Closed),
        };
        let _ = self.reply.send(r);
    }
}

/// Runs a batch of jobs and commits those that succeeded (see [`WriteJob`]): returns how many
/// transactions were committed (0 or 1).
fn run_batch(
    conn: &mut Connection,
    mut batch: Vec<Box<dyn WriteJob>>,
    changes: &tokio::sync::broadcast::Sender<i64>,
) -> usize {
    let mut engine_failures = 0;
    while !batch.is_empty() {
        TOUCHED.with(|t| t.borrow_mut().clear());
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let e = StoreError::from(e);
                tracing::error!(error = %e, jobs = batch.len(), "cannot begin a transaction");
                for job in batch {
                    job.complete(Err(e.clone()));
                }
                return 0;
            }
        };
        let failed = batch
            .iter_mut()
            .enumerate()
            .find_map(|(i, job)| match job.run(&tx) {
                JobRun::Done => None,
                run => Some((i, run)),
            });
        let Some((i, run)) = failed else {
            let committed = tx.commit().map_err(StoreError::from);
            if let Err(e) = &committed {
                tracing::error!(error = %e, jobs = batch.len(), "store commit failed");
            }
            let n = usize::from(committed.is_ok());
            if committed.is_ok() {
                announce(changes);
            }
            for job in batch {
                job.complete(committed.clone());
            }
            return n;
        };
        // Dropping the transaction rolls back everything the batch wrote, the failed job's
        // writes included; it is answered, and the rest run again without it.
        drop(tx);
        batch.remove(i).complete(Ok(()));
        if let JobRun::EngineFailed(e) = run {
            engine_failures += 1;
            if engine_failures >= 2 {
                // The engine fails for everyone (a full disk): do not run each job once more.
                tracing::error!(error = %e, jobs = batch.len(), "store commit failed");
                for job in batch {
                    job.complete(Err(e.clone()));
                }
                return 0;
            }
        }
    }
    0
}

/// How often the checkpointer copies the write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL frames (4 KiB pages) after which a checkpoint makes the next writer start the log again.
const RESTART_AT_FRAMES: i64 = 16 * 1024;

/// Copies committed pages from the WAL into the database file, off the writer's path: the
/// writer commits (one fsync of the WAL) and goes on, and the checkpoint's writes and fsync of
/// the database file happen here (SQLite's default would run them inside a commit).
///
/// A passive checkpoint never stops a writer, but under constant load it never catches up
/// either, and the log would grow without end. So once the log passes [`RESTART_AT_FRAMES`],
/// a RESTART checkpoint holds writers back for the moment it takes to copy the last frames, and
/// the next commit writes the log from its start again (trimmed to `journal_size_limit`).
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>) {
    let run = |mode: &str| -> rusqlite::Result<i64> {
        // (busy, frames in the log, frames checkpointed)
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        match run("PASSIVE") {
            Ok(frames) if frames > RESTART_AT_FRAMES => {
                if let Err(e) = run("RESTART") {
                    tracing::warn!(error = %e, "checkpoint (restart) failed; will retry");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint failed; will retry"),
        }
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// The embedded SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<(std::thread::JoinHandle<()>, mpsc::Sender<()>)>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    commits: Arc<AtomicU64>,
    spool: Spool,
    changes: tokio::sync::broadcast::Sender<i64>,
    /// Expunged UIDs each folder remembers (`imap.expunge_history`).
    expunge_history: AtomicU64,
    /// Opened read-only ([`SqliteStore::open_read_only`]): readers only, no writer.
    read_only: bool,
    /// The keyword bounds (`imap.max_keywords_per_folder`, `…_per_message`).
    keyword_limits: Mutex<KeywordLimits>,
}

/// Page-cache budgets (KiB) of the store's connections. Together they bound SQLite's memory: the
/// writer's cache holds the B-tree pages every commit walks; readers answer point lookups (a few
/// pages each, and the operating system caches the file anyway); the checkpointer copies pages
/// without caching them. At most [`MAX_READERS`] readers are kept, so the caches never hold
/// more than 2 MiB + 8 × 128 KiB + 64 KiB: memory stays flat under any load. (SQLite's default,
/// 2 MiB for every connection, let the soak benchmark's memory climb for ten minutes.)
const WRITER_CACHE_KIB: i64 = 2048;
const READER_CACHE_KIB: i64 = 128;
const CHECKPOINTER_CACHE_KIB: i64 = 64;

/// Reader connections kept open between reads.
const MAX_READERS: usize = 8;

/// A connection that can only read: no migration, no journal-mode change, no write (the
/// database file and its log are left as they are; `doctor` looks without touching). With no
/// write-ahead log beside the file (no server has it open, and the last one checkpointed), it
/// is opened `immutable` (SQLite's URI parameter): otherwise even a reader of a WAL database
/// makes the `-wal` and `-shm` files, which it then cannot remove.
fn open_conn_read_only(path: &Path, cache_kib: i64) -> Result<Connection, StoreError> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if Path::new(&wal).exists() {
        Connection::open_with_flags(path, flags)?
    } else {
        let uri = format!("file:{}?immutable=1", uri_path(path));
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(&format!(
        "PRAGMA query_only=ON; PRAGMA cache_size=-{cache_kib};"
    ))?;
    Ok(conn)
}

/// A path for an SQLite URI (RFC 3986 §3.3): every octet but the unreserved ones and `/`
/// percent-encoded, so that `?`, `#` or `%` in a directory name stay part of the path.
fn uri_path(path: &Path) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn open_conn(path: &Path, cache_kib: i64) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
    )?;
    conn.execute_batch(&format!("PRAGMA cache_size=-{cache_kib};"))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Arc<SqliteStore>, StoreError> {
        SqliteStore::open_with(path, LogBounds::default())
    }

    /// Opens the store without making a missing spool directory (for `doctor` and `repair`,
    /// which must see the data directory as it is).
    pub fn open_as_is(path: &Path) -> Result<Arc<SqliteStore>, StoreError> {
        SqliteStore::open_inner(path, LogBounds::default(), false)
    }

    /// Opens the store to read it only (`doctor`): no writer thread, no migration, nothing
    /// written or created; every write fails with `Closed`. A store of another schema version
    /// than this code's is refused with `Corrupt` naming both, as the queries would misread it.
    pub fn open_read_only(path: &Path) -> Result<Arc<SqliteStore>, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NotFound("the file".into()));
        }
        let conn = open_conn_read_only(path, READER_CACHE_KIB)?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if version.as_deref() != Some(schema::VERSION.to_string().as_str()) {
            return Err(StoreError::Corrupt(format!(
                "the store's schema version is {}, this mailroom's {}: the server migrates it \
                 when it starts",
                version.as_deref().unwrap_or("(none)"),
                schema::VERSION
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let (changes, _) = tokio::sync::broadcast::channel(1);
        Ok(Arc::new(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(None),
            thread: Mutex::new(None),
            checkpointer: Mutex::new(None),
            readers: Arc::new(Mutex::new(vec![conn])),
            commits: Arc::new(AtomicU64::new(0)),
            spool: Spool::at(&dir.join(spool::DIR_NAME)),
            changes,
            expunge_history: AtomicU64::new(crate::config::ImapConfig::default().expunge_history),
            read_only: true,
            keyword_limits: Mutex::new(KeywordLimits::default()),
        }))
    }

    /// [`SqliteStore::open`] with other log bounds (tests use small ones).
    pub(crate) fn open_with(
        path: &Path,
        bounds: LogBounds,
    ) -> Result<Arc<SqliteStore>, StoreError> {
        SqliteStore::open_inner(path, bounds, true)
    }

    fn open_inner(
        path: &Path,
        bounds: LogBounds,
        make_spool: bool,
    ) -> Result<Arc<SqliteStore>, StoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let spool = if make_spool {
            Spool::open(&dir.join(spool::DIR_NAME)).map_err(|e| {
                StoreError::Engine(format!(
                    "cannot open the spool directory {}: {e}",
                    dir.join(spool::DIR_NAME).display()
                ))
            })?
        } else {
            Spool::at(&dir.join(spool::DIR_NAME))
        };
        let mut conn = open_conn(path, WRITER_CACHE_KIB)?;
        migrate(&mut conn)?;
        // Checkpoints are the checkpointer thread's job; the log file is trimmed after each.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit={};",
            bounds.trim_bytes
        ))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let announcer = changes.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx, &wal, bounds, &counted, &announcer))
            .map_err(|e| StoreError::Engine(format!("cannot start writer thread: {e}")))?;
        let (stop, stopped) = mpsc::channel();
        let ckpt_conn = open_conn(path, CHECKPOINTER_CACHE_KIB)?;
        let checkpointer = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(ckpt_conn, stopped))
            .map_err(|e| StoreError::Engine(format!("cannot start checkpoint thread: {e}")))?;
        Ok(Arc::new(SqliteStore {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            checkpointer: Mutex::new(Some((checkpointer, stop))),
            readers: Arc::new(Mutex::new(Vec::new())),
            commits,
            spool,
            changes,
            expunge_history: AtomicU64::new(crate::config::ImapConfig::default().expunge_history),
            read_only: false,
            keyword_limits: Mutex::new(KeywordLimits::default()),
        }))
    }

    /// How many expunged UIDs each folder remembers for QRESYNC (`imap.expunge_history`); the
    /// server sets it from its configuration at start (a change needs a restart, as the other
    /// `imap.` limits do).
    pub fn set_expunge_history(&self, keep: u64) {
        self.expunge_history.store(keep, Ordering::Relaxed);
    }

    /// The keyword bounds (`imap.max_keywords_per_folder`, `imap.max_keywords_per_message`),
    /// set by the server from its configuration at start.
    pub fn set_keyword_limits(&self, limits: KeywordLimits) {
        *self
            .keyword_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    }

    fn keyword_limits(&self) -> KeywordLimits {
        *self
            .keyword_limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The database file (tests inspect it directly).
    #[cfg(test)]
    pub(crate) fn path_for_tests(&self) -> &Path {
        &self.path
    }

    /// The spool, where sessions write large message texts.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Deletes spool files that no stored content names: texts of messages that were never
    /// acknowledged (a crash before their commit). Only while no session can be spooling: at
    /// start-up, before the listeners open.
    pub async fn sweep_spool(&self) -> Result<usize, StoreError> {
        let referenced = self.read(content::referenced).await?;
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.sweep(&referenced))
            .await
            .map_err(|e| StoreError::Engine(format!("spool sweep failed: {e}")))?
            .map_err(|e| StoreError::Engine(format!("spool sweep failed: {e}")))
    }

    /// Transactions the writer has committed since the store was opened. Each carries every job
    /// that was waiting when it began (group commit), so under load this grows far slower than
    /// the number of writes.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Stops the writer after the jobs already queued; later writes fail with `Closed`.
    pub fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        if let Some((t, stop)) = self.checkpointer.lock().ok().and_then(|mut t| t.take()) {
            drop(stop);
            let _ = t.join();
        }
    }

    fn write<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job {
            f,
            result: None,
            reply,
        });
        let sent = match self.writer.lock() {
            Ok(w) => w.as_ref().map(|w| w.send(job).is_ok()).unwrap_or(false),
            Err(_) => false,
        };
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        })
    }

    fn read<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let read_only = self.read_only;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = match readers.lock().ok().and_then(|mut r| r.pop()) {
                    Some(c) => c,
                    None if read_only => open_conn_read_only(&path, READER_CACHE_KIB)?,
                    None => open_conn(&path, READER_CACHE_KIB)?,
                };
                let r = f(&conn);
                if let Ok(mut r) = readers.lock() {
                    if r.len() < MAX_READERS {
                        r.push(conn);
                    }
                }
                r
            })
            .await
            .map_err(|e| StoreError::Engine(format!("reader task failed: {e}")))?
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// The size the log file is trimmed to when it starts again from the beginning.
const WAL_TRIM_BYTES: u64 = 64 << 20;

/// The log size past which the writer itself checkpoints before taking more work.
///
/// The checkpointer copies the log in the background; when the disk cannot keep up with the
/// rate of commits (the log is written once and the database again), a log left alone grows
/// without bound, and with it the shared-memory index every connection maps. Past this size
/// the writer runs a RESTART checkpoint itself: sessions wait for their `250` a little longer
/// (backpressure) and the log starts again from its beginning. The log file is trimmed to
/// [`WAL_TRIM_BYTES`] when it starts again, so a file larger than that means the current log
/// really is that long.
const WAL_HARD_BYTES: u64 = 256 << 20;

/// Holds the writer back until the log has been copied into the database (see
/// [`WAL_HARD_BYTES`]). The checkpointer may be in the middle of a pass: then the RESTART is
/// busy, and the writer waits for it rather than adding to the log meanwhile. Returns whether
/// the log was copied in full.
fn catch_up(conn: &Connection, wait: Duration) -> bool {
    // A RESTART also waits (in the busy handler) for readers of old snapshots: keep that wait
    // within the bound too.
    let _ = conn.busy_timeout(wait);
    let copied = catch_up_within(conn, wait);
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    copied
}

fn catch_up_within(conn: &Connection, wait: Duration) -> bool {
    let started = std::time::Instant::now();
    loop {
        let r = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        });
        match r {
            Ok((0, frames)) => {
                tracing::info!(
                    frames,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "the log outgrew the checkpointer: writes waited for it to be copied"
                );
                return true;
            }
            Ok(_) if started.elapsed() < wait => std::thread::sleep(Duration::from_millis(5)),
            Ok(_) => {
                tracing::warn!("the log is long and could not be checkpointed; writes go on");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "writer checkpoint failed; writes go on");
                return false;
            }
        }
    }
}

/// How long a connection waits for a lock another holds before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest the writer waits for a checkpoint before taking work again.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// The write-ahead log's bounds (see [`WAL_TRIM_BYTES`], [`WAL_HARD_BYTES`], [`CATCH_UP_WAIT`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogBounds {
    pub trim_bytes: u64,
    pub hard_bytes: u64,
    pub catch_up_wait: Duration,
}

impl Default for LogBounds {
    fn default() -> Self {
        LogBounds {
            trim_bytes: WAL_TRIM_BYTES,
            hard_bytes: WAL_HARD_BYTES,
            catch_up_wait: CATCH_UP_WAIT,
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Box<dyn WriteJob>>,
    wal: &Path,
    bounds: LogBounds,
    commits: &AtomicU64,
    changes: &tokio::sync::broadcast::Sender<i64>,
) {
    // Past this size the writer catches up. After a failed attempt (a reader held an old snapshot
    // for long) it is raised, so that commits are not held back again at every batch.
    let mut limit = bounds.hard_bytes;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let n = run_batch(&mut conn, batch, changes);
        commits.fetch_add(n as u64, Ordering::Relaxed);
        let len = std::fs::metadata(wal).map_or(0, |m| m.len());
        if len > limit {
            limit = if catch_up(&conn, bounds.catch_up_wait) {
                bounds.hard_bytes
            } else {
                len.saturating_add(bounds.hard_bytes)
            };
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let has_meta: bool = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_meta {
        let tx = conn.transaction()?;
        tx.execute_batch(schema::CREATE)?;
        tx.execute_batch(schema::TRACK_KEYS)?;
        tx.execute_batch(schema::QUEUE_CONTROL)?;
        tx.execute_batch(schema::SPOOL)?;
        tx.execute_batch(schema::ORG)?;
        tx.execute_batch(schema::CONFIG)?;
        tx.execute_batch(schema::LIST_POLICY)?;
        tx.execute_batch(schema::IMAP)?;
        tx.execute_batch(schema::HEADERS)?;
        tx.execute_batch(schema::EXPUNGE_HISTORY)?;
        tx.execute_batch(schema::UID_VALIDITY_MAX)?;
        tx.execute_batch(schema::CONTENTS_IMMUTABLE)?;
        tx.execute_batch(schema::FOLDER_KEYWORDS)?;
        tx.execute_batch(&schema::triggers())?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
            [schema::VERSION.to_string()],
        )?;
        tx.commit()?;
        return Ok(());
    }
    let v: String = conn.query_row(
        "SELECT value FROM meta WHERE key='schema_version'",
        [],
        |r| r.get(0),
    )?;
    let mut v: i64 = match v.parse() {
        Ok(v) if (1..=schema::VERSION).contains(&v) => v,
        _ => {
            return Err(StoreError::Corrupt(format!(
                "database schema version {v}, this mailroom reads versions 1 to {}",
                schema::VERSION
            )))
        }
    };
    // Some steps rebuild tables; with foreign keys on, dropping the old table would cascade
    // into the tables that refer to it (SQLite's ALTER TABLE procedure, step 1). The pragma has
    // no effect inside a transaction, so it is set around them.
    if v == schema::VERSION {
        return Ok(());
    }
    conn.execute_batch("PRAGMA foreign_keys=OFF")?;
    while v < schema::VERSION {
        let step = schema::MIGRATIONS
            .get((v - 1) as usize)
            .ok_or_else(|| StoreError::Corrupt(format!("no migration from schema version {v}")))?;
        let tx = conn.transaction()?;
        for sql in *step {
            tx.execute_batch(sql)?;
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [(v + 1).to_string()],
        )?;
        tx.commit()?;
        tracing::info!(from = v, to = v + 1, "store schema migrated");
        v += 1;
    }
    let broken: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    conn.execute_batch("PRAGMA foreign_keys=ON")?;
    if broken > 0 {
        return Err(StoreError::Corrupt(format!(
            "{broken} row(s) refer to rows that do not exist (foreign key check)"
        )));
    }
    Ok(())
}

/// Microseconds since the epoch, the store's time format.
pub(crate) fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`micros`], for figures shown to an operator (an impossible value shows as
/// the epoch). Queue records use [`stored_time`], which refuses it.
pub(crate) fn from_micros(us: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// The earliest and latest times a queue record can hold (2000-01-01 and the end of 9999), in
/// the store's format: anything else is damage, not a time.
pub(crate) const TIME_RANGE: (i64, i64) = (946_684_800_000_000, 253_402_300_799_999_999);

/// A time read from a queue record, if it is one: a corrupt value is not read as 1970, it makes
/// the record unreadable (and quarantined).
pub(crate) fn stored_time(us: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    (TIME_RANGE.0..=TIME_RANGE.1)
        .contains(&us)
        .then(|| chrono::DateTime::from_timestamp_micros(us))
        .flatten()
}

impl Directory for SqliteStore {
    fn lookup(&self, address: &str) -> StoreFuture<'_, Option<DirEntry>> {
        let a = address.to_lowercase();
        self.read(move |c| directory::lookup(c, &a))
    }
    fn resolve(
        &self,
        address: String,
        local_domains: Vec<String>,
        limits: crate::model::ExpansionLimits,
    ) -> StoreFuture<'_, crate::model::Resolution> {
        self.read(move |c| {
            crate::model::expand(
                &address.to_lowercase(),
                limits,
                |d| local_domains.iter().any(|l| l.eq_ignore_ascii_case(d)),
                |a| directory::lookup(c, a),
            )
        })
    }
    fn user_auth(&self, address: &str) -> StoreFuture<'_, Option<(User, String)>> {
        let a = address.to_lowercase();
        self.read(move |c| directory::user_auth(c, &a))
    }
    fn user_add(
        &self,
        address: &str,
        hash: Option<String>,
        quota: Option<u64>,
    ) -> StoreFuture<'_, i64> {
        let a = address.to_lowercase();
        self.write(move |c| directory::user_add(c, &a, hash.as_deref(), quota))
    }
    fn user_del(&self, address: &str, purge: bool) -> StoreFuture<'_, ()> {
        let a = address.to_lowercase();
        self.write(move |c| directory::user_del(c, &a, purge))
    }
    fn user_list(&self) -> StoreFuture<'_, Vec<User>> {
        self.read(directory::user_list)
    }
    fn user_passwd(&self, address: &str, hash: String) -> StoreFuture<'_, ()> {
        let a = address.to_lowercase();
        self.write(move |c| directory::user_passwd(c, &a, &hash))
    }
    fn user_credentials(&self) -> StoreFuture<'_, Vec<(String, String)>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT address, password FROM users WHERE password IS NOT NULL ORDER BY address",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
    fn user_password_upgrade(
        &self,
        address: &str,
        old: String,
        new: String,
    ) -> StoreFuture<'_, bool> {
        let a = address.to_lowercase();
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE users SET password = ?3 WHERE address = ?1 AND password = ?2",
                rusqlite::params![a, old, new],
            )? == 1)
        })
    }
    fn user_quota(&self, address: &str, quota: Option<u64>) -> StoreFuture<'_, ()> {
        let a = address.to_lowercase();
        self.write(move |c| directory::user_quota(c, &a, quota))
    }
    fn alias_add(&self, alias: &str, targets: Vec<String>) -> StoreFuture<'_, ()> {
        let a = alias.to_lowercase();
        self.write(move |c| directory::group_add(c, directory::Group::Alias, &a, &targets))
    }
    fn alias_del(&self, alias: &str) -> StoreFuture<'_, ()> {
        let a = alias.to_lowercase();
        self.write(move |c| directory::group_del(c, directory::Group::Alias, &a, &[]))
    }
    fn alias_list(&self) -> StoreFuture<'_, Vec<(String, Vec<String>)>> {
        self.read(|c| directory::group_list(c, directory::Group::Alias))
    }
    fn list_add(&self, list: &str, members: Vec<String>) -> StoreFuture<'_, ()> {
        let l = list.to_lowercase();
        self.write(move |c| directory::group_add(c, directory::Group::List, &l, &members))
    }
    fn list_del(&self, list: &str, members: Vec<String>) -> StoreFuture<'_, ()> {
        let l = list.to_lowercase();
        self.write(move |c| directory::group_del(c, directory::Group::List, &l, &members))
    }
    fn list_list(&self) -> StoreFuture<'_, Vec<(String, Vec<String>)>> {
        self.read(|c| directory::group_list(c, directory::Group::List))
    }
    fn list_policy(&self, list: &str) -> StoreFuture<'_, Option<crate::model::ListPolicy>> {
        let l = list.to_lowercase();
        self.read(move |c| directory::list_policy(c, &l))
    }
    fn list_set_policy(&self, list: &str, policy: crate::model::ListPolicy) -> StoreFuture<'_, ()> {
        let l = list.to_lowercase();
        self.write(move |c| directory::list_set_policy(c, &l, policy))
    }
}

impl Queue for SqliteStore {
    fn spool(&self) -> &Spool {
        &self.spool
    }
    fn submit(&self, msg: NewMessage) -> StoreFuture<'_, Submitted> {
        let spool = self.spool.clone();
        self.write(move |c| queue::submit(c, &spool, &msg))
    }
    fn submit_batch(&self, msgs: Vec<NewMessage>) -> StoreFuture<'_, Vec<Submitted>> {
        let spool = self.spool.clone();
        self.write(move |c| msgs.iter().map(|m| queue::submit(c, &spool, m)).collect())
    }
    fn due(
        &self,
        now: DateTime<Utc>,
        delay_cutoff: DateTime<Utc>,
        after: i64,
        limit: usize,
    ) -> StoreFuture<'_, Loaded> {
        self.read(move |c| queue::due(c, now, delay_cutoff, after, limit))
    }
    fn queued(&self, rowid: i64) -> StoreFuture<'_, Option<QueuedMessage>> {
        self.read(move |c| queue::load(c, rowid, &queue::LoadContext::read(c, Utc::now())?))
    }
    fn suspects(&self) -> StoreFuture<'_, Loaded> {
        self.read(queue::suspects)
    }
    fn content(&self, content_id: i64) -> StoreFuture<'_, Vec<u8>> {
        let spool = self.spool.clone();
        self.read(move |c| content::read(c, &spool, content_id))
    }
    fn content_head(&self, content_id: i64, limit: u64) -> StoreFuture<'_, Vec<u8>> {
        let spool = self.spool.clone();
        self.read(move |c| content::head(c, &spool, content_id, limit))
    }
    fn content_text(&self, content_id: i64) -> StoreFuture<'_, StoredText> {
        let spool = self.spool.clone();
        self.read(move |c| content::text(c, &spool, content_id))
    }
    fn collect_spool(&self) -> StoreFuture<'_, usize> {
        // Committed garbage only (a reader's view), deleted, then forgotten: a file is never
        // deleted on the strength of a release that might still be rolled back.
        let spool = self.spool.clone();
        Box::pin(async move {
            let names = self.read(|c| content::garbage(c, 1000)).await?;
            let deleted: Vec<String> = names
                .into_iter()
                .filter(|name| match spool.remove(name) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(file = %name, error = %e, "spool file not deleted; will retry");
                        false
                    }
                })
                .collect();
            let n = deleted.len();
            if n > 0 {
                self.write(move |c| content::forget_garbage(c, &deleted))
                    .await?;
            }
            Ok(n)
        })
    }
    fn settle(
        &self,
        message: i64,
        base: EventBase,
        results: Vec<(i64, Settle)>,
    ) -> StoreFuture<'_, Vec<(i64, SettledAs)>> {
        self.write(move |c| queue::settle(c, message, &base, &results))
    }
    fn record_reports(
        &self,
        message: i64,
        reports: Vec<(i64, ReportState)>,
        delays_done: Vec<i64>,
        report_message: Option<NewMessage>,
        events: Vec<Event>,
    ) -> StoreFuture<'_, Option<i64>> {
        let spool = self.spool.clone();
        self.write(move |c| {
            queue::record_reports(
                c,
                &spool,
                message,
                &reports,
                &delays_done,
                report_message.as_ref(),
                &events,
            )
        })
    }
    fn transfer_started(
        &self,
        message: i64,
        queue: String,
        events: Vec<Event>,
    ) -> StoreFuture<'_, ()> {
        self.write(move |c| queue::transfer_started(c, message, &queue, &events))
    }
    fn clear_active(&self) -> StoreFuture<'_, ()> {
        self.write(|c| {
            c.execute("DELETE FROM queue_active", [])?;
            Ok(())
        })
    }
    fn quarantine(&self, message: i64, reason: String, server: String) -> StoreFuture<'_, ()> {
        self.write(move |c| queue::quarantine(c, message, &reason, &server))
    }
}

impl QueueAdmin for SqliteStore {
    fn queues(&self, now: DateTime<Utc>) -> StoreFuture<'_, Vec<QueueInfo>> {
        self.read(move |c| admin::queues(c, now))
    }
    fn queue_messages(&self, filter: QueueFilter) -> StoreFuture<'_, Vec<QueuedMessage>> {
        self.read(move |c| admin::messages(c, &filter))
    }
    fn queue_admin(
        &self,
        filter: QueueFilter,
        action: AdminAction,
        server: String,
    ) -> StoreFuture<'_, usize> {
        self.write(move |c| admin::act(c, &filter, action, &server))
    }
    fn queue_control(
        &self,
        queue: String,
        change: ControlChange,
        by: String,
    ) -> StoreFuture<'_, ()> {
        self.write(move |c| admin::control(c, &queue, change, &by))
    }
    fn queue_controls(&self) -> StoreFuture<'_, Vec<QueueControl>> {
        self.read(queue::controls)
    }
    fn queue_summary(&self, now: DateTime<Utc>) -> StoreFuture<'_, Vec<SummaryRow>> {
        self.read(move |c| admin::summary(c, now))
    }
    fn quarantined(&self) -> StoreFuture<'_, Vec<QuarantineEntry>> {
        self.read(admin::quarantined)
    }
}

impl Mailboxes for SqliteStore {
    fn mailbox_list(&self, user_id: i64) -> StoreFuture<'_, Vec<MailEntry>> {
        self.read(move |c| mailbox::list(c, user_id))
    }
    fn mail_read(&self, user_id: i64, mail_id: i64) -> StoreFuture<'_, Vec<u8>> {
        let spool = self.spool.clone();
        self.read(move |c| mailbox::read(c, &spool, user_id, mail_id))
    }
    fn mail_read_many(
        &self,
        user_id: i64,
        mail_ids: Vec<i64>,
    ) -> StoreFuture<'_, Vec<Option<Vec<u8>>>> {
        let spool = self.spool.clone();
        self.read(move |c| {
            let mut out = Vec::with_capacity(mail_ids.len());
            for id in mail_ids {
                match mailbox::read(c, &spool, user_id, id) {
                    Ok(t) => out.push(Some(t)),
                    Err(StoreError::NotFound(_)) => out.push(None),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }
    fn mail_text(&self, user_id: i64, mail_id: i64) -> StoreFuture<'_, StoredText> {
        let spool = self.spool.clone();
        self.read(move |c| mailbox::text(c, &spool, user_id, mail_id))
    }
    fn mail_delete(&self, user_id: i64, mail_ids: Vec<i64>) -> StoreFuture<'_, usize> {
        let keep = self.expunge_history.load(Ordering::Relaxed);
        self.write(move |c| mailbox::delete(c, user_id, &mail_ids, keep))
    }
    fn mail_import(
        &self,
        user_id: i64,
        text: Vec<u8>,
        key: String,
        place: crate::store::Placement,
    ) -> StoreFuture<'_, bool> {
        self.write(move |c| mailbox::import(c, user_id, &text, &key, &place))
    }
    fn mail_all(&self, user_id: i64) -> StoreFuture<'_, Vec<crate::store::StoredMail>> {
        self.read(move |c| mailbox::all(c, user_id))
    }
}

impl crate::store::Folders for SqliteStore {
    fn folders(&self, user_id: i64) -> StoreFuture<'_, Vec<crate::store::FolderInfo>> {
        self.read(move |c| folders::list(c, user_id))
    }
    fn folder_status(
        &self,
        user_id: i64,
        name: String,
    ) -> StoreFuture<'_, Option<crate::store::FolderStatus>> {
        self.read(move |c| folders::status(c, user_id, &name))
    }
    fn folder_create(
        &self,
        user_id: i64,
        name: String,
        special_use: Option<String>,
    ) -> StoreFuture<'_, ()> {
        self.write(move |c| folders::create(c, user_id, &name, special_use.as_deref()))
    }
    fn folder_delete(&self, user_id: i64, name: String) -> StoreFuture<'_, ()> {
        self.write(move |c| folders::delete(c, user_id, &name))
    }
    fn folder_rename(&self, user_id: i64, from: String, to: String) -> StoreFuture<'_, ()> {
        self.write(move |c| folders::rename(c, user_id, &from, &to))
    }
    fn subscriptions(&self, user_id: i64) -> StoreFuture<'_, Vec<String>> {
        self.read(move |c| folders::subscriptions(c, user_id))
    }
    fn subscribe(&self, user_id: i64, name: String, on: bool) -> StoreFuture<'_, ()> {
        self.write(move |c| folders::subscribe(c, user_id, &name, on))
    }
    fn folder_select(
        &self,
        user_id: i64,
        name: String,
        claim_recent: bool,
    ) -> StoreFuture<'_, Option<crate::store::Selected>> {
        if claim_recent {
            self.write(move |c| folders::select(c, user_id, &name, true))
        } else {
            self.read(move |c| folders::select(c, user_id, &name, false))
        }
    }
    fn folder_claim_recent(&self, folder_id: i64, up_to: u32) -> StoreFuture<'_, u32> {
        self.write(move |c| folders::claim_recent(c, folder_id, up_to))
    }
    fn folder_changes(
        &self,
        folder_id: i64,
        modseq: u64,
    ) -> StoreFuture<'_, crate::store::Changes> {
        self.read(move |c| folders::changes(c, folder_id, modseq))
    }
    fn mail_attrs(
        &self,
        folder_id: i64,
        uids: Vec<u32>,
    ) -> StoreFuture<'_, Vec<crate::store::MailAttrs>> {
        self.read(move |c| folders::attrs(c, folder_id, &uids))
    }
    fn mail_headers(&self, folder_id: i64, uids: Vec<u32>) -> StoreFuture<'_, Vec<(u32, Vec<u8>)>> {
        let spool = self.spool.clone();
        self.read(move |c| headers::read(c, &spool, folder_id, &uids))
    }
    fn mail_store(
        &self,
        folder_id: i64,
        uids: Vec<u32>,
        op: crate::store::FlagOp,
        flags: u8,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    ) -> StoreFuture<'_, crate::store::Stored> {
        let limits = self.keyword_limits();
        self.write(move |c| {
            folders::store(
                c,
                folder_id,
                &uids,
                op,
                flags,
                &keywords,
                unchanged_since,
                limits,
            )
        })
    }
    fn mail_append(
        &self,
        user_id: i64,
        name: String,
        mail: Vec<crate::store::NewMail>,
    ) -> StoreFuture<'_, crate::store::Copied> {
        let limits = self.keyword_limits();
        let spool = self.spool.clone();
        self.write(move |c| folders::append(c, &spool, user_id, &name, &mail, limits))
    }
    fn mail_copy(
        &self,
        user_id: i64,
        folder_id: i64,
        uids: Vec<u32>,
        to: String,
        move_: bool,
    ) -> StoreFuture<'_, crate::store::Copied> {
        let keep = self.expunge_history.load(Ordering::Relaxed);
        let limits = self.keyword_limits();
        self.write(move |c| {
            let copied = folders::copy(c, user_id, folder_id, &uids, &to, move_, limits)?;
            if move_ {
                expunged::trim(c, folder_id, keep)?;
            }
            Ok(copied)
        })
    }
    fn mail_expunge(&self, folder_id: i64, uids: Option<Vec<u32>>) -> StoreFuture<'_, Vec<u32>> {
        let uids = uids.map(|mut u| {
            u.sort_unstable();
            u
        });
        let keep = self.expunge_history.load(Ordering::Relaxed);
        self.write(move |c| {
            let gone = folders::expunge(c, folder_id, uids.as_deref())?;
            expunged::trim(c, folder_id, keep)?;
            Ok(gone)
        })
    }
    fn mail_changes(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.changes.subscribe()
    }
}

impl OrgStore for SqliteStore {
    fn org(&self) -> StoreFuture<'_, Option<(Membership, OrgState)>> {
        self.read(org::load)
    }
    fn org_changed_at(&self) -> StoreFuture<'_, Option<i64>> {
        self.read(org::changed_at)
    }
    fn org_init(&self, membership: Membership, state: OrgState) -> StoreFuture<'_, ()> {
        self.write(move |c| org::init(c, &membership, &state))
    }
    fn org_merge(&self, state: OrgState) -> StoreFuture<'_, (OrgState, bool)> {
        self.write(move |c| org::merge(c, &state))
    }
    fn org_leave(&self) -> StoreFuture<'_, ()> {
        self.write(org::leave)
    }
    fn shadow_release(
        &self,
        me: String,
        server: String,
        ids: Vec<String>,
    ) -> StoreFuture<'_, usize> {
        self.write(move |c| queue::release_shadows(c, &me, &server, &ids))
    }
    fn discharges(&self, limit: usize) -> StoreFuture<'_, Vec<(String, Vec<String>)>> {
        self.read(move |c| org::discharges(c, limit))
    }
    fn discharged(&self, server: String, ids: Vec<String>) -> StoreFuture<'_, ()> {
        self.write(move |c| org::discharged(c, &server, &ids))
    }
}

impl ConfigStore for SqliteStore {
    fn config_record(
        &self,
        text: String,
        origin: String,
        keep: usize,
    ) -> StoreFuture<'_, (ConfigVersion, bool)> {
        self.write(move |c| config::record(c, &text, &origin, keep))
    }
    fn config_versions(&self) -> StoreFuture<'_, Vec<ConfigVersion>> {
        self.read(config::versions)
    }
    fn config_backup_record(&self, backup: BackupRecord) -> StoreFuture<'_, ()> {
        self.write(move |c| config::backup_record(c, &backup))
    }
    fn config_backups(&self) -> StoreFuture<'_, Vec<BackupRecord>> {
        self.read(config::backups)
    }
}

impl Maintenance for SqliteStore {
    fn integrity(&self) -> StoreFuture<'_, Vec<String>> {
        self.read(maintenance::integrity)
    }
    fn mail_digests(&self) -> StoreFuture<'_, MailDigests> {
        let spool = self.spool.clone();
        self.read(move |c| maintenance::mail_digests(c, &spool))
    }
    fn failures_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<FailedRecipient>> {
        self.read(move |c| maintenance::failures_since(c, since, limit))
    }
}

impl Tracking for SqliteStore {
    fn track(&self, events: Vec<Event>) -> StoreFuture<'_, ()> {
        self.write(move |c| track::insert(c, &events))
    }
    fn track_query(&self, filter: TrackFilter) -> StoreFuture<'_, Vec<Event>> {
        self.read(move |c| track::query(c, &filter))
    }
}

#[cfg(test)]
mod tests;
